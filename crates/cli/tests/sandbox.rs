//! Sandboxed commands through the client library (`Completion` carries the verdict) and
//! through `rexec run --sandbox`, against rexec and codex exec-server 0.169.0. The protocol
//! level checks (every policy, PTY and pipes, symlinks, `.git`) are in the conformance
//! suite's `sandbox` module.

#[path = "conformance/sandbox_dirs.rs"]
mod sandbox_dirs;

use anyhow::{Context, Result, ensure};
use rexec_client::{
    Client, ClientOptions, Completion, DenialRule, Endpoint, NetworkAccess, ProcessSpec,
    SandboxContext,
};
use rexec_testkit::server;
use sandbox_dirs::Dirs;
use server::{Server, ServerOptions, Target};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

const DEADLINE: Duration = Duration::from_secs(20);

/// A server of `target` (the codex tests are `codex_test!`s: ignored without a binary).
async fn server(target: Target) -> Result<Option<Server>> {
    Server::spawn(target, &ServerOptions::default())
        .await
        .map(Some)
}

async fn run(
    client: &Client,
    ws: &Path,
    script: &str,
    network: NetworkAccess,
) -> Result<Completion> {
    let spec = ProcessSpec::new(["bash", "-c", script])
        .cwd(ws)
        .env("PATH", "/usr/bin:/bin")
        .sandbox(SandboxContext::managed(&[ws.to_path_buf()], network));
    let completion = tokio::time::timeout(DEADLINE, client.run(spec))
        .await
        .context("the sandboxed command did not finish")??;
    Ok(completion)
}

async fn completion_carries_the_verdict(target: Target) -> Result<()> {
    let Some(server) = server(target).await? else {
        return Ok(());
    };
    let client = Client::connect(
        Endpoint::WebSocket(server.url.clone()),
        ClientOptions::default(),
    )
    .await?;
    let dirs = Dirs::outside_tmp()?;
    let restricted = NetworkAccess::Restricted;

    let inside = run(
        &client,
        &dirs.ws,
        "echo hi > inside && cat inside",
        restricted,
    )
    .await?;
    ensure!(
        inside.exit_code == 0 && !inside.sandbox_denied,
        "inside: {inside:?}"
    );
    ensure!(inside.stdout == b"hi\n", "inside: {inside:?}");

    let target_file = dirs.outside.join("escaped");
    let script = format!("echo hi > {}", target_file.display());
    let outside = run(&client, &dirs.ws, &script, restricted).await?;
    ensure!(
        outside.exit_code != 0 && outside.sandbox_denied,
        "outside: {outside:?}"
    );
    ensure!(!target_file.exists(), "the write escaped");

    let git = dirs.ws.join(".git");
    std::fs::create_dir_all(&git)?;
    let protected = run(&client, &dirs.ws, "echo x > .git/HEAD", restricted).await?;
    ensure!(protected.sandbox_denied, ".git: {protected:?}");
    ensure!(!git.join("HEAD").exists(), ".git was written");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
    let refused = run(&client, &dirs.ws, &connect, restricted).await?;
    ensure!(refused.sandbox_denied, "network restricted: {refused:?}");
    let allowed = run(&client, &dirs.ws, &connect, NetworkAccess::Enabled).await?;
    ensure!(
        allowed.exit_code == 0 && !allowed.sandbox_denied,
        "network enabled: {allowed:?}"
    );

    let failed = run(&client, &dirs.ws, "cat missing-file", restricted).await?;
    ensure!(
        failed.exit_code != 0 && !failed.sandbox_denied,
        "other failure: {failed:?}"
    );

    if target == Target::Rexec {
        let denial = refused.sandbox_denial.context("rexec names the refusal")?;
        ensure!(
            denial.rule == DenialRule::Network && denial.exact,
            "{denial:?}"
        );
        let denial = outside.sandbox_denial.context("rexec names the refusal")?;
        ensure!(
            denial.rule == DenialRule::FileSystem && !denial.exact,
            "{denial:?}"
        );
        ensure!(denial.detail.ends_with("outside/escaped"), "{denial:?}");
    }
    client.close().await;
    Ok(())
}

#[tokio::test]
async fn rexec_completion_carries_the_sandbox_verdict() -> Result<()> {
    completion_carries_the_verdict(Target::Rexec).await
}

rexec_testkit::codex_test! {
    #[tokio::test]
    async fn codex_completion_carries_the_sandbox_verdict() -> Result<()> {
        completion_carries_the_verdict(Target::Codex).await
    }
}

async fn run_cli(args: &[&str]) -> Result<std::process::Output> {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rexec"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .context("rexec run did not finish")?
        .context("waiting for rexec run")
}

async fn run_sandbox_flag(target: Target) -> Result<()> {
    let Some(server) = server(target).await? else {
        return Ok(());
    };
    let dirs = Dirs::outside_tmp()?;
    let ws = dirs.ws.to_string_lossy().into_owned();
    let extra = dirs.base.join("extra");
    std::fs::create_dir_all(&extra)?;
    let outside = dirs.outside.join("f");
    let script = format!(
        "echo a > inside && echo b > {}/f && echo c > {}",
        extra.display(),
        outside.display()
    );
    let extra_arg = extra.to_string_lossy().into_owned();
    let args = [
        "run",
        "--server",
        &server.url,
        "--cwd",
        &ws,
        "--sandbox",
        "workspace-write",
        "--writable",
        &extra_arg,
        "--",
        "sh",
        "-c",
        &script,
    ];
    let output = run_cli(&args).await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success(),
        "exit {:?}, stderr {stderr}",
        output.status
    );
    ensure!(
        stderr.contains("rexec: the sandbox refused"),
        "stderr: {stderr}"
    );
    ensure!(
        dirs.ws.join("inside").exists(),
        "the workspace was not writable: {stderr}"
    );
    ensure!(extra.join("f").exists(), "--writable was not writable");
    ensure!(!outside.exists(), "the write escaped");

    let args = [
        "run",
        "--server",
        &server.url,
        "--cwd",
        &ws,
        "--sandbox",
        "read-only",
        "--",
        "sh",
        "-c",
        "echo x > ro",
    ];
    let output = run_cli(&args).await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success() && stderr.contains("rexec: the sandbox refused"),
        "read-only: {stderr}"
    );
    ensure!(!dirs.ws.join("ro").exists(), "read-only wrote");

    let ok = [
        "run",
        "--server",
        &server.url,
        "--sandbox",
        "read-only",
        "--",
        "true",
    ];
    let output = run_cli(&ok).await?;
    ensure!(
        output.status.success() && output.stderr.is_empty(),
        "true: {output:?}"
    );
    Ok(())
}

#[tokio::test]
async fn rexec_run_sandbox_flag() -> Result<()> {
    run_sandbox_flag(Target::Rexec).await
}

rexec_testkit::codex_test! {
    #[tokio::test]
    async fn codex_run_sandbox_flag() -> Result<()> {
        run_sandbox_flag(Target::Codex).await
    }
}

/// A server that is not root protects `.git` from inside a user namespace. As root, the
/// server is started as `nobody` through `setpriv` (from a copy of the binary in /tmp, which
/// `nobody` can reach wherever the checkout lives); as anyone else, it runs as that user.
#[tokio::test]
async fn unprivileged_server_enforces_the_same_policy() -> Result<()> {
    let dirs = Dirs::new_in(&std::env::temp_dir())?;
    std::fs::create_dir_all(dirs.ws.join(".git"))?;
    let mut command = if rustix::process::getuid().is_root() {
        const NOBODY: u32 = 65534;
        let binary = dirs.base.join("rexec");
        std::fs::copy(env!("CARGO_BIN_EXE_rexec"), &binary)?;
        for dir in [&dirs.base, &dirs.ws, &dirs.outside, &dirs.ws.join(".git")] {
            std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY))?;
        }
        let mut command = tokio::process::Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        command.arg(binary);
        command
    } else {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_rexec"))
    };
    command
        .args(["serve", "--listen", "ws://127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut server = command
        .spawn()
        .context("starting an unprivileged rexec serve")?;
    let stdout = server.stdout.take().context("server stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let url = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .context("the server printed no URL")??
        .context("the server exited before printing its URL")?;
    let client = Client::connect(Endpoint::WebSocket(url), ClientOptions::default()).await?;
    let script = "id -u; echo ok > inside && echo x > .git/HEAD";
    let completion = run(&client, &dirs.ws, script, NetworkAccess::Restricted).await?;
    let stdout = String::from_utf8_lossy(&completion.stdout);
    if rustix::process::getuid().is_root() {
        ensure!(
            stdout.starts_with("65534\n"),
            "not run as nobody: {completion:?}"
        );
    }
    ensure!(
        dirs.ws.join("inside").exists(),
        "workspace not writable: {completion:?}"
    );
    ensure!(
        completion.sandbox_denied,
        ".git write not denied: {completion:?}"
    );
    ensure!(!dirs.ws.join(".git/HEAD").exists(), ".git was written");
    client.close().await;
    Ok(())
}
