//! The runner: one task per named shell, the only reader of its terminal and the only
//! consumer of its command queue.
//!
//! It starts a shell for the first queued command (and again after the shell ended, for
//! the next one), sends one command line at a time once the shell shows its prompt, feeds
//! the terminal's output through the marker parser, forwards what lies between a command's
//! start and its end marker as that command's output, and finishes the command at the
//! prompt that follows. When the shell exits, the running command finishes with
//! `shellExited`; when nobody used the shell for the idle timeout, it is killed and its
//! slot removed. Output that arrives while no command runs (a background job) is dropped.

use super::command::{Command, End};
use super::integration::Integration;
use super::markers::{Event, MarkerParser};
use super::registry::Slots;
use super::slot::{Queued, ShellSlot};
use super::terminal::Terminal;
use std::ffi::OsString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::time::Instant;

const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Reads of what the shell left in its terminal when it exited.
const EXIT_DRAIN_READS: usize = 16;

pub(super) async fn run(
    slot: Arc<ShellSlot>,
    mut queue: mpsc::Receiver<Queued>,
    slots: Arc<Slots>,
    idle_timeout: Duration,
) {
    loop {
        let Ok(queued) = queue.try_recv() else {
            if slots.remove_if_drained(&slot, &queue) {
                return;
            }
            continue;
        };
        let integration = Integration::new(queued.kind);
        let terminal = match Terminal::spawn(&integration, &queued.creation).await {
            Ok(terminal) => terminal,
            Err(err) => {
                queued.command.fail(err);
                continue;
            }
        };
        slot.set_terminal(Some(Arc::clone(&terminal.control)), queued.kind);
        let session = Session {
            slot: &slot,
            parser: MarkerParser::new(&integration.nonce),
            integration,
            running: None,
            ready: false,
            status: None,
            cwd: None,
        };
        let ended = session
            .serve(terminal, queued.command, &mut queue, idle_timeout)
            .await;
        slot.set_terminal(None, ended.kind);
        if ended.idle && slots.remove_if_drained(&slot, &queue) {
            return;
        }
    }
}

struct Ended {
    kind: rexec_protocol::shell::ShellKind,
    /// Closed for want of use, not by its own exit.
    idle: bool,
}

/// One shell process, from its start to its exit.
struct Session<'a> {
    slot: &'a ShellSlot,
    integration: Integration,
    parser: MarkerParser,
    running: Option<Arc<Command>>,
    /// The shell has shown its first prompt (the integration is installed).
    ready: bool,
    /// The status of the end marker, until the prompt after it.
    status: Option<i32>,
    cwd: Option<PathBuf>,
}

impl Session<'_> {
    async fn serve(
        mut self,
        mut terminal: Terminal,
        first: Arc<Command>,
        queue: &mut mpsc::Receiver<Queued>,
        idle_timeout: Duration,
    ) -> Ended {
        let kind = self.integration.kind;
        let control = Arc::clone(&terminal.control);
        let mut pending = Some(first);
        let setup = match control.reset_modes() {
            Ok(()) => control.write(&self.integration.setup_script()).await,
            Err(err) => Err(err),
        };
        if let Err(err) = setup {
            tracing::warn!(shell = %self.slot.name, %err, "failed to set up the shell");
            control.kill();
        }
        let mut hung_up = false;
        loop {
            if self.ready
                && self.running.is_none()
                && let Some(command) = pending.take()
            {
                self.start(command).await;
            }
            let can_take = self.ready && self.running.is_none();
            let idle_deadline = self.slot.idle_deadline(idle_timeout);
            tokio::select! {
                biased;
                read = read_some(&terminal.reader), if !hung_up => match read {
                    Ok(bytes) => self.on_output(&bytes).await,
                    // EIO: nothing holds the terminal any more; the exit follows.
                    Err(_) => hung_up = true,
                },
                status = terminal.child.wait() => {
                    control.descendants().reaped();
                    if !hung_up {
                        self.drain(&terminal.reader).await;
                    }
                    // A background job of the shell dies with it.
                    control.kill();
                    control.descendants().remove_if_empty();
                    let exit_code = match status {
                        Ok(status) => status
                            .code()
                            .or_else(|| status.signal().map(|signal| 128 + signal))
                            .unwrap_or(-1),
                        Err(_) => -1,
                    };
                    self.shell_ended(exit_code, pending).await;
                    return Ended { kind, idle: false };
                }
                queued = queue.recv(), if can_take => {
                    if let Some(queued) = queued {
                        pending = Some(queued.command);
                    }
                }
                // The idle deadline is computed again on the next turn.
                () = self.slot.unwaited(), if idle_deadline.is_none() => {}
                () = sleep_until(idle_deadline), if idle_deadline.is_some() => {
                    if self.slot.idle_deadline(idle_timeout).is_some_and(|at| at <= Instant::now()) {
                        tracing::debug!(shell = %self.slot.name, "closing an idle shell");
                        control.kill();
                        let _ = terminal.child.wait().await;
                        control.descendants().reaped();
                        control.descendants().remove_if_empty();
                        self.shell_ended(-1, pending).await;
                        return Ended { kind, idle: true };
                    }
                }
            }
        }
    }

    /// Send `command` to the shell, which waits at its prompt.
    async fn start(&mut self, command: Arc<Command>) {
        let Some(control) = self.slot.terminal() else {
            return;
        };
        let line = match self.integration.command_line(&command.text) {
            Ok(line) => line,
            Err(why) => {
                command.fail(rexec_protocol::RpcError::invalid_params(why));
                return;
            }
        };
        self.slot.set_running(Some(Arc::clone(&command)));
        command.mark_started();
        self.running = Some(command);
        self.status = None;
        let sent = match control.reset_modes() {
            Ok(()) => control.write(&line).await,
            Err(err) => Err(err),
        };
        if let Err(err) = sent {
            // The shell is going away; its exit finishes the command.
            tracing::debug!(shell = %self.slot.name, %err, "failed to send a command");
        }
    }

    async fn on_output(&mut self, bytes: &[u8]) {
        let mut events = Vec::new();
        self.parser.feed(bytes, &mut events);
        for event in events {
            match event {
                Event::Output(bytes) => {
                    if let Some(command) = &self.running {
                        command.output(bytes).await;
                    }
                }
                Event::CommandStart => {}
                Event::CommandEnd(status) => self.status = Some(status),
                Event::Cwd(path) => {
                    let cwd = PathBuf::from(OsString::from_vec(path));
                    self.slot.set_cwd(cwd.clone());
                    self.cwd = Some(cwd);
                }
                Event::Prompt => {
                    self.ready = true;
                    if let Some(command) = self.running.take() {
                        let end = End {
                            exit_code: self.status.take().unwrap_or(-1),
                            cwd: self.cwd.clone(),
                            shell_exited: false,
                        };
                        command.finish(end).await;
                        self.slot.set_running(None);
                    }
                }
            }
        }
    }

    /// The shell exited: the running command ended it; a command not yet sent fails.
    async fn shell_ended(&mut self, exit_code: i32, pending: Option<Arc<Command>>) {
        if let Some(command) = self.running.take() {
            let end = End {
                exit_code,
                cwd: None,
                shell_exited: true,
            };
            command.finish(end).await;
            self.slot.set_running(None);
        }
        if let Some(command) = pending {
            command.fail(rexec_protocol::RpcError::internal(
                "the shell exited before the command ran",
            ));
        }
    }

    async fn drain(&mut self, reader: &AsyncFd<OwnedFd>) {
        for _ in 0..EXIT_DRAIN_READS {
            match try_read(reader) {
                Ok(Some(bytes)) => self.on_output(&bytes).await,
                Ok(None) | Err(_) => break,
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The next bytes from the terminal; an error (EIO) once no process holds it.
async fn read_some(reader: &AsyncFd<OwnedFd>) -> io::Result<Vec<u8>> {
    loop {
        let mut guard = reader.readable().await?;
        match guard.try_io(|fd| read_chunk(fd.get_ref())) {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

/// One read that does not wait: `None` when nothing is there.
fn try_read(reader: &AsyncFd<OwnedFd>) -> io::Result<Option<Vec<u8>>> {
    match read_chunk(reader.get_ref()) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(err) => Err(err),
    }
}

fn read_chunk(fd: &OwnedFd) -> io::Result<Vec<u8>> {
    let mut buffer = [MaybeUninit::<u8>::uninit(); READ_CHUNK_BYTES];
    match rustix::io::read(fd, &mut buffer) {
        Ok(([], _)) => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
        Ok((filled, _)) => Ok(filled.to_vec()),
        Err(err) => Err(err.into()),
    }
}
