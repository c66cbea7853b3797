//! A named shell as the registry holds it: its queue of commands, what it runs now, its
//! working directory, when it was last used, and the control of its live terminal.
//!
//! The slot outlives the shell processes behind it: after `exit` the next command of the
//! same name starts a new shell in the same slot. A slot never names the registry; its
//! runner task (`shell::runner`) is the only consumer of its queue.

use super::command::Command;
use super::terminal::{Creation, TerminalControl};
use crate::auth::Principal;
use crate::sync::lock;
use rexec_protocol::shell::{RunningCommand, ShellEntry, ShellKind};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// Commands queued behind the running one, per shell; one more is refused.
pub const MAX_QUEUED_COMMANDS: usize = 64;
/// Finished commands a `shell/wait` can still find by id.
const RECENT_COMMANDS: usize = 16;

/// A command on its way to the runner, with what a new shell would be started with.
pub struct Queued {
    pub command: Arc<Command>,
    pub kind: ShellKind,
    pub creation: Creation,
}

struct Status {
    kind: ShellKind,
    cwd: Option<PathBuf>,
    running: Option<Arc<Command>>,
    /// Queued, running and recently finished commands, oldest first.
    known: VecDeque<Arc<Command>>,
    last_used: Instant,
    /// `shell/run` / `shell/wait` calls waiting on a command: the shell is in use.
    waiters: usize,
    terminal: Option<Arc<TerminalControl>>,
}

pub struct ShellSlot {
    pub name: String,
    pub owner: Principal,
    pub queue: mpsc::Sender<Queued>,
    status: Mutex<Status>,
    /// Signalled when the last waiter leaves, so the runner re-arms its idle timer.
    unwaited: Notify,
}

impl ShellSlot {
    pub fn new(name: String, owner: Principal, kind: ShellKind) -> (Self, mpsc::Receiver<Queued>) {
        let (queue, commands) = mpsc::channel(MAX_QUEUED_COMMANDS);
        let slot = Self {
            name,
            owner,
            queue,
            status: Mutex::new(Status {
                kind,
                cwd: None,
                running: None,
                known: VecDeque::new(),
                last_used: Instant::now(),
                waiters: 0,
                terminal: None,
            }),
            unwaited: Notify::new(),
        };
        (slot, commands)
    }

    /// Remember a command that was just queued, for `shell/wait` and `shell/list`.
    pub fn queued(&self, command: &Arc<Command>) {
        let mut status = lock(&self.status);
        status.last_used = Instant::now();
        status.known.push_back(Arc::clone(command));
        let mut finished = status.known.iter().filter(|c| c.is_finished()).count();
        while finished > RECENT_COMMANDS {
            let Some(at) = status.known.iter().position(|c| c.is_finished()) else {
                break;
            };
            status.known.remove(at);
            finished -= 1;
        }
    }

    pub fn find(&self, command_id: &str) -> Option<Arc<Command>> {
        let status = lock(&self.status);
        status.known.iter().find(|c| c.id == command_id).cloned()
    }

    pub fn touch(&self) {
        lock(&self.status).last_used = Instant::now();
    }

    /// Count a caller waiting on a command until the guard drops.
    pub fn waiter(self: &Arc<Self>) -> Waiter {
        lock(&self.status).waiters += 1;
        Waiter(Arc::clone(self))
    }

    /// When the shell closes for want of use, if nobody is waiting on it now.
    pub fn idle_deadline(&self, idle_timeout: Duration) -> Option<Instant> {
        let status = lock(&self.status);
        (status.waiters == 0).then(|| status.last_used + idle_timeout)
    }

    /// Resolves once no caller waits on the shell any more (after it had one).
    pub async fn unwaited(&self) {
        self.unwaited.notified().await;
    }

    pub fn set_terminal(&self, terminal: Option<Arc<TerminalControl>>, kind: ShellKind) {
        let mut status = lock(&self.status);
        status.terminal = terminal;
        status.kind = kind;
    }

    pub fn terminal(&self) -> Option<Arc<TerminalControl>> {
        lock(&self.status).terminal.clone()
    }

    pub fn set_running(&self, command: Option<Arc<Command>>) {
        let mut status = lock(&self.status);
        if command.is_none() {
            status.last_used = Instant::now();
        } else {
            // A new command starts: only the one that finished last may still be waited
            // on for output nobody streamed, so a shell keeps at most two replay windows.
            let mut finished = status.known.iter().rev().filter(|c| c.is_finished());
            finished.next();
            finished.for_each(|c| c.release_replay());
        }
        status.running = command;
    }

    pub fn set_cwd(&self, cwd: PathBuf) {
        lock(&self.status).cwd = Some(cwd);
    }

    pub fn entry(&self) -> ShellEntry {
        let status = lock(&self.status);
        let running = status.running.as_ref().map(|command| RunningCommand {
            command_id: command.id.clone(),
            command: command.text.clone(),
            running_ms: command
                .started()
                .map_or(0, |started| millis(started.elapsed())),
        });
        let queued = status
            .known
            .iter()
            .filter(|c| c.started().is_none() && !c.is_finished())
            .count();
        ShellEntry {
            name: self.name.clone(),
            shell: status.kind,
            cwd: status.cwd.clone(),
            idle_ms: millis(status.last_used.elapsed()),
            running,
            queued: queued as u64,
        }
    }
}

pub struct Waiter(Arc<ShellSlot>);

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut status = lock(&self.0.status);
        status.waiters -= 1;
        status.last_used = Instant::now();
        if status.waiters == 0 {
            self.0.unwaited.notify_one();
        }
    }
}

pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
