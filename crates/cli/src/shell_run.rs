//! `rexec run --shell NAME -- CMD…`: one command line in a named shell on the server, its
//! output streamed to our stdout as it arrives and its exit code ours; the shell keeps its
//! working directory, variables and functions for the next run.
//!
//! `--timeout` interrupts the command and exits 124, like `timeout(1)`. `--idle-timeout`
//! treats that much silence as the command waiting for input: the next line of our stdin
//! is typed into the shell's terminal, and when stdin has no more the command is
//! interrupted and rexec exits 125. Ctrl-C is typed into the remote terminal.

use crate::run::{RunArgs, local_exit_code, sandbox_policy};
use crate::stdin_lines::StdinLines;
use rexec_client::{ClientError, Shell, ShellKind, ShellOutcome, ShellWait};
use std::io::Write;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Instant;

/// The exit code when `--timeout` interrupted the command (as `timeout(1)`).
pub const TIMED_OUT_EXIT: i32 = 124;
/// The exit code when the command waited for input that stdin did not have.
pub const AWAITING_INPUT_EXIT: i32 = 125;

/// Which shell `--shell-kind` starts.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bash,
    Sh,
    Zsh,
}

impl From<Kind> for ShellKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Bash => ShellKind::Bash,
            Kind::Sh => ShellKind::Sh,
            Kind::Zsh => ShellKind::Zsh,
        }
    }
}

pub async fn run(args: &RunArgs, name: &str) -> anyhow::Result<i32> {
    let client = args.server.client("rexec-run")?;
    let mut shell = client.shell(name);
    if let Some(kind) = args.shell_kind {
        shell = shell.kind(kind.into());
    }
    if let Some(cwd) = &args.cwd {
        shell = shell.cwd(cwd);
    }
    for (key, value) in &args.env {
        shell = shell.env(key, value);
    }
    if let Some(mode) = args.sandbox {
        shell = shell.sandbox(sandbox_policy(mode, &args.writable, args.network));
    }
    // The words as a shell sees them after one round of quoting, as ssh joins them.
    let line = args.command.join(" ");
    let doing = format!("run `{line}` in shell `{name}`");
    let command = Command {
        shell: &shell,
        timeout: args.timeout,
        idle_timeout: args.idle_timeout,
        started: Instant::now(),
        interrupts: signal(SignalKind::interrupt())?,
    };
    let outcome = command
        .follow(line)
        .await
        .map_err(|err| args.server.explain(err, &doing))?;
    client.close().await;
    Ok(match outcome {
        Ending::Done(outcome) => exit_code(&outcome, args.timeout, name),
        Ending::NoInput => {
            eprintln!(
                "rexec: the command waited for input (silent for {}) and stdin has none left; interrupted it",
                crate::duration::format_short(args.idle_timeout.unwrap_or_default())
            );
            AWAITING_INPUT_EXIT
        }
    })
}

enum Ending {
    Done(ShellOutcome),
    NoInput,
}

struct Command<'a> {
    shell: &'a Shell,
    timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    started: Instant,
    interrupts: Signal,
}

impl<'a> Command<'a> {
    async fn follow(mut self, line: String) -> Result<Ending, ClientError> {
        let shell = self.shell;
        let mut run = shell.run(line).on_output(print_stdout);
        if let Some(timeout) = self.timeout {
            run = run.timeout(timeout);
        }
        if let Some(idle) = self.idle_timeout {
            run = run.idle_timeout(idle);
        }
        let mut outcome = noted(self.interruptible(run.into_future()).await?);
        let mut stdin: Option<StdinLines> = None;
        while outcome.awaiting_input {
            // Silent for the idle timeout: it may be waiting for input. Type our next line
            // of stdin, unless the command ends first.
            let id = outcome.command_id.clone();
            let lines = stdin.get_or_insert_with(StdinLines::spawn);
            let until_done = self.wait(&id, None).on_output(print_stdout).into_future();
            let line = tokio::select! {
                line = lines.next() => line,
                done = until_done => {
                    outcome = noted(done?);
                    continue;
                }
                _ = self.interrupts.recv() => {
                    type_interrupt(shell);
                    continue;
                }
            };
            let Some(line) = line else {
                // Nothing left to type: end the command (the server interrupts it now).
                noted(
                    self.shell
                        .wait(&id)
                        .timeout(Duration::ZERO)
                        .on_output(print_stdout)
                        .await?,
                );
                return Ok(Ending::NoInput);
            };
            shell.write(line).await?;
            let next = self.wait(&id, self.idle_timeout).on_output(print_stdout);
            outcome = noted(self.interruptible(next.into_future()).await?);
        }
        Ok(Ending::Done(outcome))
    }

    /// Keep waiting for `id` within what is left of the timeout.
    fn wait(&self, id: &str, idle: Option<Duration>) -> ShellWait<'a> {
        let mut wait = self.shell.wait(id);
        if let Some(timeout) = self.timeout {
            wait = wait.timeout(timeout.saturating_sub(self.started.elapsed()));
        }
        if let Some(idle) = idle {
            wait = wait.idle_timeout(idle);
        }
        wait
    }

    /// Await `call`; each Ctrl-C meanwhile is typed into the remote terminal.
    async fn interruptible<T>(&mut self, call: impl Future<Output = T>) -> T {
        tokio::pin!(call);
        loop {
            tokio::select! {
                result = &mut call => return result,
                _ = self.interrupts.recv() => type_interrupt(self.shell),
            }
        }
    }
}

/// Ctrl-C, typed into the remote terminal from a task of its own (the caller keeps
/// polling its call).
fn type_interrupt(shell: &Shell) {
    let shell = shell.clone();
    tokio::spawn(async move { shell.write("\u{3}").await });
}

/// Say so when output the server no longer kept is missing from our stdout.
fn noted(outcome: ShellOutcome) -> ShellOutcome {
    if outcome.missed_output_bytes > 0 {
        eprintln!(
            "rexec: {} bytes of output printed while rexec waited for stdin are missing (the server keeps the last {} KiB)",
            outcome.missed_output_bytes,
            rexec_client::SHELL_REPLAY_BYTES / 1024
        );
    }
    outcome
}

pub fn print_stdout(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (`| head`) must not fail the remote command; it just is not shown.
    let _ = out.write_all(bytes).and_then(|()| out.flush());
}

fn exit_code(outcome: &ShellOutcome, timeout: Option<Duration>, name: &str) -> i32 {
    if outcome.timed_out {
        eprintln!(
            "rexec: timed out after {}; interrupted the command (shell `{name}` runs on)",
            crate::duration::format_short(timeout.unwrap_or_default())
        );
        return TIMED_OUT_EXIT;
    }
    if outcome.shell_exited {
        eprintln!("rexec: the command ended shell `{name}`; the next run starts a new one");
    }
    outcome.exit_code.map_or(255, local_exit_code)
}
