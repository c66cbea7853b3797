//! The output pump: one task per process that reads its output streams and its exit, appends
//! each event to the event log, and pushes the notification to the session's connection.
//!
//! Being the only producer of a process's events is what keeps notifications in sequence
//! order on the wire: the pump assigns a seq, then sends, then reads again. Sending waits
//! when the connection's queue is full, so a client that stops reading stalls this pump and
//! (through the full pipe) the child, instead of growing memory. The pump starts sending
//! only after the `process/start` response is queued, so a client always learns of the
//! process before its events. Output goes as JSON (base64 chunk) or, when the attached
//! connection negotiated `process/output.binary`, as a binary frame with the raw bytes;
//! the format is chosen per send, so it follows a resume onto a connection that differs.
//!
//! For a process that holds its output (`process/start.holdOutput`) the pump reads only
//! while the event log has room for another chunk without evicting unacknowledged output;
//! otherwise it waits for an acknowledgement, and the full pipe blocks the child. The exit
//! and the close are never held: they are recorded after the output before them, however
//! long that output waits for room.

use super::Process;
use super::spawn::Child;
use super::table::ProcessTable;
use crate::outbound::NotificationRoute;
use crate::outbound::OutboundFrame;
use bytes::Bytes;
use rexec_protocol::binary_output::{self, OutputFrame};
use rexec_protocol::jsonrpc::notification_frame;
use rexec_protocol::method;
use rexec_protocol::process::{
    ClosedNotification, ExitedNotification, OutputNotificationRef, OutputStream,
};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

/// Largest chunk read from a pipe or PTY in one go (a Linux pipe holds 64 KiB).
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Reads per stream when draining what a child left behind at exit.
const EXIT_DRAIN_READS: usize = 16;

struct Source {
    stream: OutputStream,
    fd: AsyncFd<OwnedFd>,
    eof: bool,
}

pub struct Pump {
    pub process: Arc<Process>,
    pub child: Child,
    pub outputs: Vec<(OutputStream, OwnedFd)>,
    pub route: Arc<NotificationRoute>,
    pub table: Arc<ProcessTable>,
    /// Fires (or is dropped) once the start response is queued.
    pub release: oneshot::Receiver<()>,
}

impl Pump {
    /// Register the streams with the reactor and start the task.
    pub fn start(self) -> io::Result<()> {
        let sources = self
            .outputs
            .into_iter()
            .map(|(stream, fd)| {
                Ok(Source {
                    stream,
                    fd: crate::sync::register(fd)?,
                    eof: false,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let runner = Runner {
            process: self.process,
            route: self.route,
        };
        tokio::spawn(runner.run(self.child, sources, self.table, self.release));
        Ok(())
    }
}

struct Runner {
    process: Arc<Process>,
    route: Arc<NotificationRoute>,
}

impl Runner {
    async fn run(
        self,
        mut child: Child,
        mut sources: Vec<Source>,
        table: Arc<ProcessTable>,
        release: oneshot::Receiver<()>,
    ) {
        let _ = release.await;
        let mut exited = false;
        loop {
            if exited && sources.iter().all(|s| s.eof) {
                break;
            }
            let reading = sources.iter().any(|s| !s.eof);
            let room = !self.process.holds_output() || self.process.has_room_for_output();
            tokio::select! {
                biased;
                (index, read) = read_any(&sources), if reading && room => {
                    let source = &mut sources[index];
                    self.on_read(source.stream, read, &mut source.eof).await;
                }
                () = self.process.room_for_output(), if reading && !room => {}
                status = child.wait(), if !exited => {
                    self.process.descendants().reaped();
                    self.drain_before_exit(&mut sources).await;
                    self.publish_exit(exit_code(status)).await;
                    exited = true;
                }
            }
        }
        // Give the descriptors back before the retention wait: every fd the server holds
        // is copied into each child it spawns and closed again at its exec, so pipes and
        // pidfds kept for the 30 s retention made every spawn pay for thousands of them.
        drop(sources);
        drop(child);
        // Its cgroup goes now if nothing in it outlived the pipes.
        self.process.descendants().remove_if_empty();
        let seq = self.process.record_closed();
        self.process.stdin.shut();
        let process_id = self.process.id.as_str();
        self.send(|_| {
            OutboundFrame::Text(notification_frame(
                method::PROCESS_CLOSED,
                &ClosedNotification {
                    process_id: process_id.to_owned(),
                    seq,
                },
            ))
        })
        .await;
        tokio::time::sleep(table.closed_retention).await;
        table.remove_closed(&self.process);
    }

    async fn on_read(&self, stream: OutputStream, read: io::Result<Option<Bytes>>, eof: &mut bool) {
        match read {
            Ok(Some(bytes)) => self.publish_output(stream, bytes).await,
            Ok(None) => *eof = true,
            Err(err) => {
                tracing::warn!(process = %self.process.id, %err, "output stream failed; treating as closed");
                *eof = true;
            }
        }
    }

    /// Output the child wrote before exiting is still in the pipe: give it lower seqs than
    /// the exit, so a reader sees it first.
    async fn drain_before_exit(&self, sources: &mut [Source]) {
        for source in sources.iter_mut().filter(|s| !s.eof) {
            for _ in 0..EXIT_DRAIN_READS {
                if self.process.holds_output() {
                    self.process.room_for_output().await;
                }
                match read_once(source.fd.get_ref()) {
                    Ok(Some(bytes)) => self.publish_output(source.stream, bytes).await,
                    Ok(None) => {
                        source.eof = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    }

    async fn publish_output(&self, stream: OutputStream, bytes: Bytes) {
        let seq = self.process.record_output(stream, bytes.clone());
        let process_id = self.process.id.as_str();
        self.send(|binary| {
            if binary {
                let frame = OutputFrame {
                    process_id,
                    seq,
                    stream,
                    chunk: &bytes,
                };
                // Only a processId over 64 KiB cannot be framed; it falls back to JSON.
                if let Ok(encoded) = binary_output::encode(&frame) {
                    return OutboundFrame::Binary(encoded.into());
                }
            }
            let notification = OutputNotificationRef {
                process_id,
                seq,
                stream,
                chunk: &bytes,
            };
            OutboundFrame::Text(notification.to_frame())
        })
        .await;
    }

    async fn publish_exit(&self, exit_code: i32) {
        let record = self.process.record_exit(exit_code);
        self.send(|_| {
            OutboundFrame::Text(notification_frame(
                method::PROCESS_EXITED,
                &ExitedNotification {
                    process_id: self.process.id.clone(),
                    seq: record.seq,
                    exit_code: record.code,
                    sandbox_denied: Some(record.denial.is_some()),
                    sandbox_denial: record.denial.clone(),
                },
            ))
        })
        .await;
    }

    /// Push a notification to the attached connection, if any; `frame` is told whether
    /// that connection takes binary output. Waits while its queue is full; a detached
    /// session drops the notification (the log keeps the event).
    async fn send(&self, frame: impl FnOnce(bool) -> OutboundFrame) {
        if let Some(sink) = self.route.current() {
            let _ = sink.frames.send(frame(sink.binary_output)).await;
        }
    }
}

/// Read from whichever open stream has data first.
async fn read_any(sources: &[Source]) -> (usize, io::Result<Option<Bytes>>) {
    let mut open = sources.iter().enumerate().filter(|(_, s)| !s.eof);
    match (open.next(), open.next()) {
        (Some((i, a)), None) => (i, read_chunk(&a.fd).await),
        (Some((i, a)), Some((j, b))) => tokio::select! {
            read = read_chunk(&a.fd) => (i, read),
            read = read_chunk(&b.fd) => (j, read),
        },
        _ => std::future::pending().await,
    }
}

/// Wait until `fd` is readable and read one chunk. `None` is end of stream.
async fn read_chunk(fd: &AsyncFd<OwnedFd>) -> io::Result<Option<Bytes>> {
    loop {
        let mut guard = fd.readable().await?;
        if let Ok(result) = guard.try_io(|inner| read_once(inner.get_ref())) {
            return result;
        }
    }
}

/// One non-blocking read. EIO is how a PTY master reports that the terminal is gone.
fn read_once(fd: &OwnedFd) -> io::Result<Option<Bytes>> {
    let mut buf = [MaybeUninit::<u8>::uninit(); READ_CHUNK_BYTES];
    match rustix::io::read(fd, &mut buf) {
        Ok(([], _)) => Ok(None),
        Ok((filled, _)) => Ok(Some(Bytes::copy_from_slice(filled))),
        Err(rustix::io::Errno::IO) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// The exit code as upstream reports it: the status, or 128 + the signal that killed it.
fn exit_code(status: io::Result<ExitStatus>) -> i32 {
    match status {
        Ok(status) => status
            .code()
            .or_else(|| status.signal().map(|signal| 128 + signal))
            .unwrap_or(-1),
        Err(err) => {
            tracing::warn!(%err, "waiting for a child failed");
            -1
        }
    }
}
