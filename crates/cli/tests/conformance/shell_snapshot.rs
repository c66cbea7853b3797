//! `process/start.shellSnapshot` (capability `shellSnapshotV2`): a `bash -lc` start with a
//! snapshot runs from the state the login startup files left, captured once per scope;
//! other argv start plainly; bad requests are refused; a failed capture falls back; the
//! capture runs in the command's sandbox. codex 0.169.0 and 0.171.0 behave the same here.
//!
//! Each scenario makes a HOME whose `.bash_profile` exports a variable, defines a function
//! and an alias, prints a line, and appends a line to `HOME/counter` — so the counter says
//! how often the startup files ran.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::path::Path;

use crate::harness::{Ctx, EVENT_TIMEOUT, Events, check_error, start_params};
use crate::server::ScratchDir;

const BASH: &str = "/bin/bash";

const PROFILE: &str = r#"export SNAP_VAR=from-profile
snapfn() { echo "fn-says-$1"; }
alias snapalias='echo alias-ran'
echo run >> "$HOME/counter"
echo profile-says-hi
"#;

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// A scratch HOME with `profile` as its `.bash_profile`, and a workspace `ws` inside it.
fn home(ctx: &Ctx, profile: &str) -> Result<ScratchDir> {
    let dir = ScratchDir::new(&format!("snapshot-{}", ctx.target.name()))?;
    std::fs::write(dir.path().join(".bash_profile"), profile)?;
    std::fs::create_dir(dir.path().join("ws"))?;
    Ok(dir)
}

fn snapshot(scope: &str) -> Value {
    json!({"scopeId": scope, "shell": {"name": "bash", "path": BASH}})
}

/// `argv` in `home/ws` with HOME set, and `shellSnapshot` when given.
fn start(id: &str, home: &Path, argv: &[&str], shell_snapshot: Option<Value>) -> Value {
    let mut params = start_params(id, argv);
    params["cwd"] = json!(uri(&home.join("ws")));
    params["env"]["HOME"] = json!(home.display().to_string());
    if let Some(request) = shell_snapshot {
        params["shellSnapshot"] = request;
    }
    params
}

async fn run(client: &mut crate::client::Client, params: Value) -> Result<Events> {
    let id = params["processId"].as_str().unwrap_or_default().to_owned();
    client.start(params).await?;
    client.events_until_closed(&id, EVENT_TIMEOUT).await
}

/// How many times the startup files ran so far.
fn runs(home: &Path) -> Result<usize> {
    match std::fs::read_to_string(home.join("counter")) {
        Ok(text) => Ok(text.lines().count()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(err) => Err(err).context("reading the counter"),
    }
}

const PROBE: &str =
    r#"echo "var=$SNAP_VAR"; snapfn x; alias snapalias; shopt -q login_shell && echo login"#;

async fn restores_the_profile_state_captured_once(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let info = client.call("environment/info", json!({})).await?;
    ensure!(info["capabilities"]["shellSnapshotV2"] == true, "{info}");
    let home = home(&ctx, PROFILE)?;
    for id in ["first", "second"] {
        let events = run(
            &mut client,
            start(
                id,
                home.path(),
                &[BASH, "-lc", PROBE],
                Some(snapshot("scope-a")),
            ),
        )
        .await?;
        let stdout = events.output_text("stdout")?;
        ensure!(
            stdout == "var=from-profile\nfn-says-x\nalias snapalias='echo alias-ran'\n",
            "{id}: the command did not run from the profile's state (no startup output, \
             not a login shell): {stdout:?} {events:?}"
        );
        ensure!(events.exit_code()? == 1, "{id}: {events:?}");
    }
    ensure!(
        runs(home.path())? == 1,
        "the startup files ran once, for the capture"
    );
    // The request's own env wins over the snapshot's, and does not make a new capture.
    let mut params = start(
        "override",
        home.path(),
        &[BASH, "-lc", "echo \"var=$SNAP_VAR\"; snapfn y"],
        Some(snapshot("scope-a")),
    );
    params["env"]["SNAP_VAR"] = json!("from-request");
    let events = run(&mut client, params).await?;
    ensure!(
        events.output_text("stdout")? == "var=from-request\nfn-says-y\n",
        "{events:?}"
    );
    ensure!(runs(home.path())? == 1);
    // Another scope is another capture.
    let events = run(
        &mut client,
        start(
            "other-scope",
            home.path(),
            &[BASH, "-lc", "echo \"var=$SNAP_VAR\""],
            Some(snapshot("scope-b")),
        ),
    )
    .await?;
    ensure!(
        events.output_text("stdout")? == "var=from-profile\n",
        "{events:?}"
    );
    ensure!(runs(home.path())? == 2, "scope-b captured once more");
    Ok(())
}
conformance_test!(restores_the_profile_state_captured_once => rexec_snapshot_restores_profile_state_once, codex_snapshot_restores_profile_state_once);

async fn other_argv_start_plainly(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let home = home(&ctx, PROFILE)?;
    // argv[0] must be the snapshot's shell path exactly; and only `-lc` applies.
    let cases: [(&str, &[&str]); 2] = [
        ("by-name", &["bash", "-lc", "echo \"var=$SNAP_VAR\""]),
        ("plain-c", &[BASH, "-c", "echo \"var=${SNAP_VAR-unset}\""]),
    ];
    let events = run(
        &mut client,
        start("by-name", home.path(), cases[0].1, Some(snapshot("s"))),
    )
    .await?;
    ensure!(
        events.output_text("stdout")? == "profile-says-hi\nvar=from-profile\n",
        "a plain login shell runs its profile: {events:?}"
    );
    ensure!(runs(home.path())? == 1);
    let events = run(
        &mut client,
        start("plain-c", home.path(), cases[1].1, Some(snapshot("s"))),
    )
    .await?;
    ensure!(events.output_text("stdout")? == "var=unset\n", "{events:?}");
    ensure!(runs(home.path())? == 1, "nothing was captured");
    Ok(())
}
conformance_test!(other_argv_start_plainly => rexec_snapshot_other_argv_start_plainly, codex_snapshot_other_argv_start_plainly);

async fn bad_requests_are_refused(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let home = home(&ctx, PROFILE)?;
    let scope_error = "shell snapshot scope must be non-empty and at most 256 bytes";
    let cases = [
        // The scope is checked whatever the argv.
        (
            json!({"scopeId": "", "shell": {"name": "bash", "path": BASH}}),
            "bash",
            scope_error,
        ),
        (snapshot(&"x".repeat(257)), BASH, scope_error),
        (
            json!({"scopeId": "s", "shell": {"name": "fish", "path": BASH}}),
            BASH,
            "shell snapshots are unsupported for shell `fish`",
        ),
        (json!({"scopeId": "s"}), BASH, "missing field `shell`"),
    ];
    for (i, (request, shell, needle)) in cases.into_iter().enumerate() {
        let params = start(
            &format!("bad-{i}"),
            home.path(),
            &[shell, "-lc", "echo ran"],
            Some(request),
        );
        let error = client
            .request("process/start", params)
            .await?
            .err()
            .with_context(|| format!("case {i} started"))?;
        check_error(&error, -32602, needle)?;
    }
    ensure!(runs(home.path())? == 0, "nothing ran");
    // A scope of exactly 256 bytes is fine.
    let events = run(
        &mut client,
        start(
            "max-scope",
            home.path(),
            &[BASH, "-lc", "echo \"var=$SNAP_VAR\""],
            Some(snapshot(&"x".repeat(256))),
        ),
    )
    .await?;
    ensure!(
        events.output_text("stdout")? == "var=from-profile\n",
        "{events:?}"
    );
    Ok(())
}
conformance_test!(bad_requests_are_refused => rexec_snapshot_bad_requests_refused, codex_snapshot_bad_requests_refused);

async fn a_failed_capture_falls_back_to_the_plain_start(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let home = home(
        &ctx,
        "echo run >> \"$HOME/counter\"\nexport FAILVAR=set\nexit 3\n",
    )?;
    let events = run(
        &mut client,
        start(
            "failing",
            home.path(),
            &[BASH, "-lc", "echo ran"],
            Some(snapshot("s")),
        ),
    )
    .await?;
    ensure!(
        events.exit_code()? == 3 && events.output_text("stdout")?.is_empty(),
        "the command ran as a plain login shell, whose profile exits 3: {events:?}"
    );
    ensure!(runs(home.path())? == 2, "the capture, then the plain start");
    Ok(())
}
conformance_test!(a_failed_capture_falls_back_to_the_plain_start => rexec_snapshot_failed_capture_falls_back, codex_snapshot_failed_capture_falls_back);

async fn the_capture_runs_in_the_commands_sandbox(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let home = home(&ctx, "")?;
    let escaped = home.path().join("escaped");
    let profile = format!(
        "export SNAP_VAR=from-profile\necho x > {}\n",
        escaped.display()
    );
    std::fs::write(home.path().join(".bash_profile"), profile)?;
    let ws = home.path().join("ws");
    let sandbox = json!({
        "permissions": {
            "type": "managed",
            "file_system": {"type": "restricted", "entries": [
                {"path": {"type": "path", "path": "file:///"}, "access": "read"},
                {"path": {"type": "path", "path": uri(&ws)}, "access": "write"},
            ]},
            "network": "restricted",
        },
        "cwd": uri(&ws),
        "windowsSandboxLevel": "disabled",
    });
    let mut params = start(
        "sandboxed",
        home.path(),
        &[BASH, "-lc", "echo \"var=$SNAP_VAR\""],
        Some(snapshot("s")),
    );
    params["sandbox"] = sandbox;
    let events = run(&mut client, params).await?;
    ensure!(
        events.output_text("stdout")? == "var=from-profile\n",
        "{events:?}"
    );
    ensure!(!escaped.exists(), "the capture wrote outside the sandbox");
    Ok(())
}
conformance_test!(the_capture_runs_in_the_commands_sandbox => rexec_snapshot_capture_is_sandboxed, codex_snapshot_capture_is_sandboxed);
