//! A process's stdin: a queue bounded by chunks and bytes, drained by a writer task,
//! de-duplicated by `writeId`.
//!
//! `accepted` means queued, not consumed (as upstream); a write that finds the queue full
//! waits for room. The last 4096 accepted write ids are
//! remembered, so a client that retries a write whose response was lost never writes twice.
//! Writes take effect in wire order (see `write_order`), so a client may pipeline them.

use super::write_order::{Turn, WriteOrder};
use crate::sync::lock;
use std::collections::{HashSet, VecDeque};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use tokio::io::unix::AsyncFd;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Remembered write ids per process.
pub const WRITE_ID_MEMORY: usize = 4096;
/// Chunks, and bytes, queued to the writer task before `process/write` waits. A chunk
/// larger than the byte bound is queued alone.
const STDIN_QUEUE_CHUNKS: usize = 128;
const STDIN_QUEUE_BYTES: usize = 1024 * 1024;
/// What closing stdin means on a terminal: the EOF character (Ctrl-D).
const TERMINAL_EOF: u8 = 0x04;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Accepted,
    StdinClosed,
    /// The writer task is gone (the child closed its stdin or died).
    WriterGone,
}

#[derive(Default)]
struct WriteIds {
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl WriteIds {
    /// Remember `id`; false if it was already remembered.
    fn insert(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == WRITE_ID_MEMORY
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

/// A queued chunk and its share of the queue's byte bound, returned once written.
type Queued = (Vec<u8>, OwnedSemaphorePermit);

struct StdinState {
    writer: Option<mpsc::Sender<Queued>>,
    tty: bool,
    ids: WriteIds,
}

pub struct StdinPort {
    state: Mutex<StdinState>,
    order: Arc<WriteOrder>,
    queued_bytes: Arc<Semaphore>,
}

impl StdinPort {
    /// A process whose stdin is /dev/null.
    pub fn closed() -> Self {
        Self {
            state: Mutex::new(StdinState {
                writer: None,
                tty: false,
                ids: WriteIds::default(),
            }),
            order: Arc::default(),
            queued_bytes: Arc::new(Semaphore::new(STDIN_QUEUE_BYTES)),
        }
    }

    /// Start the writer task for `fd` (a pipe's write end or a PTY master).
    pub fn open(fd: OwnedFd, tty: bool) -> io::Result<Self> {
        let fd = crate::sync::register(fd)?;
        let (sender, receiver) = mpsc::channel(STDIN_QUEUE_CHUNKS);
        tokio::spawn(run_writer(fd, receiver));
        Ok(Self {
            state: Mutex::new(StdinState {
                writer: Some(sender),
                tty,
                ids: WriteIds::default(),
            }),
            order: Arc::default(),
            queued_bytes: Arc::new(Semaphore::new(STDIN_QUEUE_BYTES)),
        })
    }

    /// Reserve this write's place, at admission (in wire order).
    pub fn take_turn(&self) -> Turn {
        self.order.take_turn()
    }

    /// Write once every earlier write has; `turn` finishes when this returns.
    pub async fn write(
        &self,
        turn: Turn,
        write_id: &str,
        bytes: Vec<u8>,
        close_after: bool,
    ) -> WriteOutcome {
        turn.wait().await;
        let (writer, tty) = {
            let mut state = lock(&self.state);
            // A retry of a write already applied gets that write's answer, even when the
            // write itself closed stdin.
            if state.ids.seen.contains(write_id) {
                return WriteOutcome::Accepted;
            }
            let Some(writer) = state.writer.clone() else {
                return WriteOutcome::StdinClosed;
            };
            state.ids.insert(write_id);
            if close_after {
                state.writer = None;
            }
            (writer, state.tty)
        };
        if !bytes.is_empty() && !self.queue(&writer, bytes).await {
            return WriteOutcome::WriterGone;
        }
        if close_after && tty && !self.queue(&writer, vec![TERMINAL_EOF]).await {
            return WriteOutcome::WriterGone;
        }
        // For pipes, dropping the last sender ends the writer task, which closes the pipe.
        WriteOutcome::Accepted
    }

    /// Queue `bytes` once there is room; false if the writer task is gone.
    async fn queue(&self, writer: &mpsc::Sender<Queued>, bytes: Vec<u8>) -> bool {
        let share = u32::try_from(bytes.len().min(STDIN_QUEUE_BYTES)).unwrap_or(u32::MAX);
        let Ok(room) = Arc::clone(&self.queued_bytes)
            .acquire_many_owned(share)
            .await
        else {
            return false;
        };
        writer.send((bytes, room)).await.is_ok()
    }

    /// The process is gone: stop accepting writes.
    pub fn shut(&self) {
        lock(&self.state).writer = None;
    }
}

async fn run_writer(fd: AsyncFd<OwnedFd>, mut chunks: mpsc::Receiver<Queued>) {
    while let Some((chunk, _room)) = chunks.recv().await {
        if let Err(err) = write_all(&fd, &chunk).await {
            tracing::debug!(%err, "stdin writer stopped");
            return;
        }
    }
}

async fn write_all(fd: &AsyncFd<OwnedFd>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let mut guard = fd.writable().await?;
        match guard.try_io(|inner| rustix::io::write(inner.get_ref(), bytes).map_err(Into::into)) {
            Ok(Ok(written)) => bytes = &bytes[written..],
            Ok(Err(err)) => return Err(err),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_retried_closing_write_is_accepted_and_applied_once() {
        use tokio::io::AsyncReadExt;
        let (ours, child) = std::os::unix::net::UnixStream::pair().expect("socket pair");
        let port = StdinPort::open(OwnedFd::from(ours), false).expect("open stdin");
        let write = |id: &'static str| port.write(port.take_turn(), id, b"last".to_vec(), true);
        assert_eq!(write("w1").await, WriteOutcome::Accepted);
        assert_eq!(write("w1").await, WriteOutcome::Accepted, "the retry");
        assert_eq!(write("w2").await, WriteOutcome::StdinClosed, "a new write");
        child.set_nonblocking(true).expect("nonblocking");
        let mut child = tokio::net::UnixStream::from_std(child).expect("register");
        let mut read = Vec::new();
        child.read_to_end(&mut read).await.expect("read to EOF");
        assert_eq!(read, b"last");
    }

    #[test]
    fn write_ids_are_forgotten_oldest_first() {
        let mut ids = WriteIds::default();
        for n in 0..WRITE_ID_MEMORY {
            assert!(ids.insert(&n.to_string()));
        }
        assert!(!ids.insert("0"), "remembered");
        assert!(ids.insert("new"), "evicts the oldest");
        assert!(ids.insert("0"), "the oldest was forgotten");
    }
}
