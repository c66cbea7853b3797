//! Sandboxed processes (`process/start` with `sandbox`): what a policy refuses and allows,
//! and the `sandboxDenied` verdict. Each scenario makes its own workspace and an "outside"
//! directory next to it, and checks the disk as well as the events.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::path::Path;

use crate::client::Client;
use crate::harness::{Ctx, EVENT_TIMEOUT, Events, check_error, start_params};
use crate::sandbox_dirs::Dirs;

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// The managed profile codex 0.169 accepts: read everything, write `writable`.
fn profile(ws: &Path, writable: &[&Path], network: &str) -> Value {
    let mut entries = vec![json!({"path": {"type": "path", "path": "file:///"}, "access": "read"})];
    entries.extend(
        writable
            .iter()
            .map(|dir| json!({"path": {"type": "path", "path": uri(dir)}, "access": "write"})),
    );
    json!({
        "permissions": {
            "type": "managed",
            "file_system": {"type": "restricted", "entries": entries},
            "network": network,
        },
        "cwd": uri(ws),
        "windowsSandboxLevel": "disabled",
    })
}

/// `bash -c script` in `ws` under `sandbox` (or none), as pipes or a PTY.
fn sandboxed(id: &str, ws: &Path, script: &str, sandbox: Option<Value>, tty: bool) -> Value {
    let mut params = start_params(id, &["bash", "-c", script]);
    params["cwd"] = json!(uri(ws));
    params["tty"] = json!(tty);
    if let Some(sandbox) = sandbox {
        params["sandbox"] = sandbox;
    }
    params
}

/// Start, collect until closed; returns the start result and the events.
async fn run(client: &mut Client, params: Value) -> Result<(Value, Events)> {
    let id = params["processId"].as_str().unwrap_or_default().to_owned();
    let started = client.start(params).await?;
    let events = client.events_until_closed(&id, EVENT_TIMEOUT).await?;
    Ok((started, events))
}

fn denied(events: &Events) -> Result<bool> {
    events.exited()?.params["sandboxDenied"]
        .as_bool()
        .with_context(|| format!("exited without sandboxDenied: {events:?}"))
}

/// The command failed and the server blamed the sandbox.
fn ensure_refused(events: &Events) -> Result<()> {
    ensure!(events.exit_code()? != 0, "the write succeeded: {events:?}");
    ensure!(denied(events)?, "not reported as denied: {events:?}");
    Ok(())
}

fn all_output(events: &Events) -> Result<String> {
    let mut text = String::new();
    for stream in ["stdout", "stderr", "pty"] {
        text.push_str(&events.output_text(stream)?);
    }
    Ok(text)
}

async fn write_outside_workspace_denied(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let dirs = Dirs::new_in(&std::env::temp_dir())?;
    let target = dirs.outside.join("escaped");
    let script = format!("echo hi > {}", target.display());
    let sandbox = profile(&dirs.ws, &[&dirs.ws], "restricted");
    let (started, events) = run(
        &mut client,
        sandboxed("out", &dirs.ws, &script, Some(sandbox), false),
    )
    .await?;
    ensure!(
        started["sandboxType"] == "linuxSeccomp",
        "sandboxType: {started}"
    );
    ensure_refused(&events)?;
    ensure!(!target.exists(), "{} was written", target.display());
    Ok(())
}
conformance_test!(write_outside_workspace_denied);

async fn write_inside_workspace_allowed(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let dirs = Dirs::new_in(&std::env::temp_dir())?;
    let sandbox = profile(&dirs.ws, &[&dirs.ws], "restricted");
    let script = "mkdir -p sub && echo hi > sub/file && cat sub/file";
    let (_, events) = run(
        &mut client,
        sandboxed("in", &dirs.ws, script, Some(sandbox), false),
    )
    .await?;
    ensure!(events.exit_code()? == 0, "exit: {events:?}");
    ensure!(!denied(&events)?, "reported as denied: {events:?}");
    ensure!(
        events.output_text("stdout")? == "hi\n",
        "output: {events:?}"
    );
    ensure!(std::fs::read_to_string(dirs.ws.join("sub/file"))? == "hi\n");
    Ok(())
}
conformance_test!(write_inside_workspace_allowed);

async fn git_dir_stays_read_only(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let dirs = Dirs::new_in(&std::env::temp_dir())?;
    std::fs::create_dir_all(dirs.ws.join(".git"))?;
    std::fs::write(dirs.ws.join(".git/config"), "original\n")?;
    let sandbox = profile(&dirs.ws, &[&dirs.ws], "restricted");
    let script = "echo changed > .git/config";
    let (_, events) = run(
        &mut client,
        sandboxed("git", &dirs.ws, script, Some(sandbox), false),
    )
    .await?;
    ensure_refused(&events)?;
    let config = std::fs::read_to_string(dirs.ws.join(".git/config"))?;
    ensure!(config == "original\n", ".git/config changed to {config:?}");
    Ok(())
}
conformance_test!(git_dir_stays_read_only);

async fn read_only_refuses_every_write(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let dirs = Dirs::new_in(&std::env::temp_dir())?;
    let sandbox = profile(&dirs.ws, &[], "restricted");
    let script = "cat /etc/hostname > /dev/null && echo hi > inside";
    let (_, events) = run(
        &mut client,
        sandboxed("ro", &dirs.ws, script, Some(sandbox), false),
    )
    .await?;
    ensure_refused(&events)?;
    ensure!(
        !dirs.ws.join("inside").exists(),
        "the workspace was written"
    );
    Ok(())
}
conformance_test!(read_only_refuses_every_write);

/// A loopback listener the child may or may not reach.
async fn connect_script() -> Result<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    Ok((
        listener,
        format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected"),
    ))
}

async fn network_restricted_refused(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let dirs = Dirs::new_in(&std::env::temp_dir())?;
    let (_listener, script) = connect_script().await?;
    let sandbox = profile(&dirs.ws, &[&dirs.ws], "restricted");
    let (_, events) = run(
        &mut client,
        sandboxed("net", &dirs.ws, &script, Some(sandbox), false),
    )
    .await?;
    ensure!(events.exit_code()? != 0, "connected: {events:?}");
    ensure!(denied(&events)?, "not reported as denied: {events:?}");
    ensure!(!all_output(&events)?.contains("connected"));
    Ok(())
}
conformance_test!(network_restricted_refused);

async fn network_enabled_allowed(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let dirs = Dirs::new_in(&std::env::temp_dir())?;
    let (listener, script) = connect_script().await?;
    let sandbox = profile(&dirs.ws, &[&dirs.ws], "enabled");
    let accept = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
    let (_, events) = run(
        &mut client,
        sandboxed("net", &dirs.ws, &script, Some(sandbox), false),
    )
    .await?;
    ensure!(events.exit_code()? == 0, "exit: {events:?}");
    ensure!(!denied(&events)?, "reported as denied: {events:?}");
    ensure!(events.output_text("stdout")? == "connected\n");
    tokio::time::timeout(EVENT_TIMEOUT, accept).await???;
    Ok(())
}
conformance_test!(network_enabled_allowed);

async fn other_failures_are_not_denials(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let dirs = Dirs::new_in(&std::env::temp_dir())?;
    let sandbox = || Some(profile(&dirs.ws, &[&dirs.ws], "restricted"));
    for (id, script) in [("exit1", "exit 1"), ("missing", "cat ./no-such-file")] {
        let (_, events) = run(
            &mut client,
            sandboxed(id, &dirs.ws, script, sandbox(), false),
        )
        .await?;
        ensure!(events.exit_code()? != 0, "{id}: exit {events:?}");
        ensure!(!denied(&events)?, "{id}: reported as denied: {events:?}");
    }
    // Unsandboxed, a refusal by file permissions is never a sandbox denial.
    let script = "echo refused: Permission denied >&2; exit 1";
    let (started, events) = run(
        &mut client,
        sandboxed("plain", &dirs.ws, script, None, false),
    )
    .await?;
    ensure!(started["sandboxType"] == "none", "sandboxType: {started}");
    ensure!(
        !denied(&events)?,
        "unsandboxed reported as denied: {events:?}"
    );
    Ok(())
}
conformance_test!(other_failures_are_not_denials);

async fn symlink_does_not_escape(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let dirs = Dirs::new_in(&std::env::temp_dir())?;
    std::os::unix::fs::symlink(&dirs.outside, dirs.ws.join("link"))?;
    let sandbox = profile(&dirs.ws, &[&dirs.ws], "restricted");
    let script = "echo hi > link/escaped";
    let (_, events) = run(
        &mut client,
        sandboxed("link", &dirs.ws, script, Some(sandbox), false),
    )
    .await?;
    ensure_refused(&events)?;
    ensure!(
        !dirs.outside.join("escaped").exists(),
        "wrote through the symlink"
    );
    Ok(())
}
conformance_test!(symlink_does_not_escape);

async fn pty_and_pipes_work_under_policies(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let dirs = Dirs::new_in(&std::env::temp_dir())?;
    let script = "tty >/dev/null && echo is-tty; echo out; echo err >&2; ls /usr/bin >/dev/null && echo listed";
    for (n, network) in ["restricted", "enabled"].into_iter().enumerate() {
        for writable in [vec![dirs.ws.as_path()], vec![]] {
            for tty in [false, true] {
                let id = format!("p{n}-{}-{tty}", writable.len());
                let sandbox = profile(&dirs.ws, &writable, network);
                let (_, events) = run(
                    &mut client,
                    sandboxed(&id, &dirs.ws, script, Some(sandbox), tty),
                )
                .await?;
                let text = all_output(&events)?;
                ensure!(events.exit_code()? == 0, "{id}: exit {events:?}");
                ensure!(
                    text.contains("out") && text.contains("err") && text.contains("listed"),
                    "{id}: output {text:?}"
                );
                ensure!(
                    text.contains("is-tty") == tty,
                    "{id}: tty {tty}, output {text:?}"
                );
            }
        }
    }
    Ok(())
}
conformance_test!(pty_and_pipes_work_under_policies);

async fn malformed_policy_rejected(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let dirs = Dirs::new_in(&std::env::temp_dir())?;
    let marker = dirs.ws.join("ran");
    let script = format!("touch {}", marker.display());
    let mut relative = profile(&dirs.ws, &[&dirs.ws], "restricted");
    relative["permissions"]["file_system"]["entries"][1]["path"]["path"] = json!("relative/dir");
    let mut unknown = profile(&dirs.ws, &[&dirs.ws], "restricted");
    unknown["permissions"]["type"] = json!("sideways");
    for (name, sandbox) in [("relative", relative), ("unknown", unknown)] {
        let params = sandboxed(name, &dirs.ws, &script, Some(sandbox), false);
        let error = client.expect_error("process/start", params).await?;
        check_error(&error, -32602, "")?;
        if ctx.target == crate::server::Target::Rexec {
            ensure!(
                error.message.contains("sandbox.permissions"),
                "{name}: the error does not name the field: {error}"
            );
        }
    }
    ensure!(!marker.exists(), "a rejected start ran its command");
    client.ping().await
}
conformance_test!(malformed_policy_rejected);

async fn denial_is_explained(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let dirs = Dirs::new_in(&std::env::temp_dir())?;
    let (_listener, script) = connect_script().await?;
    let sandbox = profile(&dirs.ws, &[&dirs.ws], "restricted");
    let (_, events) = run(
        &mut client,
        sandboxed("why", &dirs.ws, &script, Some(sandbox), false),
    )
    .await?;
    let denial = &events.exited()?.params["sandboxDenial"];
    ensure!(
        denial["rule"] == "network" && denial["exact"] == true,
        "denial: {denial}"
    );
    ensure!(
        denial["detail"]
            .as_str()
            .is_some_and(|d| d.contains("AF_INET")),
        "denial: {denial}"
    );
    let read = client
        .call("process/read", json!({"processId": "why", "afterSeq": 0}))
        .await?;
    ensure!(read["sandboxDenial"] == *denial, "read: {read}");

    let target = dirs.outside.join("x");
    let script = format!("echo hi > {}", target.display());
    let sandbox = profile(&dirs.ws, &[&dirs.ws], "restricted");
    let (_, events) = run(
        &mut client,
        sandboxed("fs", &dirs.ws, &script, Some(sandbox), false),
    )
    .await?;
    let denial = &events.exited()?.params["sandboxDenial"];
    ensure!(
        denial["rule"] == "fileSystem" && denial["exact"] == false,
        "denial: {denial}"
    );
    let outside = std::fs::canonicalize(&dirs.outside)?.join("x");
    ensure!(
        denial["detail"] == outside.display().to_string(),
        "denial: {denial}"
    );
    Ok(())
}
conformance_test!(rexec_only("process/exited.sandboxDenial") denial_is_explained);

async fn cannot_signal_the_server(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    let mut client = Client::connect(&server).await?;
    client.initialize().await?;
    let dirs = Dirs::new_in(&std::env::temp_dir())?;
    let script = format!("kill -CONT {} && echo signalled", server.pid()?);
    let sandbox = profile(&dirs.ws, &[&dirs.ws], "enabled");
    let (_, events) = run(
        &mut client,
        sandboxed("sig", &dirs.ws, &script, Some(sandbox), false),
    )
    .await?;
    ensure!(
        events.exit_code()? != 0,
        "the server was signalled: {events:?}"
    );
    ensure!(!all_output(&events)?.contains("signalled"));
    client.ping().await
}
conformance_test!(cannot_signal_the_server);
