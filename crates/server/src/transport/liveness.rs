//! Dead-peer detection for a WebSocket connection that a busy reader or a blocked writer
//! cannot fool.
//!
//! Two rules, each judged on its own:
//! - **The peer answers pings.** Every ping interval the writer sends a ping; if the next
//!   tick finds that nothing at all arrived since (no pong, no frame) while the reader was
//!   waiting on the socket, the peer is gone. Time the reader spends handling a frame (its
//!   outbound queue full, say) does not count against the peer: the peer may well have
//!   answered, unread.
//! - **Writes make progress.** A write that moves no byte into the socket for a whole ping
//!   interval means the peer stopped reading (or vanished with data in flight). The socket
//!   write side is wrapped in [`CountingWriter`], and the writer watches its byte counter while a
//!   write is pending, instead of waiting on the write alone.
//!
//! Either rule ends the connection within two intervals, so its session detaches and a
//! client can resume at once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::AsyncWrite;

/// Shared between a connection's reader, its writer and its socket.
#[derive(Default)]
pub struct Liveness {
    /// Something arrived since the last ping.
    heard: AtomicBool,
    /// The reader is handling a frame rather than waiting on the socket.
    reader_busy: AtomicBool,
    /// The reader was busy at some point since the last tick.
    busy_since_tick: AtomicBool,
    /// A ping has been sent.
    pinged: AtomicBool,
    /// Bytes the socket accepted so far.
    written: AtomicU64,
}

/// Why the writer gave up on its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Alive,
    /// A ping went unanswered for a whole interval.
    Silent,
    /// A write moved no byte for a whole interval.
    Stalled,
}

impl Liveness {
    /// The reader got a frame (any frame: data, pong, ping, close).
    pub fn heard(&self) {
        self.heard.store(true, Ordering::Relaxed);
    }

    /// The reader starts (`true`) or stops (`false`) handling a frame.
    pub fn set_reader_busy(&self, busy: bool) {
        self.reader_busy.store(busy, Ordering::Relaxed);
        if busy {
            self.busy_since_tick.store(true, Ordering::Relaxed);
        }
    }

    /// At a ping tick, before the next ping is sent: was the last interval silent?
    pub fn ping_tick(&self) -> Verdict {
        let heard = self.heard.swap(false, Ordering::Relaxed);
        let busy_now = self.reader_busy.load(Ordering::Relaxed);
        let busy = self.busy_since_tick.swap(busy_now, Ordering::Relaxed);
        let pinged = self.pinged.swap(true, Ordering::Relaxed);
        if pinged && !heard && !busy {
            return Verdict::Silent;
        }
        Verdict::Alive
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Drive a write to completion, or give up when it moves no byte for `interval`.
    pub async fn progressing<F: Future>(&self, write: F, interval: Duration) -> Option<F::Output> {
        tokio::pin!(write);
        let mut seen = self.written();
        loop {
            tokio::select! {
                biased;
                output = &mut write => return Some(output),
                () = tokio::time::sleep(interval) => {
                    let now = self.written();
                    if now == seen {
                        return None;
                    }
                    seen = now;
                }
            }
        }
    }
}

/// The write side of a socket, its accepted bytes counted in [`Liveness`].
pub struct CountingWriter<S> {
    inner: S,
    liveness: Arc<Liveness>,
}

impl<S> CountingWriter<S> {
    pub fn new(inner: S, liveness: Arc<Liveness>) -> Self {
        Self { inner, liveness }
    }

    fn count(&self, written: usize) {
        self.liveness
            .written
            .fetch_add(written as u64, Ordering::Relaxed);
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingWriter<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.count(written);
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        this.count(written);
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_counts_only_while_the_reader_waits_on_the_socket() {
        let live = Liveness::default();
        assert_eq!(live.ping_tick(), Verdict::Alive, "first ping");
        live.heard();
        assert_eq!(live.ping_tick(), Verdict::Alive, "answered");
        live.set_reader_busy(true);
        assert_eq!(live.ping_tick(), Verdict::Alive, "busy reader: not judged");
        assert_eq!(live.ping_tick(), Verdict::Alive, "still busy");
        live.set_reader_busy(false);
        assert_eq!(
            live.ping_tick(),
            Verdict::Alive,
            "a whole interval must pass"
        );
        assert_eq!(live.ping_tick(), Verdict::Silent, "then silence is death");
    }

    #[tokio::test]
    async fn a_write_that_moves_no_byte_for_an_interval_is_abandoned() {
        let live = Liveness::default();
        let interval = Duration::from_millis(20);
        let stuck = live
            .progressing(std::future::pending::<()>(), interval)
            .await;
        assert!(stuck.is_none());
        let done = live.progressing(async { 7 }, interval).await;
        assert_eq!(done, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_write_that_keeps_moving_is_kept() {
        let live = Arc::new(Liveness::default());
        let interval = Duration::from_millis(100);
        let writer = Arc::clone(&live);
        let slow = async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(60)).await;
                writer.written.fetch_add(1, Ordering::Relaxed);
            }
        };
        assert!(live.progressing(slow, interval).await.is_some());
    }
}
