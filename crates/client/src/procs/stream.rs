//! `EventStream`: one subscriber's view of a process's ordered log.
//!
//! A subscriber walks the shared replay history at its own pace. When it falls behind what
//! the history retains (or subscribes after the start scrolled out of it), it repairs
//! itself with exactly one `process/read(afterSeq = its last seq, waitMs 0)` per incident
//! and continues with the history: the stream it yields stays ordered, de-duplicated and
//! gap-free, except for `Gap` events where the server itself no longer had the output (or
//! could no longer be asked: the session was lost), with exact byte counts either way.

use super::history::{History, LagWindow, fill_lag};
use super::routes::{HandleGuard, Processes};
use super::shared::ProcessShared;
use crate::event::ProcessEvent;
use futures_util::Stream;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::watch;
use tokio_util::sync::ReusableBoxFuture;

/// One subscriber's ordered, de-duplicated, gap-free view of a process's events: a
/// [`Stream`] of [`ProcessEvent`]s ending after `Closed` or `Failed`.
///
/// ```no_run
/// # async fn demo(process: rexec_client::Process) {
/// use rexec_client::ProcessEvent;
/// let mut events = process.events();
/// while let Some(event) = events.next().await {
///     if let ProcessEvent::Output { bytes, .. } = event {
///         print!("{}", String::from_utf8_lossy(&bytes));
///     }
/// }
/// # }
/// ```
pub struct EventStream {
    process_id: String,
    /// The cursor, while no `next` is in progress.
    idle: Option<Cursor>,
    /// The `next` in progress; it hands the cursor back with its event.
    pending: Option<ReusableBoxFuture<'static, (Cursor, Option<ProcessEvent>)>>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("process", &self.process_id)
            .finish_non_exhaustive()
    }
}

impl EventStream {
    pub(crate) fn new(
        processes: Arc<Processes>,
        process: Arc<ProcessShared>,
        handle: Arc<HandleGuard>,
    ) -> Self {
        let mut cursor = Cursor::new(processes, process, handle);
        if let Some(id) = cursor.process.take_reserved_reader() {
            cursor.process.set_lossless_reader(id, Some(cursor.pos));
            cursor.lossless = Some(id);
        }
        Self {
            process_id: cursor.process.id.clone(),
            idle: Some(cursor),
            pending: None,
        }
    }

    /// The next event; `None` after `Closed` or `Failed`. Cancel-safe: an event a dropped
    /// call was about to yield goes to the next call.
    pub async fn next(&mut self) -> Option<ProcessEvent> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for EventStream {
    type Item = ProcessEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ProcessEvent>> {
        let this = &mut *self;
        if let Some(mut cursor) = this.idle.take() {
            // Most events are already in the history: no future needed.
            if let Some(event) = cursor.ready() {
                this.idle = Some(cursor);
                return Poll::Ready(event);
            }
            let next = async move {
                let event = cursor.next().await;
                (cursor, event)
            };
            match &mut this.pending {
                Some(pending) => pending.set(next),
                None => this.pending = Some(ReusableBoxFuture::new(next)),
            }
        }
        let Some(pending) = &mut this.pending else {
            return Poll::Ready(None);
        };
        let (cursor, event) = std::task::ready!(pending.poll(cx));
        this.idle = Some(cursor);
        Poll::Ready(event)
    }
}

/// Where a subscriber is in the history, and what it still has to deliver.
struct Cursor {
    processes: Arc<Processes>,
    process: Arc<ProcessShared>,
    changes: watch::Receiver<u64>,
    /// Position of the next history entry to look at.
    pos: u64,
    last_seq: u64,
    /// Output bytes the process delivered up to `last_seq`.
    cum: u64,
    /// Events rebuilt by a lag repair, delivered before the history resumes.
    rebuilt: VecDeque<ProcessEvent>,
    done: bool,
    /// The first subscriber of a `ProcessSpec::lossless` process: its id among the
    /// process's lossless readers.
    lossless: Option<u64>,
    /// Keeps the process from being terminated on drop while someone follows it.
    _handle: Arc<HandleGuard>,
}

enum Next {
    Deliver(ProcessEvent),
    Lagged(LagWindow),
    Wait,
}

impl Cursor {
    fn new(
        processes: Arc<Processes>,
        process: Arc<ProcessShared>,
        handle: Arc<HandleGuard>,
    ) -> Self {
        let changes = process.subscribe();
        let pos = process.with_history(History::front_pos);
        Self {
            processes,
            process,
            changes,
            pos,
            last_seq: 0,
            cum: 0,
            rebuilt: VecDeque::new(),
            done: false,
            lossless: None,
            _handle: handle,
        }
    }

    fn hold(&self, pos: Option<u64>) {
        if let Some(id) = self.lossless {
            self.process.set_lossless_reader(id, pos);
        }
    }

    /// The lossless subscriber of a held process acknowledges what it consumed, every
    /// so often (see `acks`).
    fn consumed(&self, event: &ProcessEvent) {
        if self.lossless.is_none() {
            return;
        }
        let Some((_, seq)) = event.seq_range() else {
            return;
        };
        if let Some(ack) = self.process.lossless_consumed(seq, event.weight() as u64) {
            self.processes.send_ack(None, &self.process.id, ack);
        }
    }

    /// The next event if it can be had without waiting (`Some(None)`: the stream ended).
    fn ready(&mut self) -> Option<Option<ProcessEvent>> {
        if let Some(event) = self.rebuilt.pop_front() {
            self.done |= event.is_terminal();
            self.consumed(&event);
            return Some(Some(event));
        }
        if self.done {
            self.hold(None);
            return Some(None);
        }
        let process = Arc::clone(&self.process);
        let event = process.with_history(|history| self.peek(history))?;
        Some(Some(self.delivered(event)))
    }

    /// An event taken from the history is on its way to the caller.
    fn delivered(&mut self, event: ProcessEvent) -> ProcessEvent {
        self.done |= event.is_terminal();
        self.hold((!self.done).then_some(self.pos));
        self.consumed(&event);
        event
    }

    /// `advance`, for an event that is simply next in the history (a lag or an empty
    /// history is left to `next`, which finds it again).
    fn peek(&mut self, history: &History) -> Option<ProcessEvent> {
        match self.advance(history) {
            Next::Deliver(event) => Some(event),
            Next::Lagged(_) | Next::Wait => None,
        }
    }

    async fn next(&mut self) -> Option<ProcessEvent> {
        loop {
            if let Some(event) = self.ready() {
                return event;
            }
            // Seen before looking again, so a change after the look wakes the wait.
            self.changes.borrow_and_update();
            let process = Arc::clone(&self.process);
            match process.with_history(|history| self.advance(history)) {
                Next::Deliver(event) => return Some(self.delivered(event)),
                Next::Lagged(window) => {
                    // The repair read's answer must get through: stop holding back.
                    self.hold(None);
                    let read = self
                        .processes
                        .read_retained(&self.process.id, window.after_seq)
                        .await;
                    if let Err(err) = &read {
                        tracing::debug!(process = %self.process.id, %err, "lag repair read failed");
                    }
                    self.rebuilt = fill_lag(&window, read.ok());
                    self.last_seq = window.until_seq;
                    self.cum = window.cum_end;
                }
                Next::Wait => {
                    self.hold(Some(self.pos));
                    if self.changes.changed().await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    fn advance(&mut self, history: &History) -> Next {
        self.pos = self.pos.max(history.front_pos());
        loop {
            let Some(entry) = history.get(self.pos) else {
                return Next::Wait;
            };
            let Some((first, last)) = entry.event.seq_range() else {
                self.pos += 1;
                return Next::Deliver(entry.event.clone());
            };
            if last <= self.last_seq {
                self.pos += 1; // already delivered by a lag repair
                continue;
            }
            if first > self.last_seq + 1 {
                return Next::Lagged(history.lag_window(self.last_seq, self.cum, entry));
            }
            self.pos += 1;
            self.last_seq = last;
            self.cum = entry.cum_before + entry.event.ledger_bytes();
            return Next::Deliver(entry.event.clone());
        }
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        self.hold(None);
        if self.lossless.is_some()
            && !self.done
            && let Some(ack) = self.process.lossless_reader_left()
        {
            self.processes.send_ack(None, &self.process.id, ack);
        }
    }
}
