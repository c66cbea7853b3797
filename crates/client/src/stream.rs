//! `EventStream`: one subscriber's view of a process's ordered log.
//!
//! A subscriber walks the shared replay history at its own pace. When it falls behind what
//! the history retains (or subscribes after the start scrolled out of it), it repairs
//! itself with exactly one `process/read(afterSeq = its last seq, waitMs 0)` per incident
//! and continues with the history: the stream it yields stays ordered, de-duplicated and
//! gap-free, except for `Gap` events where the server itself no longer had the output (or
//! could no longer be asked: the session was lost), with exact byte counts either way.

use crate::client::Client;
use crate::event::ProcessEvent;
use crate::history::{History, LagWindow, fill_lag};
use crate::shared::ProcessShared;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::watch;

pub struct EventStream {
    client: Client,
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
    /// Set by [`EventStream::lossless`]: this subscriber's id among the process's lossless
    /// readers.
    lossless: Option<u64>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("process", &self.process.id)
            .field("last_seq", &self.last_seq)
            .finish()
    }
}

enum Next {
    Deliver(ProcessEvent),
    Lagged(LagWindow),
    Wait,
}

impl EventStream {
    pub(crate) fn new(client: Client, process: Arc<ProcessShared>) -> Self {
        let changes = process.subscribe();
        let pos = process.with_history(History::front_pos);
        Self {
            client,
            process,
            changes,
            pos,
            last_seq: 0,
            cum: 0,
            rebuilt: VecDeque::new(),
            done: false,
            lossless: None,
        }
    }

    /// Make this subscriber lossless: instead of letting it fall behind the bounded replay
    /// history (and then repair from the server, which may have evicted the output by
    /// then), the connection stops reading while the next output chunk would push out an
    /// event it has not read yet. The server then holds the process's output, and the
    /// child blocks on its pipe — nothing is lost however slow the consumer is.
    ///
    /// The price: while this stream is not polled, the whole connection waits. Poll it
    /// continuously (or drop it), and never await another request of the same client
    /// between two `next()` calls — spawn such requests instead.
    pub fn lossless(mut self) -> Self {
        if self.lossless.is_none() && !self.done {
            let id = match self.process.take_reserved_reader() {
                Some(id) => {
                    self.process.set_lossless_reader(id, Some(self.pos));
                    id
                }
                None => self.process.add_lossless_reader(self.pos),
            };
            self.lossless = Some(id);
        }
        self
    }

    fn hold(&self, pos: Option<u64>) {
        if let Some(id) = self.lossless {
            self.process.set_lossless_reader(id, pos);
        }
    }

    /// The next event; `None` after `Closed` or `Failed`.
    pub async fn next(&mut self) -> Option<ProcessEvent> {
        loop {
            if let Some(event) = self.rebuilt.pop_front() {
                self.done |= event.is_terminal();
                return Some(event);
            }
            if self.done {
                self.hold(None);
                return None;
            }
            self.changes.borrow_and_update();
            let process = Arc::clone(&self.process);
            match process.with_history(|history| self.advance(history)) {
                Next::Deliver(event) => {
                    self.done |= event.is_terminal();
                    self.hold((!self.done).then_some(self.pos));
                    return Some(event);
                }
                Next::Lagged(window) => {
                    // The repair read's answer must get through: stop holding back.
                    self.hold(None);
                    let read = self
                        .client
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
            self.cum = entry.cum_before + entry.event.weight() as u64;
            return Next::Deliver(entry.event.clone());
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.hold(None);
    }
}
