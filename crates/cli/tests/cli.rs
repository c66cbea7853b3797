//! The `rexec run` and `rexec shell` commands, end to end: a real `rexec` binary against a
//! real server (rexec, and codex exec-server 0.169.0 where noted), as a user would run them.
//! `rexec shell` is driven through tmux, like a person at a terminal.

use anyhow::{Context, Result, ensure};
use rexec_testkit::server;
use rexec_testkit::tmux::Tmux;
use server::{Server, ServerOptions, Target};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const DEADLINE: Duration = Duration::from_secs(20);

fn rexec() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rexec"));
    command.kill_on_drop(true);
    command
}

async fn run_cli(args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
    let mut command = rexec();
    command.args(args);
    rexec_testkit::harness::output_within(command, stdin, DEADLINE).await
}

/// A server of `target` (the codex tests are `codex_test!`s: ignored without a binary).
async fn server(target: Target, options: &ServerOptions) -> Result<Option<Server>> {
    Server::spawn(target, options).await.map(Some)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn streams_and_exit_code(target: Target) -> Result<()> {
    let Some(server) = server(target, &ServerOptions::default()).await? else {
        return Ok(());
    };
    let script = "echo out; echo err >&2; exit 3";
    let output = run_cli(
        &["run", "--server", &server.url, "--", "sh", "-c", script],
        None,
    )
    .await?;
    ensure!(
        output.stdout == b"out\n",
        "stdout {:?}",
        text(&output.stdout)
    );
    ensure!(
        output.stderr == b"err\n",
        "stderr {:?}",
        text(&output.stderr)
    );
    ensure!(
        output.status.code() == Some(3),
        "status {:?}",
        output.status
    );
    Ok(())
}

#[tokio::test]
async fn rexec_run_streams_and_exit_code() -> Result<()> {
    streams_and_exit_code(Target::Rexec).await
}

rexec_testkit::codex_test! {
    #[tokio::test]
    async fn codex_run_streams_and_exit_code() -> Result<()> {
        streams_and_exit_code(Target::Codex).await
    }
}

/// Far more output than the server retains, consumed as fast as the pipe allows: every
/// byte arrives, no loss line.
#[tokio::test]
async fn run_delivers_large_output_completely() -> Result<()> {
    let server = Server::spawn(Target::Rexec, &ServerOptions::default()).await?;
    let output = run_cli(
        &[
            "run",
            "--server",
            &server.url,
            "--",
            "head",
            "-c",
            "30000000",
            "/dev/zero",
        ],
        None,
    )
    .await?;
    ensure!(output.status.success(), "status {:?}", output.status);
    ensure!(
        output.stdout.len() == 30_000_000,
        "delivered {} bytes",
        output.stdout.len()
    );
    ensure!(
        output.stderr.is_empty(),
        "stderr {:?}",
        text(&output.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn run_reports_signal_deaths_as_128_plus_n() -> Result<()> {
    let server = Server::spawn(Target::Rexec, &ServerOptions::default()).await?;
    let output = run_cli(
        &[
            "run",
            "--server",
            &server.url,
            "--",
            "sh",
            "-c",
            "kill -TERM $$",
        ],
        None,
    )
    .await?;
    ensure!(
        output.status.code() == Some(143),
        "status {:?}",
        output.status
    );
    Ok(())
}

#[tokio::test]
async fn run_forwards_piped_stdin_and_env_and_tty() -> Result<()> {
    let server = Server::spawn(Target::Rexec, &ServerOptions::default()).await?;
    let output = run_cli(
        &["run", "--server", &server.url, "--", "sort"],
        Some(b"b\na\n"),
    )
    .await?;
    ensure!(
        output.stdout == b"a\nb\n",
        "sorted stdin {:?}",
        text(&output.stdout)
    );
    let output = run_cli(
        &[
            "run",
            "--server",
            &server.url,
            "--env",
            "GREETING=hi there",
            "--",
            "sh",
            "-c",
            "echo \"$GREETING\" $HOME",
        ],
        None,
    )
    .await?;
    let home = std::env::var("HOME").unwrap_or_default();
    ensure!(
        text(&output.stdout) == format!("hi there {home}\n"),
        "env {:?}",
        text(&output.stdout)
    );
    let output = run_cli(
        &[
            "run",
            "--server",
            &server.url,
            "--tty",
            "--",
            "sh",
            "-c",
            "test -t 1 && echo on-a-tty",
        ],
        None,
    )
    .await?;
    ensure!(
        output.stdout == b"on-a-tty\r\n",
        "tty {:?}",
        text(&output.stdout)
    );
    Ok(())
}

/// Stdin that keeps coming after the start is forwarded as it arrives: the command answers
/// the first line before the second is written; more than the read-ahead gets through whole.
#[tokio::test]
async fn run_forwards_stdin_as_it_arrives() -> Result<()> {
    use tokio::io::AsyncReadExt;
    let server = Server::spawn(Target::Rexec, &ServerOptions::default()).await?;
    let mut child = rexec()
        .args(["run", "--server", &server.url, "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting rexec")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut stdout = child.stdout.take().context("stdout")?;
    stdin.write_all(b"first\n").await?;
    let mut echoed = vec![0u8; 6];
    tokio::time::timeout(DEADLINE, stdout.read_exact(&mut echoed))
        .await
        .context("the first line was not forwarded while stdin stayed open")??;
    ensure!(echoed == b"first\n", "echoed {:?}", text(&echoed));
    // 10 MiB: more than `rexec run` reads ahead, so it streams, and the close follows.
    let bulk: Vec<u8> = (0..10u32 << 20).map(|i| (i % 251) as u8).collect();
    let writer = {
        let bulk = bulk.clone();
        tokio::spawn(async move {
            stdin.write_all(&bulk).await?;
            drop(stdin);
            anyhow::Ok(())
        })
    };
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, stdout.read_to_end(&mut rest))
        .await
        .context("the rest of stdin was not echoed")??;
    writer.await??;
    let status = tokio::time::timeout(DEADLINE, child.wait()).await??;
    ensure!(status.success(), "rexec run exited with {status}");
    ensure!(
        rest == bulk,
        "echoed {} bytes of {}, equal prefix {}",
        rest.len(),
        bulk.len(),
        rest.iter().zip(&bulk).take_while(|(a, b)| a == b).count()
    );
    Ok(())
}

rexec_testkit::codex_test! {
    /// codex 0.169 cannot close a command's stdin: `rexec run` says it does not forward it
    /// (the command would otherwise wait forever) and runs the command with no input.
    #[tokio::test]
    async fn codex_run_says_stdin_is_not_forwarded() -> Result<()> {
        let Some(server) = server(Target::Codex, &ServerOptions::default()).await? else {
            return Ok(());
        };
        let output = run_cli(
            &[
                "run",
                "--server",
                &server.url,
                "--",
                "sh",
                "-c",
                "cat; echo done",
            ],
            Some(b"ignored\n"),
        )
        .await?;
        let stderr = text(&output.stderr);
        ensure!(
            output.status.success(),
            "exit {:?}: {stderr}",
            output.status
        );
        ensure!(
            output.stdout == b"done\n",
            "stdout {:?}",
            text(&output.stdout)
        );
        ensure!(stderr.contains("stdin is not forwarded"), "stderr {stderr}");
        Ok(())
    }
}

#[tokio::test]
async fn run_fails_clearly_when_unreachable_or_refused() -> Result<()> {
    let output = run_cli(&["run", "--server", "ws://127.0.0.1:9", "--", "true"], None).await?;
    ensure!(
        output.status.code() == Some(255),
        "status {:?}",
        output.status
    );
    ensure!(
        text(&output.stderr).contains("cannot connect to ws://127.0.0.1:9"),
        "stderr {:?}",
        text(&output.stderr)
    );

    let options = ServerOptions {
        token: Some("s3cret".into()),
        ..Default::default()
    };
    let server = Server::spawn(Target::Rexec, &options).await?;
    let output = run_cli(&["run", "--server", &server.url, "--", "true"], None).await?;
    ensure!(
        output.status.code() == Some(255),
        "status {:?}",
        output.status
    );
    ensure!(
        text(&output.stderr).contains("401"),
        "stderr {:?}",
        text(&output.stderr)
    );

    let dir = std::env::temp_dir().join(format!("rexec-cli-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cret\n")?;
    let token_path = token_file.display().to_string();
    let output = run_cli(
        &[
            "run",
            "--server",
            &server.url,
            "--token-file",
            &token_path,
            "--",
            "echo",
            "ok",
        ],
        None,
    )
    .await?;
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(
        output.stdout == b"ok\n" && output.status.success(),
        "with token: {output:?}"
    );
    Ok(())
}

#[tokio::test]
async fn shell_through_tmux_types_resizes_and_interrupts() -> Result<()> {
    let server = Server::spawn(Target::Rexec, &ServerOptions::default()).await?;
    let command = format!(
        "{} shell --server {} --shell /bin/sh",
        env!("CARGO_BIN_EXE_rexec"),
        server.url
    );
    let Some(tmux) = Tmux::start("shell_through_tmux", &command, 100, 30).await? else {
        return Ok(());
    };
    tmux.tmux(&["set-option", "-t", "t", "status", "off"])
        .await?;
    // Like a person: wait for the remote prompt (`sh` prints `#` for root, `$` otherwise;
    // capture-pane trims the trailing space).
    tmux.wait_for_any(&["#", "$"]).await?;
    tmux.type_line("echo hello-$((6*7))").await?;
    tmux.wait_for("hello-42").await?;

    tmux.tmux(&["resize-window", "-t", "t", "-x", "90", "-y", "25"])
        .await?;
    tmux.type_line("clear; stty size").await?;
    tmux.wait_for("25 90").await?;

    tmux.type_line("sleep 30; echo slept-$((2+2))").await?;
    tmux.press("C-c").await?;
    tmux.type_line("echo after-$((1+1))-interrupt").await?;
    let screen = tmux.wait_for("after-2-interrupt").await?;
    ensure!(
        !screen.contains("slept-4"),
        "Ctrl-C did not reach the remote sleep:\n{screen}"
    );

    tmux.type_line("exit").await?;
    tmux.until_ended("`exit`").await
}
