//! The sandbox rules README and ARCHITECTURE.md call upstream's, checked on both servers:
//! the legacy `sandboxPolicy` contexts (rexec enforces them; codex 0.169.0 and 0.171.0
//! refuse them), special path kinds (an unrecognised one refused, `unknown` ignored), and
//! the `sandboxDenied` verdict on upstream's keywords without a path and on SIGSYS.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::path::Path;

use crate::client::Client;
use crate::harness::{Ctx, EVENT_TIMEOUT, Events, check_error, start_params};
use crate::sandbox_dirs::Dirs;
use crate::server::Target;

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// `bash -c script` in `ws` under `sandbox`, collected until closed.
async fn run(
    client: &mut Client,
    id: &str,
    ws: &Path,
    script: &str,
    sandbox: Value,
) -> Result<Events> {
    let mut params = start_params(id, &["bash", "-c", script]);
    params["cwd"] = json!(uri(ws));
    params["sandbox"] = sandbox;
    client.start(params).await?;
    client.events_until_closed(id, EVENT_TIMEOUT).await
}

fn denied(events: &Events) -> Result<bool> {
    events.exited()?.params["sandboxDenied"]
        .as_bool()
        .with_context(|| format!("exited without sandboxDenied: {events:?}"))
}

/// codex 0.169.0 and 0.171.0 take only `permissions` on `process/start` and refuse a legacy
/// `sandboxPolicy` context (-32602, nothing runs). rexec enforces it: legacy
/// `workspace-write` opens the workspace and not a directory outside it, legacy `read-only`
/// opens nothing; a refused write is reported as denied.
async fn legacy_policies(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    // Outside /tmp and $TMPDIR, which workspace-write opens.
    let dirs = Dirs::outside_tmp()?;
    let workspace_write = json!({
        "sandboxPolicy": {"type": "workspace-write", "writable_roots": [],
            "network_access": false, "exclude_tmpdir_env_var": false, "exclude_slash_tmp": false},
        "sandboxPolicyCwd": uri(&dirs.ws),
    });
    let inside = dirs.ws.join("inside");
    let script = format!("echo hi > {}", inside.display());
    if ctx.target == Target::Codex {
        let mut params = start_params("legacy", &["bash", "-c", &script]);
        params["cwd"] = json!(uri(&dirs.ws));
        params["sandbox"] = workspace_write;
        let error = client.expect_error("process/start", params).await?;
        check_error(&error, -32602, "missing field `permissions`")?;
        ensure!(!inside.exists(), "a refused start ran its command");
        return Ok(());
    }
    let events = run(
        &mut client,
        "ww-in",
        &dirs.ws,
        &script,
        workspace_write.clone(),
    )
    .await?;
    ensure!(
        events.exit_code()? == 0,
        "workspace write refused: {events:?}"
    );
    ensure!(std::fs::read(&inside)? == b"hi\n", "the workspace file");

    let outside = dirs.outside.join("escaped");
    let script = format!("echo hi > {}", outside.display());
    let events = run(&mut client, "ww-out", &dirs.ws, &script, workspace_write).await?;
    ensure!(
        events.exit_code()? != 0,
        "wrote outside the workspace: {events:?}"
    );
    ensure!(denied(&events)?, "not reported as denied: {events:?}");
    ensure!(!outside.exists(), "{} was written", outside.display());

    let read_only =
        json!({"sandboxPolicy": {"type": "read-only"}, "sandboxPolicyCwd": uri(&dirs.ws)});
    let target = dirs.ws.join("read-only");
    let script = format!(
        "cat {} >/dev/null && echo read; echo hi > {}",
        inside.display(),
        target.display()
    );
    let events = run(&mut client, "ro", &dirs.ws, &script, read_only).await?;
    ensure!(
        events.output_text("stdout")? == "read\n",
        "read-only reads: {events:?}"
    );
    ensure!(denied(&events)?, "not reported as denied: {events:?}");
    ensure!(!target.exists(), "read-only wrote {}", target.display());
    Ok(())
}
conformance_test!(legacy_policies);

/// A special path of a kind the server does not know is refused (-32602, nothing runs), so
/// an entry is never silently dropped; the explicit `unknown` kind, which carries the
/// original name in `path`, grants nothing and the start runs under the rest of the profile.
async fn special_kinds_unknown_and_unrecognised(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let dirs = Dirs::new_in(&std::env::temp_dir())?;
    let with_special = |value: Value| {
        json!({
            "permissions": {
                "type": "managed",
                "file_system": {"type": "restricted", "entries": [
                    {"path": {"type": "path", "path": "file:///"}, "access": "read"},
                    {"path": {"type": "path", "path": uri(&dirs.ws)}, "access": "write"},
                    {"path": {"type": "special", "value": value}, "access": "write"},
                ]},
                "network": "restricted",
            },
            "cwd": uri(&dirs.ws),
            "windowsSandboxLevel": "disabled",
        })
    };
    let (inside, outside) = (dirs.ws.join("inside"), dirs.outside.join("escaped"));
    let script = format!(
        "echo hi > {}; echo hi > {}",
        inside.display(),
        outside.display()
    );

    let mut params = start_params("unrecognised", &["bash", "-c", &script]);
    params["cwd"] = json!(uri(&dirs.ws));
    params["sandbox"] = with_special(json!({"kind": "rexec_conformance_future"}));
    let error = client.expect_error("process/start", params).await?;
    check_error(&error, -32602, "unknown variant `rexec_conformance_future`")?;
    ensure!(!inside.exists(), "a refused start ran its command");

    let sandbox = with_special(json!({"kind": "unknown", "path": "rexec_conformance_future"}));
    let events = run(&mut client, "unknown", &dirs.ws, &script, sandbox).await?;
    ensure!(
        inside.exists(),
        "the workspace write did not happen: {events:?}"
    );
    ensure!(
        !outside.exists(),
        "the unknown kind granted {}",
        outside.display()
    );
    ensure!(
        denied(&events)?,
        "the refused write is not reported: {events:?}"
    );
    Ok(())
}
conformance_test!(special_kinds_unknown_and_unrecognised);

/// A sandboxed command that fails printing one of upstream's keywords, with no path in the
/// line, is reported as denied, as is one killed by SIGSYS; a failure printing none of
/// them is not.
async fn keywords_without_a_path_are_denials(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let dirs = Dirs::new_in(&std::env::temp_dir())?;
    let sandbox = || {
        json!({
            "permissions": {
                "type": "managed",
                "file_system": {"type": "restricted", "entries": [
                    {"path": {"type": "path", "path": "file:///"}, "access": "read"},
                    {"path": {"type": "path", "path": uri(&dirs.ws)}, "access": "write"},
                ]},
                "network": "restricted",
            },
            "cwd": uri(&dirs.ws),
            "windowsSandboxLevel": "disabled",
        })
    };
    for (id, line, verdict) in [
        ("eperm", "Operation not permitted", true),
        ("eacces", "Permission denied", true),
        ("erofs", "Read-only file system", true),
        ("other", "something else went wrong", false),
    ] {
        let script = format!("echo '{line}' >&2; exit 1");
        let events = run(&mut client, id, &dirs.ws, &script, sandbox()).await?;
        ensure!(events.exit_code()? == 1, "{id}: {events:?}");
        ensure!(
            denied(&events)? == verdict,
            "{id}: sandboxDenied is not {verdict}: {events:?}"
        );
    }
    // Death by SIGSYS (exit 159) counts as a denial, output or not.
    let events = run(&mut client, "sigsys", &dirs.ws, "kill -SYS $$", sandbox()).await?;
    ensure!(events.exit_code()? == 159, "sigsys: {events:?}");
    ensure!(
        denied(&events)?,
        "sigsys: not reported as denied: {events:?}"
    );
    Ok(())
}
conformance_test!(keywords_without_a_path_are_denials);
