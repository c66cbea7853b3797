//! Waiting on a command for a caller (`shell/run`, `shell/wait`): until it finishes, its
//! idle timeout sees no output (`awaitingInput`), or its timeout fires and the interrupt
//! ends it (`timedOut`). A `shell/wait` that says which output it has first gets the
//! rest of the kept output sent again.
//!
//! The interrupt runs in a task of its own, so it completes even when the caller's
//! connection goes away: SIGINT to the terminal's foreground process group, SIGKILL to
//! that group after a grace, and the shell itself killed after another one (a builtin
//! loop that ignores SIGINT runs in the shell's own group).

use super::command::{Command, Snapshot};
use super::slot::ShellSlot;
use super::terminal::TerminalControl;
use crate::outbound::NotificationRoute;
use rexec_protocol::RpcError;
use rexec_protocol::shell::ShellCommandResult;
use rustix::process::Signal;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long an interrupted command gets to end before the next, harder, step.
pub const INTERRUPT_GRACE: Duration = Duration::from_millis(1000);

pub struct Limits {
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
}

/// Send the caller the kept output above `after_seq` before waiting (`shell/wait.afterSeq`).
pub struct Replay {
    pub after_seq: u64,
    pub route: Arc<NotificationRoute>,
}

pub async fn wait(
    slot: &Arc<ShellSlot>,
    command: &Arc<Command>,
    limits: Limits,
    replay: Option<Replay>,
) -> Result<ShellCommandResult, RpcError> {
    let _waiter = slot.waiter();
    if let Some(replay) = replay {
        command.replay(replay.after_seq, replay.route).await;
    }
    let answer = || async { result(slot, command, command.answer_snapshot().await) };
    let called = Instant::now();
    let mut changes = command.subscribe();
    loop {
        changes.borrow_and_update();
        let snapshot = command.snapshot();
        if let Some(error) = snapshot.failed {
            return Err(error);
        }
        if snapshot.finished.is_some() {
            return Ok(answer().await);
        }
        let now = Instant::now();
        let mut deadline: Option<Instant> = None;
        if let Some(started) = snapshot.started {
            let since = started.max(called);
            if let Some(timeout) = limits.timeout {
                let at = since + timeout;
                if at <= now {
                    if command.mark_timed_out()
                        && let Some(control) = slot.terminal()
                    {
                        tokio::spawn(interrupt(control, Arc::clone(command)));
                    }
                } else {
                    deadline = Some(at);
                }
            }
            if let Some(idle) = limits.idle_timeout
                && !snapshot.timed_out
            {
                let at = snapshot.last_output.unwrap_or(since).max(since) + idle;
                if at <= now {
                    return Ok(answer().await);
                }
                deadline = Some(deadline.map_or(at, |d| d.min(at)));
            }
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Err(RpcError::internal("the shell went away"));
                }
            }
            () = sleep_until(deadline) => {}
        }
    }
}

fn result(slot: &ShellSlot, command: &Command, snapshot: Snapshot) -> ShellCommandResult {
    ShellCommandResult {
        name: slot.name.clone(),
        command_id: command.id.clone(),
        awaiting_input: snapshot.finished.is_none(),
        finished: snapshot.finished,
        timed_out: snapshot.timed_out,
        shell_exited: snapshot.shell_exited,
        output: snapshot.output,
        seq: snapshot.seq,
    }
}

async fn interrupt(control: Arc<TerminalControl>, command: Arc<Command>) {
    control.signal_foreground(Signal::INT);
    if ends_within(&command, INTERRUPT_GRACE).await {
        return;
    }
    let group = control.foreground_group();
    if group != control.shell_pid() {
        crate::process::signal_group(group, Signal::KILL);
        if ends_within(&command, INTERRUPT_GRACE).await {
            return;
        }
    }
    tracing::debug!(command = %command.id, "killing a shell whose command ignored the interrupt");
    control.kill();
}

async fn ends_within(command: &Command, grace: Duration) -> bool {
    let mut changes = command.subscribe();
    let deadline = Instant::now() + grace;
    loop {
        if command.is_finished() {
            return true;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return true; },
            () = tokio::time::sleep_until(deadline) => return command.is_finished(),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
