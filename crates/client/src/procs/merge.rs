//! Turning one `process/read` result into the events a stream is missing.
//!
//! A read returns output chunks only; the exit and close show up as seqs no chunk holds,
//! reflected in `exited` / `closed` / `nextSeq`, and output the server evicted shows up the
//! same way. This module rebuilds the events of `(after_seq, nextSeq − 1]`:
//! - chunks and held notifications go where their seq says (a chunk wins over a held copy);
//! - `closed` takes the last seq, `nextSeq − 1` (close is always the last event; a read
//!   that runs past a close already received contradicts it and fails the process);
//! - a missing exit is rebuilt with its code and denial verdict in the highest seq left
//!   free: output the server still retains is all returned, so a free seq above the first
//!   returned chunk can only be the exit; when the exit itself fell among evicted output its
//!   exact position is unknowable and the highest free seq is the best guess (the exit
//!   usually ends a process's output);
//! - every other free seq is output the server evicted: one `Gap` per contiguous run.
//!
//! `bytes_lost`: eviction drops the oldest output first, so when anything after
//! `after_seq` is lost, everything before the first returned chunk was evicted, including
//! all output this stream already accounted for. With rexec's `evictedBytes` the loss is
//! therefore `evictedBytes − accounted − held evicted-range bytes`, exact. It is reported
//! on the first gap of the read (a second run only occurs when a held exit splits the
//! evicted range). Without counters (codex) it is 0: unknown.

use super::ordered::Incoming;
use crate::event::ProcessEvent;
use bytes::Bytes;
use rexec_protocol::process::ReadResult;
use std::collections::BTreeMap;
use std::ops::RangeInclusive;

pub(crate) struct ReadMerge {
    /// The last seq the stream delivered.
    pub after_seq: u64,
    /// `nextSeq − 1` of the read, above `after_seq`.
    pub target: u64,
    /// Held notifications with seqs up to `target`.
    pub held: BTreeMap<u64, Incoming>,
    pub result: ReadResult,
    /// The exit was delivered or is held.
    pub exit_known: bool,
    /// Output bytes delivered or reported lost so far (all seqs up to `after_seq`).
    pub accounted_bytes: u64,
}

pub(crate) fn plan(merge: ReadMerge) -> Result<Vec<ProcessEvent>, String> {
    let ReadMerge {
        after_seq,
        target,
        mut held,
        result,
        exit_known,
        accounted_bytes,
    } = merge;
    let mut slots = held.split_off(&(after_seq + 1));
    if let Some(closed) = slots
        .values()
        .find(|event| matches!(event, Incoming::Closed { .. }))
        .map(Incoming::seq)
        .filter(|&seq| seq < target)
    {
        return Err(format!(
            "process/read reports seqs up to {target}, past the close received at seq {closed}"
        ));
    }
    let mut first_retained = None;
    let mut previous = after_seq;
    for chunk in result.chunks {
        if chunk.seq <= after_seq || chunk.seq > target {
            continue;
        }
        if chunk.seq <= previous {
            return Err(format!(
                "process/read returned chunk seq {} after seq {previous}",
                chunk.seq
            ));
        }
        previous = chunk.seq;
        first_retained.get_or_insert(chunk.seq);
        let event = Incoming::Output {
            seq: chunk.seq,
            stream: chunk.stream,
            bytes: Bytes::from(chunk.chunk.0),
        };
        if let Some(other) = slots.insert(chunk.seq, event)
            && !matches!(other, Incoming::Output { .. })
        {
            return Err(format!(
                "process/read returned output at seq {}, where {other:?} was received",
                chunk.seq
            ));
        }
    }
    if result.closed {
        match slots.get(&target) {
            None => {
                slots.insert(target, Incoming::Closed { seq: target });
            }
            Some(Incoming::Closed { .. }) => {}
            Some(other) => {
                return Err(format!(
                    "process/read reports the process closed at seq {target}, \
                     which holds {other:?}"
                ));
            }
        }
    }
    let mut missing = free_runs(after_seq, target, &slots);
    if result.exited && !exit_known {
        let Some(run) = missing.pop() else {
            return Err(format!(
                "process/read reports an exit, but seqs {}..={target} leave no room for it",
                after_seq + 1
            ));
        };
        let (start, seq) = run.into_inner();
        if start < seq {
            missing.push(start..=seq - 1);
        }
        slots.insert(
            seq,
            Incoming::Exited {
                seq,
                code: result.exit_code.unwrap_or(-1),
                sandbox_denied: Some(result.sandbox_denied),
                denial: result.sandbox_denial.clone().map(Box::new),
            },
        );
    }
    let bytes_lost = match result.evicted_bytes {
        Some(evicted) if !missing.is_empty() => {
            let bound = first_retained.unwrap_or(target + 1);
            let held_evicted: u64 = slots
                .range(..bound)
                .map(|(_, event)| event.weight() as u64)
                .sum();
            evicted.saturating_sub(accounted_bytes + held_evicted)
        }
        _ => 0,
    };
    let mut events = Vec::with_capacity(slots.len() + missing.len());
    let mut gaps = missing.into_iter().peekable();
    let mut gap_bytes = Some(bytes_lost);
    for (seq, event) in slots {
        while let Some(seqs) = gaps.next_if(|run| *run.start() < seq) {
            let bytes_lost = gap_bytes.take().unwrap_or(0);
            events.push(ProcessEvent::Gap { seqs, bytes_lost });
        }
        events.push(event.into_event());
    }
    for seqs in gaps {
        let bytes_lost = gap_bytes.take().unwrap_or(0);
        events.push(ProcessEvent::Gap { seqs, bytes_lost });
    }
    Ok(events)
}

/// The runs of seqs in `(after_seq, target]` that no slot holds.
fn free_runs<T>(after_seq: u64, target: u64, slots: &BTreeMap<u64, T>) -> Vec<RangeInclusive<u64>> {
    let mut runs = Vec::new();
    let mut next = after_seq + 1;
    for &seq in slots.keys() {
        if seq > next {
            runs.push(next..=seq - 1);
        }
        next = seq + 1;
    }
    if next <= target {
        runs.push(next..=target);
    }
    runs
}
