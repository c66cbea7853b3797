//! The sandbox semantics two capability flags promise, checked as a client relies on them:
//! `sandboxedFileStreaming` (block streams — `fs/open` read and replace handles — are
//! confined by the request's sandbox) and `linuxRootWritePreservesDevices` (with `/`
//! writable, the standard devices still work). codex 0.169.0 and 0.171.0 advertise both.

use anyhow::{Result, ensure};
use serde_json::{Value, json};
use std::path::Path;

use crate::fs::{setup, uri};
use crate::harness::{Ctx, EVENT_TIMEOUT, start_params};

fn managed(entries: &[(&Path, &str)], cwd: &Path) -> Value {
    let entries: Vec<Value> = entries
        .iter()
        .map(|(p, access)| json!({"path": {"type": "path", "path": uri(p)}, "access": access}))
        .collect();
    json!({
        "permissions": {"type": "managed", "network": "restricted",
            "file_system": {"type": "restricted", "entries": entries}},
        "cwd": uri(cwd),
        "windowsSandboxLevel": "disabled"})
}

/// rexec answers -32600 (permission denied); codex -32004 for a read (outside paths are
/// invisible in its sandbox) and -32600 for a write.
fn refused(error: &crate::client::RpcError) -> Result<()> {
    ensure!(
        error.code == -32600 || error.code == -32004,
        "expected a refusal, got {error}"
    );
    Ok(())
}

async fn file_streams_take_the_sandbox(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let info = client.call("environment/info", json!({})).await?;
    ensure!(
        info["capabilities"]["sandboxedFileStreaming"] == true,
        "{info}"
    );
    let (ws, outside) = (dir.path().join("ws"), dir.path().join("outside"));
    std::fs::create_dir_all(&ws)?;
    std::fs::create_dir_all(&outside)?;
    std::fs::write(outside.join("secret"), "s")?;
    std::fs::write(ws.join("mine"), "m")?;
    // Read and write the workspace only.
    let sandbox = managed(&[(&ws, "write")], &ws);
    let open = |id: &str, path: &Path, mode: &str| json!({"handleId": id, "path": uri(path), "mode": mode, "sandbox": sandbox});
    let error = client
        .request("fs/open", open("r-out", &outside.join("secret"), "read"))
        .await?
        .expect_err("a read handle outside the sandbox");
    refused(&error)?;
    let error = client
        .request("fs/open", open("w-out", &outside.join("new"), "replace"))
        .await?
        .expect_err("a replace handle outside the sandbox");
    refused(&error)?;
    ensure!(!outside.join("new").exists(), "nothing written outside");
    // Inside, the same handles work.
    client
        .call("fs/open", open("r-in", &ws.join("mine"), "read"))
        .await?;
    let block = client
        .call(
            "fs/readBlock",
            json!({"handleId": "r-in", "offset": 0, "len": 16}),
        )
        .await?;
    ensure!(
        crate::harness::b64(&block["chunk"])? == b"m",
        "read inside: {block}"
    );
    client
        .call("fs/open", open("w-in", &ws.join("new"), "replace"))
        .await?;
    client
        .call(
            "fs/writeBlock",
            json!({"handleId": "w-in", "offset": 0, "chunk": crate::harness::encode(b"ok")}),
        )
        .await?;
    client.call("fs/close", json!({"handleId": "w-in"})).await?;
    ensure!(std::fs::read(ws.join("new"))? == b"ok", "write inside");
    Ok(())
}
conformance_test!(file_streams_take_the_sandbox => rexec_caps_file_streams_take_the_sandbox, codex_caps_file_streams_take_the_sandbox);

async fn root_write_keeps_the_devices(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let info = client.call("environment/info", json!({})).await?;
    ensure!(
        info["capabilities"]["linuxRootWritePreservesDevices"] == true,
        "{info}"
    );
    let script = "echo x > /dev/null && head -c 3 /dev/zero | wc -c && head -c 5 /dev/urandom | wc -c && echo y > /dev/full; echo full=$?";
    let mut params = start_params("devices", &["bash", "-c", script]);
    params["cwd"] = json!(uri(dir.path()));
    params["sandbox"] = managed(&[(Path::new("/"), "write")], dir.path());
    client.start(params).await?;
    let events = client.events_until_closed("devices", EVENT_TIMEOUT).await?;
    let stdout = events.output_text("stdout")?;
    ensure!(stdout == "3\n5\nfull=1\n", "{stdout:?} {events:?}");
    Ok(())
}
conformance_test!(root_write_keeps_the_devices => rexec_caps_root_write_keeps_devices, codex_caps_root_write_keeps_devices);

/// Every capability flag codex 0.171.0 reports, in its `environment/info`.
const CODEX_0171_FLAGS: [&str; 16] = [
    "networkProxyLaunch",
    "networkProxyReviewDomains",
    "networkProxyTransparentTcp",
    "credentialMasking",
    "credentialMaskingCustomProviders",
    "capabilityDiscoverySandbox",
    "fsWatchMissing",
    "capabilityDiscoveryV2",
    "environmentConfigRead",
    "httpHeaderEnvVars",
    "sandboxedFileStreaming",
    "fileWriteStreaming",
    "shellSnapshotV2",
    "windowsMxc",
    "linuxRootWritePreservesDevices",
    "linuxApprovedRootWritePreservesRestrictions",
];

/// rexec lists exactly the flags codex 0.171.0 has. codex 0.171.0 sets all of them but
/// `windowsMxc`; 0.169.0 has the same minus `networkProxyTransparentTcp`.
async fn the_capability_flags(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let info = client.call("environment/info", json!({})).await?;
    let flags = info["capabilities"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut names: Vec<&str> = flags.keys().map(String::as_str).collect();
    names.sort_unstable();
    let is_0169 =
        ctx.target == crate::server::Target::Codex && info["executorVersion"] == "0.169.0";
    let mut expected: Vec<&str> = CODEX_0171_FLAGS
        .into_iter()
        .filter(|name| !(is_0169 && *name == "networkProxyTransparentTcp"))
        .collect();
    expected.sort_unstable();
    ensure!(names == expected, "flags {names:?}, expected {expected:?}");
    ensure!(
        flags.values().all(Value::is_boolean),
        "a flag is not a boolean: {info}"
    );
    if ctx.target == crate::server::Target::Codex {
        for (name, value) in &flags {
            ensure!(
                *value == (name != "windowsMxc"),
                "codex {}: {name} is {value}",
                info["executorVersion"]
            );
        }
    }
    Ok(())
}
conformance_test!(the_capability_flags => rexec_caps_flags, codex_caps_flags);
