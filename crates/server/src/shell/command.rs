//! One command line of a shell: its output summary, its seq sequence, its end, and where
//! its notifications go.
//!
//! The shell's runner is the only producer: it numbers each output chunk and the finish
//! record from one counter and sends each notification before it reads on, so they leave
//! in seq order. Callers (`shell/run`, `shell/wait`) watch `changes` and read a snapshot.
//! `sending` orders a chunk's recording and sending against a replay (`shell::replay`) and
//! an answer: a replay goes out whole between two live chunks, and an answer follows every
//! chunk it counts.

use super::replay::{ReplayWindow, Replayed};
use crate::outbound::{NotificationRoute, OutboundFrame};
use crate::sync::lock;
use rexec_protocol::jsonrpc::notification_frame;
use rexec_protocol::method;
use rexec_protocol::shell::{
    CommandFinished, OutputSummary, ShellFinishedNotification, ShellOutputNotification,
};
use rexec_protocol::{ByteChunk, RpcError};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Output kept from the start and from the end of a command; what lies between is counted.
pub const HEAD_BYTES: usize = 16 * 1024;
pub const TAIL_BYTES: usize = 16 * 1024;

/// How a command ended.
#[derive(Debug, Clone)]
pub struct End {
    pub exit_code: i32,
    pub cwd: Option<PathBuf>,
    pub shell_exited: bool,
}

/// What a caller sees of a command at one moment.
pub struct Snapshot {
    pub seq: u64,
    pub finished: Option<CommandFinished>,
    pub timed_out: bool,
    pub shell_exited: bool,
    pub output: OutputSummary,
    pub started: Option<Instant>,
    pub last_output: Option<Instant>,
    /// The command could not run (its shell failed to start).
    pub failed: Option<RpcError>,
}

#[derive(Default)]
struct Progress {
    started: Option<Instant>,
    last_output: Option<Instant>,
    seq: u64,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
    finished: Option<CommandFinished>,
    shell_exited: bool,
    timed_out: bool,
    failed: Option<RpcError>,
    /// The session whose connection gets the notifications (the last caller's).
    subscriber: Option<Arc<NotificationRoute>>,
    replay: ReplayWindow,
}

pub struct Command {
    pub id: String,
    pub shell_name: String,
    pub text: String,
    progress: Mutex<Progress>,
    changes: watch::Sender<()>,
    sending: tokio::sync::Mutex<()>,
}

impl Command {
    pub fn new(id: String, shell_name: String, text: String) -> Self {
        Self {
            id,
            shell_name,
            text,
            progress: Mutex::new(Progress::default()),
            changes: watch::Sender::new(()),
            sending: tokio::sync::Mutex::new(()),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.changes.subscribe()
    }

    /// Send this command's notifications to `route` from now on.
    pub fn set_subscriber(&self, route: Arc<NotificationRoute>) {
        lock(&self.progress).subscriber = Some(route);
    }

    pub fn mark_started(&self) {
        lock(&self.progress).started = Some(Instant::now());
        self.changes.send_replace(());
    }

    pub fn started(&self) -> Option<Instant> {
        lock(&self.progress).started
    }

    pub fn is_finished(&self) -> bool {
        let progress = lock(&self.progress);
        progress.finished.is_some() || progress.failed.is_some()
    }

    /// The timeout fired; the result will say so however the command ends.
    pub fn mark_timed_out(&self) -> bool {
        let mut progress = lock(&self.progress);
        !std::mem::replace(&mut progress.timed_out, true)
    }

    /// Record and forward a chunk of output (backpressure: waits for the connection).
    pub async fn output(&self, bytes: Vec<u8>) {
        let _sending = self.sending.lock().await;
        let (seq, offset, route) = {
            let mut progress = lock(&self.progress);
            progress.seq += 1;
            progress.last_output = Some(Instant::now());
            let offset = progress.total;
            progress.total += bytes.len() as u64;
            let seq = progress.seq;
            let into_head = HEAD_BYTES
                .saturating_sub(progress.head.len())
                .min(bytes.len());
            progress.head.extend_from_slice(&bytes[..into_head]);
            let rest = &bytes[into_head..];
            progress.tail.extend(rest.iter().copied());
            let excess = progress.tail.len().saturating_sub(TAIL_BYTES);
            progress.tail.drain(..excess);
            (seq, offset, progress.subscriber.clone())
        };
        self.changes.send_replace(());
        let chunk = Replayed {
            seq,
            offset,
            after_gap: false,
            bytes,
        };
        let notification = self.notification(chunk);
        send(route, method::SHELL_OUTPUT, &notification).await;
        // Kept after the send, which no replay or answer can come between (`sending`).
        let bytes = notification.chunk.0;
        lock(&self.progress).replay.push(seq, offset, bytes);
    }

    /// Send `route` again the kept output above `after_seq`, before any later chunk.
    pub async fn replay(&self, after_seq: u64, route: Arc<NotificationRoute>) {
        let _sending = self.sending.lock().await;
        let replayed = lock(&self.progress).replay.since(after_seq);
        for chunk in replayed {
            let notification = self.notification(chunk);
            send(
                Some(Arc::clone(&route)),
                method::SHELL_OUTPUT,
                &notification,
            )
            .await;
        }
    }

    /// Free the kept output: nobody is expected to wait on this command any more.
    pub fn release_replay(&self) {
        lock(&self.progress).replay.release();
    }

    fn notification(&self, chunk: Replayed) -> ShellOutputNotification {
        ShellOutputNotification {
            name: self.shell_name.clone(),
            command_id: self.id.clone(),
            seq: chunk.seq,
            offset: chunk.offset,
            after_gap: chunk.after_gap,
            chunk: ByteChunk(chunk.bytes),
        }
    }

    /// Record the end and send the finish record, next in the seq sequence.
    pub async fn finish(&self, end: End) {
        let (notification, route) = {
            let mut progress = lock(&self.progress);
            if progress.finished.is_some() {
                return;
            }
            progress.seq += 1;
            let duration = progress
                .started
                .map(|started| started.elapsed())
                .unwrap_or(Duration::ZERO);
            let finished = CommandFinished {
                command_id: self.id.clone(),
                seq: progress.seq,
                exit_code: end.exit_code,
                cwd: end.cwd,
                duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            };
            progress.finished = Some(finished.clone());
            progress.shell_exited = end.shell_exited;
            let notification = ShellFinishedNotification {
                name: self.shell_name.clone(),
                finished,
                timed_out: progress.timed_out,
                shell_exited: end.shell_exited,
            };
            (notification, progress.subscriber.clone())
        };
        self.changes.send_replace(());
        send(route, method::SHELL_FINISHED, &notification).await;
    }

    /// The command never ran: its shell could not be started.
    pub fn fail(&self, error: RpcError) {
        lock(&self.progress).failed = Some(error);
        self.changes.send_replace(());
    }

    /// A snapshot to answer with: every chunk it counts has been queued for sending.
    pub async fn answer_snapshot(&self) -> Snapshot {
        let _sending = self.sending.lock().await;
        self.snapshot()
    }

    pub fn snapshot(&self) -> Snapshot {
        let progress = lock(&self.progress);
        let tail: Vec<u8> = progress.tail.iter().copied().collect();
        let kept = (progress.head.len() + tail.len()) as u64;
        Snapshot {
            seq: progress.seq,
            finished: progress.finished.clone(),
            timed_out: progress.timed_out,
            shell_exited: progress.shell_exited,
            output: OutputSummary {
                head: ByteChunk(progress.head.clone()),
                tail: ByteChunk(tail),
                omitted_bytes: progress.total - kept,
                total_bytes: progress.total,
            },
            started: progress.started,
            last_output: progress.last_output,
            failed: progress.failed.clone(),
        }
    }
}

async fn send<T: serde::Serialize>(
    route: Option<Arc<NotificationRoute>>,
    method: &str,
    params: &T,
) {
    let Some(sink) = route.and_then(|route| route.current()) else {
        return;
    };
    let frame = OutboundFrame::Text(notification_frame(method, params));
    // A connection that went away gets nothing; the caller's result still has it all.
    let _ = sink.frames.send(frame).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_summary_keeps_head_and_tail_and_counts_the_rest() {
        let command = Command::new("c".into(), "s".into(), "true".into());
        for _ in 0..10 {
            command.output(vec![b'x'; 8 * 1024]).await;
        }
        command.output(b"end".to_vec()).await;
        let output = command.snapshot().output;
        assert_eq!(output.head.0.len(), HEAD_BYTES);
        assert_eq!(output.tail.0.len(), TAIL_BYTES);
        assert!(output.tail.0.ends_with(b"xend"));
        assert_eq!(output.total_bytes, 80 * 1024 + 3);
        assert_eq!(
            output.omitted_bytes,
            output.total_bytes - (HEAD_BYTES + TAIL_BYTES) as u64
        );
    }
}
