//! `rexec shell`: an interactive login shell on the server in a PTY. The local terminal is
//! raw while it runs (so Ctrl-C, Ctrl-D and friends reach the remote terminal as bytes) and is
//! restored on every way out; window size changes follow SIGWINCH. `--attach NAME` opens a
//! named shell instead (`shell_attach`).

use crate::connect::{ServerArgs, parse_env_pair};
use crate::run::local_exit_code;
use crate::terminal::{RawMode, window_size};
use anyhow::Context;
use rexec_client::{Process, ProcessEvent, ProcessSpec, extensions};
use std::io::Write;
use std::path::PathBuf;
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};

#[derive(clap::Args, Debug)]
pub struct ShellArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The shell to run (default: the server's login shell).
    #[arg(long, conflicts_with = "attach")]
    pub shell: Option<String>,
    /// Open the named shell NAME (the one `rexec run --shell NAME` uses) at a line prompt
    /// instead: each line runs as one of its commands.
    #[arg(long, value_name = "NAME")]
    pub attach: Option<String>,
    /// Working directory on the server (default: the server's own).
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Set NAME=VALUE in the remote environment (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env_pair)]
    pub env: Vec<(String, String)>,
}

pub async fn run(args: ShellArgs) -> anyhow::Result<i32> {
    if let Some(name) = &args.attach {
        return crate::shell_attach::run(&args, name).await;
    }
    let client = args.server.connect("rexec-shell").await?;
    let shell = args
        .shell
        .clone()
        .or_else(|| client.environment_info().map(|info| info.shell.path))
        .unwrap_or_else(|| "/bin/sh".to_owned());
    // Lossless: a slow terminal slows the remote program instead of dropping output.
    let mut spec = ProcessSpec::new([shell.clone(), "-l".to_owned()])
        .tty(true)
        .lossless(true)
        .output_budget(0)
        .envs(args.env.iter().cloned());
    spec.cwd = args.cwd.clone();
    let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".to_owned());
    spec.env.entry("TERM".to_owned()).or_insert(term);
    let mut raw = RawMode::enable().context("rexec shell needs a terminal on stdin")?;
    let process = client
        .start(spec)
        .await
        .with_context(|| format!("failed to start `{shell}`"))?;
    let resizable = client.supports(extensions::PROCESS_RESIZE);
    if resizable && let Some((rows, cols)) = window_size() {
        process.resize(rows, cols).await?;
    }
    tokio::spawn(forward_keys(process.clone()));
    let code = relay(&process, resizable).await;
    raw.restore();
    client.close().await;
    code
}

/// Every byte typed goes to the remote terminal, Ctrl-C included.
async fn forward_keys(process: Process) {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 || process.write(&buf[..n]).await.is_err() {
            break;
        }
    }
}

async fn relay(process: &Process, resizable: bool) -> anyhow::Result<i32> {
    // The stream is lossless: control requests go out from their own tasks and this loop
    // keeps polling.
    let mut events = process.events();
    let mut winch = signal(SignalKind::window_change())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = winch.recv() => {
                if resizable && let Some((rows, cols)) = window_size() {
                    let process = process.clone();
                    tokio::spawn(async move { process.resize(rows, cols).await });
                }
                continue;
            }
            _ = hangup.recv() => { terminate_in_background(process); continue; }
            _ = term.recv() => { terminate_in_background(process); continue; }
        };
        match event {
            Some(ProcessEvent::Output { bytes, .. }) => {
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes)?;
                out.flush()?;
            }
            Some(ProcessEvent::Exited { .. }) => {}
            Some(ProcessEvent::Gap { bytes_lost, .. }) => {
                eprint!("\r\nrexec: {bytes_lost} bytes of output were lost in transit\r\n");
            }
            Some(ProcessEvent::Closed { .. }) => break,
            Some(ProcessEvent::Failed { reason }) => {
                anyhow::bail!("the remote shell failed: {reason}")
            }
            None => anyhow::bail!("the connection ended before the shell exited"),
        }
    }
    Ok(local_exit_code(process.wait().await?.exit_code))
}

fn terminate_in_background(process: &Process) {
    let process = process.clone();
    tokio::spawn(async move { process.terminate().await });
}
