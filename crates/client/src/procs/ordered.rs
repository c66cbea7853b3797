//! The client's copy of one process's ordered event log, as a pure state machine.
//!
//! Notifications go in (`on_event`), `process/read` results go in (`on_read`), and what
//! comes out is the delivered stream — strictly in seq order, each seq covered once — plus
//! at most one decision: issue a repair read now, arm the reorder grace timer, or nothing.
//! It never performs I/O and never waits; its owner (`process::ProcessShared`) holds it
//! under the process lock and carries out the decision.
//!
//! Repair triggers, each costing exactly one `process/read(afterSeq = last delivered)`:
//! a sequence gap (immediately when the server advertises ordered notifications, after
//! [`REORDER_GRACE`] otherwise), an `exited` without `sandboxDenied` (legacy server), a
//! reorder buffer that had to shed events, and a reconnect (`begin_resume`). Events that
//! arrive while a read is in flight wait in the bounded reorder buffer.

// Public only through the `testing` feature's `fuzzing` module.
#![cfg_attr(feature = "testing", allow(missing_docs))]

use super::bounds::PER_PROCESS;
use super::rebuild::{Known, Window, rebuild};
use crate::event::ProcessEvent;
use rexec_protocol::process::ReadResult;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a gap may stay open on a server that does not promise ordered notifications
/// (codex sends output, exit and close from separate tasks) before it is repaired.
pub(crate) const REORDER_GRACE: Duration = Duration::from_millis(50);

/// A notification, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub event: ProcessEvent,
    /// An exit from a legacy server, which omits `sandboxDenied`: held until a read gives
    /// the verdict.
    pub awaits_verdict: bool,
}

impl Incoming {
    pub(crate) fn seq(&self) -> u64 {
        self.event.seq_range().map_or(0, |(seq, _)| seq)
    }
}

impl From<ProcessEvent> for Incoming {
    fn from(event: ProcessEvent) -> Self {
        Self {
            event,
            awaits_verdict: false,
        }
    }
}

/// What the owner must do after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    None,
    /// Send `process/read {afterSeq, waitMs: 0}` and feed the result to `on_read`.
    Read {
        after_seq: u64,
    },
    /// Call `on_grace_expired(token)` after `REORDER_GRACE`.
    ArmGrace {
        token: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Grace {
    armed_at: u64,
    expired: bool,
}

#[derive(Debug)]
pub struct OrderedLog {
    /// The last seq delivered (every lower seq delivered or reported as a gap).
    last: u64,
    pending: BTreeMap<u64, Incoming>,
    pending_bytes: usize,
    exit_delivered: bool,
    closed: bool,
    failed: bool,
    /// The server sends a process's notifications in seq order (rexec extension).
    ordered_server: bool,
    /// `process/start` was answered: reads are allowed.
    started: bool,
    read_in_flight: bool,
    grace: Option<Grace>,
    /// Highest seq shed from a full reorder buffer and not yet covered by a read.
    shed_up_to: Option<u64>,
}

impl OrderedLog {
    pub(crate) fn set_ordered_server(&mut self, ordered: bool) {
        self.ordered_server = ordered;
    }

    pub fn new(ordered_server: bool) -> Self {
        Self {
            last: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            exit_delivered: false,
            closed: false,
            failed: false,
            ordered_server,
            started: false,
            read_in_flight: false,
            grace: None,
            shed_up_to: None,
        }
    }

    /// The last seq delivered.
    pub(crate) fn last_seq(&self) -> u64 {
        self.last
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn is_terminal(&self) -> bool {
        self.closed || self.failed
    }

    pub fn on_started(&mut self, out: &mut Vec<ProcessEvent>) -> Repair {
        self.started = true;
        self.step_done(out)
    }

    pub fn on_event(&mut self, event: Incoming, out: &mut Vec<ProcessEvent>) -> Repair {
        if self.is_terminal() {
            return Repair::None;
        }
        let seq = event.seq();
        if seq == u64::MAX {
            // No log gets this far; one that claims to would overflow every `last + 1`.
            self.fail(format!("the server sent an event with seq {seq}"), out);
            return Repair::None;
        }
        if seq <= self.last || self.pending.contains_key(&seq) {
            return self.next_action(); // duplicate
        }
        if seq == self.last + 1 && !event.awaits_verdict {
            self.deliver(event.event, out);
        } else {
            self.hold(event, out);
        }
        self.step_done(out)
    }

    /// Apply a repair read (sent with `afterSeq` at or below the last delivered seq).
    /// `accounted_bytes` is the process's output ledger so far: the output bytes of every
    /// seq delivered, counting those reported lost (`History::ledger`).
    pub fn on_read(
        &mut self,
        result: ReadResult,
        accounted_bytes: u64,
        out: &mut Vec<ProcessEvent>,
    ) -> Repair {
        self.read_in_flight = false;
        if self.is_terminal() {
            return Repair::None;
        }
        if let Some(failure) = &result.failure {
            self.fail(
                format!("the server reports the process failed: {failure}"),
                out,
            );
            return Repair::None;
        }
        // A legacy exit held for its verdict gets it from a read that saw the exit (upstream
        // merge rule). One taken before the exit (its answer overtaken by the exit
        // notification) knows no verdict: the exit stays held and one more read follows.
        if result.exited {
            self.give_verdict(&result);
        }
        let target = result.next_seq.saturating_sub(1);
        if target > self.last
            && let Err(reason) = self.merge(result, target, accounted_bytes, out)
        {
            self.fail(reason, out);
            return Repair::None;
        }
        self.step_done(out)
    }

    fn give_verdict(&mut self, result: &ReadResult) {
        for incoming in self.pending.values_mut() {
            if let ProcessEvent::Exited {
                sandbox_denied,
                denial,
                ..
            } = &mut incoming.event
                && incoming.awaits_verdict
            {
                *sandbox_denied = result.sandbox_denied;
                *denial = result.sandbox_denial.clone().map(Box::new);
                incoming.awaits_verdict = false;
            }
        }
    }

    /// The read's response will never come (the connection dropped).
    pub fn on_read_lost(&mut self) {
        self.read_in_flight = false;
    }

    /// The read failed on a live connection: the stream cannot be repaired.
    pub fn on_read_failed(&mut self, reason: String, out: &mut Vec<ProcessEvent>) {
        self.read_in_flight = false;
        if !self.is_terminal() {
            self.fail(reason, out);
        }
    }

    pub fn on_grace_expired(&mut self, token: u64, out: &mut Vec<ProcessEvent>) -> Repair {
        match &mut self.grace {
            Some(grace) if grace.armed_at == token && self.last == token => grace.expired = true,
            Some(grace) if grace.armed_at == token => self.grace = None,
            _ => {}
        }
        self.step_done(out)
    }

    /// A new connection resumed the session: read from the last delivered seq. `None` when
    /// the process needs no repair (finished, or never started).
    pub fn begin_resume(&mut self) -> Option<u64> {
        if self.is_terminal() || !self.started {
            return None;
        }
        self.read_in_flight = true;
        self.grace = None;
        Some(self.last)
    }

    pub(crate) fn fail(&mut self, reason: String, out: &mut Vec<ProcessEvent>) {
        if self.is_terminal() {
            return;
        }
        self.failed = true;
        self.pending.clear();
        self.pending_bytes = 0;
        out.push(ProcessEvent::Failed { reason });
    }

    fn deliver(&mut self, event: ProcessEvent, out: &mut Vec<ProcessEvent>) {
        match &event {
            ProcessEvent::Output { seq, .. } => self.last = *seq,
            ProcessEvent::Exited { seq, .. } => {
                self.last = *seq;
                self.exit_delivered = true;
            }
            ProcessEvent::Closed { seq } => {
                self.last = *seq;
                self.closed = true;
            }
            ProcessEvent::Gap { seqs, .. } => self.last = *seqs.end(),
            ProcessEvent::Failed { .. } => {}
        }
        out.push(event);
    }

    /// Put an out-of-order event in the reorder buffer. When the buffer is full, the oldest
    /// events are shed: a repair read is always in flight or issued now, and it re-covers
    /// them or reports them as an exact gap. Before the start is answered no read can be
    /// issued, so an overflow then fails the process.
    fn hold(&mut self, event: Incoming, out: &mut Vec<ProcessEvent>) {
        self.pending_bytes += event.event.weight();
        self.pending.insert(event.seq(), event);
        while PER_PROCESS.exceeded(self.pending.len(), self.pending_bytes) {
            if !self.started {
                self.fail(
                    format!(
                        "more than {} events / {} bytes arrived out of order before \
                         process/start was answered",
                        PER_PROCESS.events, PER_PROCESS.bytes
                    ),
                    out,
                );
                return;
            }
            let Some((seq, shed)) = self.pending.pop_first() else {
                break;
            };
            self.pending_bytes -= shed.event.weight();
            self.shed_up_to = Some(self.shed_up_to.map_or(seq, |s| s.max(seq)));
        }
    }

    /// Deliver what became contiguous, then decide on a repair.
    fn step_done(&mut self, out: &mut Vec<ProcessEvent>) -> Repair {
        self.drain(out);
        if self.shed_up_to.is_some_and(|s| s <= self.last) {
            self.shed_up_to = None;
        }
        self.next_action()
    }

    fn drain(&mut self, out: &mut Vec<ProcessEvent>) {
        while !self.closed {
            let Some(entry) = self.pending.first_entry() else {
                return;
            };
            let seq = *entry.key();
            if seq > self.last + 1 || (seq == self.last + 1 && entry.get().awaits_verdict) {
                return;
            }
            let incoming = entry.remove();
            self.pending_bytes -= incoming.event.weight();
            if seq == self.last + 1 {
                self.deliver(incoming.event, out);
            }
        }
        self.pending.clear();
        self.pending_bytes = 0;
    }

    fn next_action(&mut self) -> Repair {
        if self.is_terminal() || self.read_in_flight {
            return Repair::None;
        }
        let next = self.last + 1;
        let legacy = self
            .pending
            .get(&next)
            .is_some_and(|incoming| incoming.awaits_verdict);
        let gap = self.pending.keys().next().is_some_and(|&seq| seq > next);
        let shed = self.shed_up_to.is_some();
        if !(legacy || gap || shed) {
            self.grace = None;
            return Repair::None;
        }
        if !self.started {
            return Repair::None; // on_started decides again
        }
        if gap && !legacy && !shed && !self.ordered_server {
            match self.grace {
                Some(grace) if grace.armed_at == self.last && grace.expired => {}
                Some(grace) if grace.armed_at == self.last => return Repair::None,
                _ => {
                    self.grace = Some(Grace {
                        armed_at: self.last,
                        expired: false,
                    });
                    return Repair::ArmGrace { token: self.last };
                }
            }
        }
        self.grace = None;
        self.read_in_flight = true;
        Repair::Read {
            after_seq: self.last,
        }
    }

    /// Merge a read covering `(last, target]` with the held events (see `rebuild`).
    fn merge(
        &mut self,
        result: ReadResult,
        target: u64,
        accounted_bytes: u64,
        out: &mut Vec<ProcessEvent>,
    ) -> Result<(), String> {
        let rest = self.pending.split_off(&(target + 1));
        let held = std::mem::replace(&mut self.pending, rest);
        self.pending_bytes = self.pending.values().map(|i| i.event.weight()).sum();
        let is_exit = |incoming: &Incoming| matches!(incoming.event, ProcessEvent::Exited { .. });
        let exit_known =
            self.exit_delivered || held.values().chain(self.pending.values()).any(is_exit);
        let known = held
            .into_iter()
            .filter(|&(seq, _)| seq > self.last)
            .map(|(seq, incoming)| {
                let known = Known {
                    event: incoming.event,
                    bytes_before: None,
                };
                (seq, known)
            })
            .collect();
        let window = Window {
            after_seq: self.last,
            until_seq: target,
            known,
            bytes_before: accounted_bytes,
            bytes_after: None,
            exit_known,
        };
        for event in rebuild(window, Some(result))? {
            self.deliver(event, out);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "ordered_tests.rs"]
mod tests;
