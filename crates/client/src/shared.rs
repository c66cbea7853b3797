//! `ProcessShared`: the state of one process that the connection's reader, the repair
//! machinery, the `Process` handles and the `EventStream`s share.
//!
//! Under one mutex it keeps the ordered log (`ordered`), the bounded replay for subscribers
//! (`history`) and the `Completion` accumulator (`output`). Every delivered event goes to
//! both, in order, in the same critical section; then a `watch` counter wakes whoever waits.
//! Nothing here awaits or performs I/O: the caller carries out the returned repair.

use crate::error::ClientError;
use crate::event::{Completion, ProcessEvent, Timings};
use crate::history::History;
use crate::ordered::{Incoming, OrderedLog, Repair};
use crate::output::OutputCollector;
use rexec_protocol::process::ReadResult;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::watch;
use tokio::time::Instant;

/// What the caller must do after feeding the process something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    pub repair: Repair,
    /// The stream is finished (closed or failed): the route can go.
    pub terminal: bool,
}

pub(crate) struct ProcessShared {
    pub(crate) id: String,
    state: Mutex<ProcessState>,
    changes: watch::Sender<u64>,
}

pub(crate) struct ProcessState {
    ordered: OrderedLog,
    pub(crate) history: History,
    output: OutputCollector,
    started_at: Instant,
    answered_at: Option<Instant>,
    finished_at: Option<Instant>,
    failure: Option<ClientError>,
}

impl ProcessShared {
    pub(crate) fn new(id: String, ordered_server: bool, output_budget: usize) -> Self {
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
            }),
            changes: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ProcessState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run one step of the ordered log and publish what it delivered.
    fn step(&self, f: impl FnOnce(&mut ProcessState, &mut Vec<ProcessEvent>) -> Repair) -> Step {
        let mut out = Vec::new();
        let (repair, terminal) = {
            let mut state = self.lock();
            let repair = f(&mut state, &mut out);
            for event in &out {
                state.output.apply(event);
                match event {
                    ProcessEvent::Closed { .. } => state.finished_at = Some(Instant::now()),
                    ProcessEvent::Failed { reason } if state.failure.is_none() => {
                        state.failure = Some(ClientError::ProcessFailed(reason.clone()));
                    }
                    _ => {}
                }
            }
            for event in out.iter().cloned() {
                state.history.push(event);
            }
            (repair, state.ordered.is_terminal())
        };
        if !out.is_empty() {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        Step { repair, terminal }
    }

    pub(crate) fn on_event(&self, event: Incoming) -> Step {
        self.step(|s, out| s.ordered.on_event(event, out))
    }

    pub(crate) fn on_read(&self, result: ReadResult) -> Step {
        self.step(|s, out| s.ordered.on_read(result, out))
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

    /// `process/start` was answered.
    pub(crate) fn on_started(&self) -> Step {
        self.step(|s, out| {
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
        Some(state.output.completion(timings).ok_or_else(|| {
            ClientError::Protocol(format!(
                "process {} closed without reporting an exit status",
                self.id
            ))
        }))
    }
}
