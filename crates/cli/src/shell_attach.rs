//! `rexec shell --attach NAME`: a person at a named shell, line by line.
//!
//! The shell's terminal belongs to the server's shell runner, and a command's output goes
//! only to the client that waits on it, so this is not a terminal attach: it is a prompt
//! (`NAME:CWD$ `) where each line typed runs as one command of that shell (`shell/run`,
//! queued behind whatever another client runs there), its output streamed as it arrives
//! and a non-zero exit code shown. On a terminal, lines typed while a command runs go to
//! its terminal (`shell/write`: a `read`, a password prompt) and Ctrl-C interrupts it; from
//! a pipe, every line is a command. End of input leaves; the shell stays.

use crate::shell::ShellArgs;
use crate::shell_run::print_stdout;
use crate::stdin_lines::StdinLines;
use rexec_client::{ClientError, Shell, ShellOutcome};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use tokio::signal::unix::{SignalKind, signal};

pub async fn run(args: &ShellArgs, name: &str) -> anyhow::Result<i32> {
    let client = args.server.connect("rexec-shell").await?;
    let mut shell = client.shell(name);
    if let Some(cwd) = &args.cwd {
        shell = shell.cwd(cwd);
    }
    for (key, value) in &args.env {
        shell = shell.env(key, value);
    }
    let entry = client
        .shells()
        .await
        .map_err(|err| args.server.explain(err, "list the named shells"))?
        .into_iter()
        .find(|entry| entry.name == name);
    let mut cwd = entry.as_ref().and_then(|entry| entry.cwd.clone());
    let state = if entry.is_some() { "" } else { " (new)" };
    eprintln!(
        "rexec: named shell `{name}`{state}: each line runs as one command; Ctrl-D leaves, the shell stays"
    );
    if let Some(running) = entry.and_then(|entry| entry.running) {
        eprintln!(
            "rexec: `{}` runs there; commands queue behind it",
            running.command
        );
    }
    let typing = std::io::stdin().is_terminal();
    let mut lines = StdinLines::spawn();
    let mut interrupts = signal(SignalKind::interrupt())?;
    let mut status = 0;
    loop {
        prompt(name, cwd.as_ref());
        let line = tokio::select! {
            line = lines.next() => line,
            _ = interrupts.recv() => {
                println!();
                continue;
            }
        };
        let Some(line) = line else { break };
        if !typing {
            // A transcript of a script reads like a terminal session.
            print_stdout(line.as_bytes());
        }
        if line.trim().is_empty() {
            continue;
        }
        let mut at_line_start = true;
        let outcome = run_line(
            &shell,
            line,
            typing,
            &mut lines,
            &mut interrupts,
            &mut at_line_start,
        )
        .await;
        if !at_line_start {
            println!();
        }
        match outcome {
            Ok(outcome) => {
                status = outcome.exit_code.unwrap_or(255);
                cwd = outcome.cwd.clone().or(cwd);
                report(&outcome);
            }
            Err(err @ ClientError::Rpc(_)) => eprintln!("rexec: {err}"),
            Err(err) => return Err(args.server.explain(err, "run the command")),
        }
    }
    println!();
    client.close().await;
    Ok(crate::run::local_exit_code(status))
}

/// Run one line; on a terminal, what is typed meanwhile goes to the command.
async fn run_line(
    shell: &Shell,
    line: String,
    typing: bool,
    lines: &mut StdinLines,
    interrupts: &mut tokio::signal::unix::Signal,
    at_line_start: &mut bool,
) -> Result<ShellOutcome, ClientError> {
    let run = shell.run(line).on_output(|bytes| {
        if let Some(&last) = bytes.last() {
            *at_line_start = last == b'\n';
        }
        print_stdout(bytes);
    });
    let run = std::future::IntoFuture::into_future(run);
    tokio::pin!(run);
    let mut input_open = typing;
    loop {
        tokio::select! {
            outcome = &mut run => return outcome,
            line = lines.next(), if input_open => match line {
                Some(line) => shell.write(line).await?,
                None => input_open = false,
            },
            _ = interrupts.recv() => shell.write("\u{3}").await?,
        }
    }
}

fn prompt(name: &str, cwd: Option<&PathBuf>) {
    let cwd = cwd.map_or("?".to_owned(), |cwd| cwd.display().to_string());
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{name}:{cwd}$ ").and_then(|()| out.flush());
}

fn report(outcome: &ShellOutcome) {
    let code = outcome.exit_code.unwrap_or(255);
    if outcome.shell_exited {
        println!("[the shell exited with {code}; the next command starts a new one]");
    } else if code != 0 {
        println!("[exit {code}]");
    }
}
