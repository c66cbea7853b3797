//! Processes: spawning, the per-process event log, the output pump, stdin, signals, the
//! long-poll read and server-side waits.
//!
//! A [`Process`] is shared between the handlers (read, write, signal, terminate, resize) and
//! its pump task, the only writer of its event log. Everything that touches the log holds the
//! log's mutex briefly and never awaits under it; readers wait on the `changes` watch, and
//! the pump of a process that holds its output waits on `room` for an acknowledgement.

pub mod cgroup;
pub mod clone3;
pub mod clone_spawn;
pub mod containment;
pub mod env;
pub mod event_log;
pub mod pump;
pub mod read;
pub mod reaper;
pub mod shell_snapshot;
pub mod spawn;
pub mod stdin;
pub mod table;
pub mod wait;
pub mod write_order;

use crate::sandbox::Sandbox;
use crate::sync::lock;
use bytes::Bytes;
use containment::Descendants;
use event_log::{EventLog, ExitRecord, HELD_OUTPUT_BYTES, RETAINED_OUTPUT_CHUNKS};
use rexec_protocol::process::OutputStream;
use rustix::process::{Pid, Signal};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use stdin::StdinPort;
use tokio::sync::{Notify, watch};

pub struct Process {
    pub id: String,
    /// The child's process group (its pid: every child leads its own group) and
    /// everything it started, for killing.
    descendants: Descendants,
    /// The PTY master, for `tty: true` processes.
    pty_master: Option<Arc<OwnedFd>>,
    log: Mutex<EventLog>,
    /// Bumped after every change to the log; long-poll reads wait on it.
    changes: watch::Sender<()>,
    /// `holdOutput`: unacknowledged output is never evicted, the pump waits for room.
    holds_output: bool,
    /// Signalled when an acknowledgement (or a released hold) may have made room.
    room: Notify,
    pub stdin: StdinPort,
    /// The policy and filter record of a sandboxed process.
    sandbox: Option<Sandbox>,
}

impl Process {
    pub fn new(
        id: String,
        descendants: Descendants,
        pty_master: Option<Arc<OwnedFd>>,
        stdin: StdinPort,
        sandbox: Option<Sandbox>,
        holds_output: bool,
    ) -> Self {
        let log = if holds_output {
            EventLog::holding(HELD_OUTPUT_BYTES, RETAINED_OUTPUT_CHUNKS)
        } else {
            EventLog::default()
        };
        Self {
            id,
            descendants,
            pty_master,
            log: Mutex::new(log),
            changes: watch::Sender::new(()),
            holds_output,
            room: Notify::new(),
            stdin,
            sandbox,
        }
    }

    pub fn log(&self) -> MutexGuard<'_, EventLog> {
        lock(&self.log)
    }

    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_replace(());
    }

    pub fn record_output(&self, stream: OutputStream, bytes: Bytes) -> u64 {
        let seq = self.log().push_output(stream, bytes);
        self.changed();
        seq
    }

    pub fn holds_output(&self) -> bool {
        self.holds_output
    }

    /// The client has every event up to `seq` (`process/ack`, or a `process/read` from
    /// there). Harmless for a process that does not hold its output.
    pub fn acknowledge(&self, seq: u64) {
        if self.holds_output && self.log().acknowledge(seq) {
            self.room.notify_one();
        }
    }

    /// Evict as usual from now on: nobody will acknowledge (the session expired, the
    /// server shuts down), and the pump must not wait for that.
    pub fn release_hold(&self) {
        if self.holds_output {
            self.log().release_hold();
            self.room.notify_one();
        }
    }

    /// Whether one more read of output fits without evicting held output.
    pub fn has_room_for_output(&self) -> bool {
        self.log().has_room(pump::READ_CHUNK_BYTES)
    }

    /// Wait until one more read of output fits. Only the pump waits here; `notify_one`
    /// keeps a wake-up that comes between its check and its wait.
    pub async fn room_for_output(&self) {
        while !self.has_room_for_output() {
            self.room.notified().await;
        }
    }

    /// Record the exit with the sandbox's verdict on it (judged from the retained output).
    pub fn record_exit(&self, code: i32) -> ExitRecord {
        let denial = self.sandbox.as_ref().and_then(|sandbox| {
            let output = self.retained_text();
            sandbox.verdict(code, &output)
        });
        let record = self.log().record_exit(code, denial);
        self.changed();
        record
    }

    /// Retained output, stream by stream (so lines do not interleave), lossily decoded,
    /// for the denial heuristic.
    fn retained_text(&self) -> String {
        let log = self.log();
        let mut text = String::new();
        for stream in [
            OutputStream::Stderr,
            OutputStream::Stdout,
            OutputStream::Pty,
        ] {
            let mut bytes = Vec::new();
            for chunk in log.retained().filter(|c| c.stream == stream) {
                bytes.extend_from_slice(&chunk.bytes);
            }
            text.push_str(&String::from_utf8_lossy(&bytes));
            text.push('\n');
        }
        text
    }

    pub fn record_closed(&self) -> u64 {
        let seq = self.log().record_closed();
        self.changed();
        seq
    }

    pub fn has_exited(&self) -> bool {
        self.log().exit().is_some()
    }

    pub fn is_tty(&self) -> bool {
        self.pty_master.is_some()
    }

    /// SIGKILL the process and every descendant: its cgroup; or, in the subreaper
    /// fallback, its group and what is attributed to it, unless it is closed already.
    pub fn kill_group(&self) {
        if !self.descendants.kill_outlives_close() && self.log().is_closed() {
            return;
        }
        self.descendants.kill();
    }

    pub fn descendants(&self) -> &Descendants {
        &self.descendants
    }

    /// Ctrl-C: SIGINT to the terminal's foreground group for a PTY (what a keyboard
    /// interrupt reaches), else to the child's group.
    pub fn interrupt(&self) -> std::io::Result<()> {
        if self.log().is_closed() {
            return Ok(());
        }
        let group = self
            .pty_master
            .as_deref()
            .and_then(|master| rustix::termios::tcgetpgrp(master).ok())
            .unwrap_or(self.descendants.pid());
        match rustix::process::kill_process_group(group, Signal::INT) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Set the PTY window size (the kernel sends SIGWINCH to the foreground group).
    /// `None` when the process has no PTY.
    pub fn resize(&self, rows: u16, cols: u16) -> Option<std::io::Result<()>> {
        let master = self.pty_master.as_deref()?;
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        Some(rustix::termios::tcsetwinsize(master, size).map_err(Into::into))
    }
}

pub(crate) fn signal_group(pgid: Pid, signal: Signal) {
    if let Err(err) = rustix::process::kill_process_group(pgid, signal)
        && err != rustix::io::Errno::SRCH
    {
        tracing::warn!(pgid = pgid.as_raw_nonzero().get(), %err, "failed to signal process group");
    }
}
