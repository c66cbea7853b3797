//! `ProcessShared`: the state of one process that the connection's reader, the repair
//! machinery, the `Process` handles and the `EventStream`s share.
//!
//! Under one mutex it keeps the ordered log (`ordered`), the bounded replay for subscribers
//! (`history`) and the `Completion` accumulator (`output`). Every delivered event goes to
//! both, in order, in the same critical section; then a `watch` counter wakes whoever waits.
//! Nothing here awaits or performs I/O: the caller carries out the returned repair.

use super::acks::HeldAcks;
use super::history::History;
use super::ordered::{Incoming, OrderedLog, Repair};
use super::output::OutputCollector;
use super::routes::HandleGuard;
use crate::error::ClientError;
use crate::event::OutputCallback;
use crate::event::{Completion, ProcessEvent, Timings};
use rexec_protocol::process::ReadResult;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use tokio::sync::watch;
use tokio::time::Instant;

/// What the caller must do after feeding the process something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    pub repair: Repair,
    /// The stream is finished (closed or failed): the route can go.
    pub terminal: bool,
    /// Acknowledge output up to this seq (`process/ack`): the reader does for a held
    /// process nobody follows losslessly.
    pub ack: Option<u64>,
}

pub(crate) struct ProcessShared {
    pub(crate) id: String,
    state: Mutex<ProcessState>,
    changes: watch::Sender<u64>,
    /// Bumped whenever a lossless subscriber moves on or leaves.
    progress: watch::Sender<u64>,
    next_reader: AtomicU64,
    /// `ProcessSpec::on_output`, called under the lock as each chunk is delivered.
    on_output: Option<OutputCallback>,
    /// `Process::detach`: dropping the last handle leaves the process running.
    detached: AtomicBool,
    /// What every live `Process` handle of this process shares (see `process`).
    handle: Mutex<Weak<HandleGuard>>,
}

pub(crate) struct ProcessState {
    ordered: OrderedLog,
    pub(crate) history: History,
    output: OutputCollector,
    started_at: Instant,
    answered_at: Option<Instant>,
    finished_at: Option<Instant>,
    failure: Option<ClientError>,
    /// Lossless subscribers' next history positions (absent while one repairs a lag).
    lossless_readers: HashMap<u64, u64>,
    /// `ProcessSpec::lossless`: a lossless reader registered with the route, before any
    /// event can arrive, for the first `Process::events` to take over.
    reserved_reader: Option<u64>,
    /// The client terminated the process at its `ProcessSpec::timeout`.
    timed_out: bool,
    /// `ProcessSpec::lossless`: the start asks the server to hold the output.
    asked_hold: bool,
    /// The server holds this process's output until it is acknowledged (`holdOutput`).
    acks: HeldAcks,
}

impl ProcessShared {
    pub(crate) fn new(
        id: String,
        ordered_server: bool,
        output_budget: usize,
        on_output: Option<OutputCallback>,
    ) -> Self {
        Self {
            id,
            state: Mutex::new(ProcessState {
                ordered: OrderedLog::new(ordered_server),
                history: History::default(),
                output: OutputCollector::new(output_budget),
                started_at: Instant::now(),
                answered_at: None,
                finished_at: None,
                failure: None,
                lossless_readers: HashMap::new(),
                reserved_reader: None,
                timed_out: false,
                asked_hold: false,
                acks: HeldAcks::default(),
            }),
            changes: watch::Sender::new(0),
            progress: watch::Sender::new(0),
            next_reader: AtomicU64::new(0),
            on_output,
            detached: AtomicBool::new(false),
            handle: Mutex::new(Weak::new()),
        }
    }

    /// The server turned out to order its notifications (or not): a process started in
    /// the same flight as `initialize` learns it from the `initialize` result.
    pub(crate) fn set_ordered_server(&self, ordered: bool) {
        self.lock().ordered.set_ordered_server(ordered);
    }

    /// Hold output from the very first event for a lossless subscriber still to come
    /// (`ProcessSpec::lossless`).
    pub(crate) fn reserve_lossless_reader(&self) {
        let id = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        let front = state.history.front_pos();
        state.lossless_readers.insert(id, front);
        state.reserved_reader = Some(id);
        state.asked_hold = true;
    }

    /// The reserved reader's id, once, for a lossless subscriber to take over.
    pub(crate) fn take_reserved_reader(&self) -> Option<u64> {
        self.lock().reserved_reader.take()
    }

    /// Stop holding output for a lossless subscriber that will never come; for a held
    /// process, the seq to acknowledge now (the reader acknowledges from then on).
    pub(crate) fn release_reserved_reader(&self) -> Option<u64> {
        let id = self.take_reserved_reader()?;
        self.set_lossless_reader(id, None);
        self.lossless_reader_left()
    }

    /// Whether the server lists `process/start.holdOutput`. If it does, a lossless
    /// process (which asked for the hold) has its output held by the server: the reader
    /// never waits for its lossless subscriber, which acknowledges what it consumes.
    pub(crate) fn set_server_holds(&self, supported: bool) {
        {
            let mut state = self.lock();
            let asked = state.asked_hold;
            state.acks.set_held(supported && asked);
        }
        // A reader already waiting for the lossless subscriber looks again.
        self.progress.send_modify(|n| *n += 1);
    }

    /// The lossless subscriber consumed one event of `bytes` output bytes, up to `seq`:
    /// the seq to acknowledge now, if one is due.
    pub(crate) fn lossless_consumed(&self, seq: u64, bytes: u64) -> Option<u64> {
        self.lock().acks.consumed(seq, bytes, 1)
    }

    /// The lossless subscriber is gone: the reader acknowledges from now on, starting with
    /// everything delivered so far (the seq returned).
    pub(crate) fn lossless_reader_left(&self) -> Option<u64> {
        let mut state = self.lock();
        let delivered = state.ordered.last_seq();
        state.acks.switch_to_arrival(delivered)
    }

    /// The last acknowledgement, sent again on a new connection.
    pub(crate) fn last_ack(&self) -> Option<u64> {
        self.lock().acks.last()
    }

    /// The guard the live handles share, or a new one from `make` when there are none.
    pub(crate) fn handle_guard(&self, make: impl FnOnce() -> HandleGuard) -> Arc<HandleGuard> {
        let mut handle = self.handle.lock().unwrap_or_else(PoisonError::into_inner);
        handle.upgrade().unwrap_or_else(|| {
            let guard = Arc::new(make());
            *handle = Arc::downgrade(&guard);
            guard
        })
    }

    pub(crate) fn detach(&self) {
        self.detached.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_detached(&self) -> bool {
        self.detached.load(Ordering::Relaxed)
    }

    /// The stream ended (closed or failed): nothing is left to terminate or wait for.
    pub(crate) fn is_finished(&self) -> bool {
        self.lock().ordered.is_terminal()
    }

    /// The timeout fired: the completion will say `timed_out`.
    pub(crate) fn mark_timed_out(&self) {
        self.lock().timed_out = true;
    }

    pub(crate) fn started_at(&self) -> Instant {
        self.lock().started_at
    }

    /// A lossless subscriber moved to `pos`, or (`None`) stopped holding the log back: it
    /// is repairing a lag, finished, or was dropped.
    pub(crate) fn set_lossless_reader(&self, id: u64, pos: Option<u64>) {
        let changed = {
            let mut state = self.lock();
            match pos {
                Some(pos) => state.lossless_readers.insert(id, pos) != Some(pos),
                None => state.lossless_readers.remove(&id).is_some(),
            }
        };
        if changed {
            self.progress.send_modify(|n| *n += 1);
        }
    }

    /// Whether one more output chunk would push an event some lossless subscriber has not
    /// read yet out of the replay history.
    pub(crate) fn holds_back(&self) -> bool {
        let state = self.lock();
        if state.acks.is_held() {
            return false;
        }
        state
            .lossless_readers
            .values()
            .min()
            .is_some_and(|&slowest| state.history.would_trim(slowest))
    }

    /// Wait until no lossless subscriber would lose an event to the next output chunk.
    pub(crate) async fn wait_for_lossless_readers(&self) {
        loop {
            let mut progress = self.progress.subscribe();
            if !self.holds_back() {
                return;
            }
            if progress.changed().await.is_err() {
                return;
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, ProcessState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run one step of the ordered log and publish what it delivered.
    fn step(&self, f: impl FnOnce(&mut ProcessState, &mut Vec<ProcessEvent>) -> Repair) -> Step {
        let mut out = Vec::new();
        let (repair, terminal, ack) = {
            let mut state = self.lock();
            let repair = f(&mut state, &mut out);
            for event in &out {
                if let (Some(callback), ProcessEvent::Output { stream, bytes, .. }) =
                    (&self.on_output, event)
                {
                    callback.call(*stream, bytes);
                }
                state.output.apply(event);
                match event {
                    ProcessEvent::Closed { .. } => state.finished_at = Some(Instant::now()),
                    ProcessEvent::Failed { reason } if state.failure.is_none() => {
                        state.failure = Some(ClientError::ProcessFailed(reason.clone()));
                    }
                    _ => {}
                }
            }
            // Output the server holds for the lossless reader stays here until it is read.
            let keep = if state.acks.is_held() {
                state.lossless_readers.values().min().copied()
            } else {
                None
            };
            for event in out.iter().cloned() {
                state.history.push_keeping(event, keep);
            }
            let ack = if state.acks.acks_on_arrival() {
                let last = out
                    .iter()
                    .filter_map(ProcessEvent::seq_range)
                    .map(|r| r.1)
                    .max();
                let bytes = out.iter().map(|e| e.weight() as u64).sum();
                last.and_then(|seq| state.acks.consumed(seq, bytes, out.len() as u64))
            } else {
                None
            };
            (repair, state.ordered.is_terminal(), ack)
        };
        if !out.is_empty() {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        Step {
            repair,
            terminal,
            ack,
        }
    }

    pub(crate) fn on_event(&self, event: Incoming) -> Step {
        self.step(|s, out| s.ordered.on_event(event, out))
    }

    pub(crate) fn on_read(&self, result: ReadResult) -> Step {
        self.step(|s, out| {
            let accounted = s.history.ledger();
            s.ordered.on_read(result, accounted, out)
        })
    }

    pub(crate) fn on_read_failed(&self, reason: String) -> Step {
        self.step(|s, out| {
            s.ordered.on_read_failed(reason, out);
            Repair::None
        })
    }

    pub(crate) fn on_grace_expired(&self, token: u64) -> Step {
        self.step(|s, out| s.ordered.on_grace_expired(token, out))
    }

    /// `process/start` was answered: by the reader as the answer arrives, then again by
    /// the starting task (a no-op by then).
    pub(crate) fn on_started(&self) -> Step {
        self.step(|s, out| {
            if s.answered_at.is_some() {
                return Repair::None;
            }
            s.answered_at = Some(Instant::now());
            s.ordered.on_started(out)
        })
    }

    pub(crate) fn on_read_lost(&self) {
        self.lock().ordered.on_read_lost();
    }

    pub(crate) fn begin_resume(&self) -> Option<u64> {
        self.lock().ordered.begin_resume()
    }

    /// End the stream with `error` (a lost connection, a closed client).
    pub(crate) fn fail(&self, error: ClientError) {
        let reason = match &error {
            ClientError::Disconnected(reason) => format!("exec-server connection lost: {reason}"),
            other => other.to_string(),
        };
        self.step(|s, out| {
            if !s.ordered.is_terminal() {
                s.failure = Some(error);
                s.ordered.fail(reason, out);
            }
            Repair::None
        });
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn with_history<R>(&self, f: impl FnOnce(&History) -> R) -> R {
        f(&self.lock().history)
    }

    /// The result once the process is finished: the completion, or why it cannot be had.
    pub(crate) fn outcome(&self) -> Option<Result<Completion, ClientError>> {
        let state = self.lock();
        if let Some(failure) = &state.failure {
            return Some(Err(failure.clone()));
        }
        if !state.ordered.is_closed() {
            return None;
        }
        let finished = state.finished_at.unwrap_or_else(Instant::now);
        let answered = state.answered_at.unwrap_or(finished);
        let timings = Timings {
            start_rpc: answered.saturating_duration_since(state.started_at),
            completion_wait: finished.saturating_duration_since(answered),
            total: finished.saturating_duration_since(state.started_at),
        };
        let completion = state
            .output
            .completion(timings)
            .map(|completion| Completion {
                timed_out: state.timed_out,
                ..completion
            });
        Some(completion.ok_or_else(|| {
            ClientError::Protocol(format!(
                "process {} closed without reporting an exit status",
                self.id
            ))
        }))
    }
}
