//! The one repair algorithm: the events of a window of seqs `(after_seq, until_seq]`,
//! rebuilt from a `process/read` result, the events already known inside the window and the
//! output-byte ledger around it.
//!
//! It has two callers. The ordered log's window is a hole in what it received: the known
//! events are held notifications and the ledger's far point is the server's eviction
//! counter. A lagging subscriber's window is what the bounded history dropped before it
//! read: the known events are the exits and gaps the process delivered (each with its
//! ledger position) and the ledger is known at both ends.
//!
//! A read returns output chunks only; the exit and close show up as seqs no chunk holds,
//! reflected in `exited` / `closed` / `nextSeq`, and evicted output shows up the same way.
//! - Chunks and known events go where their seq says. A returned chunk wins over a known
//!   copy of the same output; a chunk inside a known gap stays lost (the stream already
//!   said so); a chunk where an exit or the close is known contradicts the read.
//! - When the window ends where the read does (`nextSeq − 1`), a reported close takes that
//!   last seq (close is always the last event; a close known below it contradicts the read),
//!   and a reported exit nobody knows of takes the highest seq left free: output the server
//!   retains is all returned, so a free seq above the first returned chunk can only be the
//!   exit; when the exit fell among evicted output its exact position is unknowable and the
//!   highest free seq is the best guess (the exit usually ends a process's output).
//! - Every other free seq is output that is gone: one `Gap` per contiguous run.
//!
//! Bytes lost come from the ledger: output bytes before a seq, delivered or reported lost
//! ([`ProcessEvent::ledger_bytes`]). It is known at the window's start, before each known
//! event that carries a position, before the first returned chunk (eviction drops the oldest
//! output first, so everything before that chunk is gone: the window's end count less what
//! follows, or else the server's `evictedBytes`), and at the window's end when the caller
//! knows it or, when nothing was returned, from `evictedBytes`. Between two known points the
//! lost bytes are the difference less the known output in between, reported on the stretch's
//! first gap: exact, since a stretch has a second gap only when an exit of unknown position
//! splits it. Without a far point (codex reports no counters) a gap's bytes are 0: unknown.

use crate::event::ProcessEvent;
use bytes::Bytes;
use rexec_protocol::process::{OutputChunk, ReadResult};
use std::collections::BTreeMap;
use std::ops::RangeInclusive;

/// An event already known inside a window.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    pub event: ProcessEvent,
    /// The ledger before it, when known (a delivered event's; not a held notification's).
    pub bytes_before: Option<u64>,
}

/// What is known of a window before its read is applied.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    /// The last seq accounted for before the window.
    pub after_seq: u64,
    pub until_seq: u64,
    /// Known events inside the window, by first seq.
    pub known: BTreeMap<u64, Known>,
    /// The ledger before `after_seq + 1`.
    pub bytes_before: u64,
    /// The ledger before `until_seq + 1`, when known.
    pub bytes_after: Option<u64>,
    /// The exit was delivered, or is among the known events or past the window.
    pub exit_known: bool,
}

/// The events of `window`, in seq order, covering each of its seqs once; `read: None`
/// (no read could be made) reports all its unknown output as lost. An error names the
/// contradiction between the read and what is known.
pub(crate) fn rebuild(
    window: Window,
    read: Option<ReadResult>,
) -> Result<Vec<ProcessEvent>, String> {
    let Window {
        after_seq,
        until_seq,
        known: mut slots,
        bytes_before,
        bytes_after,
        exit_known,
    } = window;
    if let Some(closed) = slots
        .values()
        .find(|known| matches!(known.event, ProcessEvent::Closed { .. }))
        .and_then(|known| known.event.seq_range())
        .map(|(seq, _)| seq)
        .filter(|&seq| seq < until_seq)
    {
        return Err(format!(
            "process/read reports seqs up to {until_seq}, past the close received at seq {closed}"
        ));
    }
    // The read that was never made: nothing returned, nothing counted.
    let read = read.unwrap_or_default();
    let ends_window = read.next_seq.saturating_sub(1) == until_seq;
    let first_returned = place_chunks(&mut slots, after_seq, until_seq, read.chunks)?;
    if let Some(first) = first_returned {
        let after_first: u64 = slots
            .range(first..)
            .map(|(_, known)| known.event.ledger_bytes())
            .sum();
        let anchor = bytes_after
            .map(|after| after.saturating_sub(after_first))
            .or(read.evicted_bytes);
        if let Some(known) = slots.get_mut(&first) {
            known.bytes_before = anchor;
        }
    }
    if ends_window && read.closed {
        match slots.get(&until_seq).map(|known| &known.event) {
            None => {
                let event = ProcessEvent::Closed { seq: until_seq };
                slots.insert(until_seq, unplaced(event));
            }
            Some(ProcessEvent::Closed { .. }) => {}
            Some(other) => {
                return Err(format!(
                    "process/read reports the process closed at seq {until_seq}, \
                     which holds {other:?}"
                ));
            }
        }
    }
    let mut missing = free_runs(after_seq, until_seq, &slots);
    if ends_window && read.exited && !exit_known {
        let Some(run) = missing.pop() else {
            return Err(format!(
                "process/read reports an exit, but seqs {}..={until_seq} leave no room for it",
                after_seq + 1
            ));
        };
        let (start, seq) = run.into_inner();
        if start < seq {
            missing.push(start..=seq - 1);
        }
        let exit = ProcessEvent::Exited {
            seq,
            code: read.exit_code.unwrap_or(-1),
            sandbox_denied: read.sandbox_denied,
            denial: read.sandbox_denial.map(Box::new),
        };
        slots.insert(seq, unplaced(exit));
    }
    let end = bytes_after.or(read
        .evicted_bytes
        .filter(|_| ends_window && first_returned.is_none()));
    let mut stretch = Stretch {
        bytes: bytes_before,
        first_gap: None,
        events: Vec::with_capacity(slots.len() + missing.len()),
    };
    let mut gaps = missing.into_iter().peekable();
    for (seq, known) in slots {
        while let Some(seqs) = gaps.next_if(|run| *run.start() < seq) {
            stretch.gap(seqs);
        }
        stretch.reach(known.bytes_before);
        stretch.push(known.event);
    }
    for seqs in gaps {
        stretch.gap(seqs);
    }
    stretch.reach(end);
    Ok(stretch.events)
}

/// Put the read's chunks inside the window into `slots`; the first one's seq.
fn place_chunks(
    slots: &mut BTreeMap<u64, Known>,
    after_seq: u64,
    until_seq: u64,
    chunks: Vec<OutputChunk>,
) -> Result<Option<u64>, String> {
    let mut first = None;
    let mut previous = after_seq;
    for chunk in chunks {
        if chunk.seq <= after_seq || chunk.seq > until_seq {
            continue;
        }
        if chunk.seq <= previous {
            return Err(format!(
                "process/read returned chunk seq {} after seq {previous}",
                chunk.seq
            ));
        }
        previous = chunk.seq;
        if let Some((_, known)) = slots.range(..=chunk.seq).next_back() {
            match &known.event {
                ProcessEvent::Gap { seqs, .. } if seqs.contains(&chunk.seq) => continue,
                ProcessEvent::Output { .. } => {}
                other if other.seq_range().is_some_and(|(seq, _)| seq == chunk.seq) => {
                    return Err(format!(
                        "process/read returned output at seq {}, where {other:?} was received",
                        chunk.seq
                    ));
                }
                _ => {}
            }
        }
        first.get_or_insert(chunk.seq);
        let event = ProcessEvent::Output {
            seq: chunk.seq,
            stream: chunk.stream,
            bytes: Bytes::from(chunk.chunk.0),
        };
        slots.insert(chunk.seq, unplaced(event));
    }
    Ok(first)
}

fn unplaced(event: ProcessEvent) -> Known {
    Known {
        event,
        bytes_before: None,
    }
}

/// The runs of seqs in `(after_seq, until_seq]` that no slot covers.
fn free_runs(
    after_seq: u64,
    until_seq: u64,
    slots: &BTreeMap<u64, Known>,
) -> Vec<RangeInclusive<u64>> {
    let mut runs = Vec::new();
    let mut next = after_seq + 1;
    for known in slots.values() {
        let Some((first, last)) = known.event.seq_range() else {
            continue;
        };
        if first > next {
            runs.push(next..=first - 1);
        }
        next = next.max(last + 1);
    }
    if next <= until_seq {
        runs.push(next..=until_seq);
    }
    runs
}

/// The events being rebuilt, and the ledger since its last known point.
struct Stretch {
    /// Output bytes accounted so far (gaps of this stretch not yet counted).
    bytes: u64,
    /// The index of this stretch's first gap, whose bytes the next known point settles.
    first_gap: Option<usize>,
    events: Vec<ProcessEvent>,
}

impl Stretch {
    fn gap(&mut self, seqs: RangeInclusive<u64>) {
        self.first_gap.get_or_insert(self.events.len());
        self.events.push(ProcessEvent::Gap {
            seqs,
            bytes_lost: 0,
        });
    }

    fn push(&mut self, event: ProcessEvent) {
        self.bytes += event.ledger_bytes();
        self.events.push(event);
    }

    /// The ledger is known to stand at `bytes` here: the stretch's gaps lost the difference.
    fn reach(&mut self, bytes: Option<u64>) {
        let (Some(bytes), Some(index)) = (bytes, self.first_gap) else {
            return;
        };
        self.first_gap = None;
        if let Some(ProcessEvent::Gap { bytes_lost, .. }) = self.events.get_mut(index) {
            *bytes_lost = bytes.saturating_sub(self.bytes);
        }
        self.bytes = self.bytes.max(bytes);
    }
}

#[cfg(test)]
#[path = "rebuild_tests.rs"]
mod tests;
