//! The bounded replay of a process's delivered events, shared by its subscribers, and the
//! rebuild of what a lagging subscriber missed.
//!
//! Delivered events are appended in order; the oldest are dropped beyond the per-process
//! bound (`bounds`). The history is also the process's output ledger, the one count of
//! its output bytes (delivered or reported lost): each entry remembers the ledger before
//! it, and the exits and gaps (the non-output events) are kept for the whole life of the
//! process as "marks". A subscriber that falls behind the retained history (or subscribes
//! late) reads what it missed from the server once, and [`fill_lag`] rebuilds the missed
//! seqs from that read plus the marks (`rebuild`): output the server still retains comes
//! back as `Output`, the rest becomes `Gap`s whose byte counts are exact because the ledger
//! says how many output bytes each run held.

// Public only through the `testing` feature's `fuzzing` module.
#![cfg_attr(feature = "testing", allow(missing_docs))]

use super::bounds::PER_PROCESS;
use super::rebuild::{Known, Window, rebuild};
use crate::event::ProcessEvent;
use rexec_protocol::process::ReadResult;
use std::collections::VecDeque;

/// The largest output chunk a server sends (rexec reads 64 KiB at a time; codex 8 KiB).
const INCOMING_CHUNK_ALLOWANCE: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Entry {
    pub event: ProcessEvent,
    /// The ledger before this event: output bytes delivered or reported lost.
    pub cum_before: u64,
}

#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<Entry>,
    /// Position of `entries[0]` in the sequence of every event ever delivered.
    front_pos: u64,
    bytes: usize,
    /// Every `Exited` and `Gap`, never trimmed (a handful per process).
    marks: Vec<Entry>,
    cum: u64,
}

/// What a subscriber missed: seqs `(after_seq, until_seq]`.
#[derive(Debug, Clone)]
pub struct LagWindow {
    pub after_seq: u64,
    pub until_seq: u64,
    /// The ledger before `after_seq + 1` and before `until_seq + 1`.
    pub cum_start: u64,
    pub cum_end: u64,
    /// Exits and gaps inside the window.
    pub marks: Vec<Entry>,
}

impl History {
    #[cfg(test)]
    pub(crate) fn push(&mut self, event: ProcessEvent) {
        self.push_keeping(event, None);
    }

    /// `push`, but never dropping the entry at position `keep` or a later one (the server
    /// holds that output for a lossless reader, which bounds what is kept here).
    pub fn push_keeping(&mut self, event: ProcessEvent, keep: Option<u64>) {
        let entry = Entry {
            cum_before: self.cum,
            event,
        };
        self.cum += entry.event.ledger_bytes();
        if matches!(
            entry.event,
            ProcessEvent::Exited { .. } | ProcessEvent::Gap { .. }
        ) {
            self.marks.push(entry.clone());
        }
        self.bytes += entry.event.weight();
        self.entries.push_back(entry);
        while self.entries.len() > 1
            && PER_PROCESS.exceeded(self.entries.len(), self.bytes)
            && keep.is_none_or(|keep| self.front_pos < keep)
        {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.event.weight();
                self.front_pos += 1;
            }
        }
    }

    /// Whether appending one more output chunk (up to [`INCOMING_CHUNK_ALLOWANCE`] bytes)
    /// would drop the entry at `pos` or a later one.
    pub(crate) fn would_trim(&self, pos: u64) -> bool {
        let mut len = self.entries.len() + 1;
        let mut bytes = self.bytes + INCOMING_CHUNK_ALLOWANCE;
        for (front, entry) in (self.front_pos..).zip(&self.entries) {
            if len <= 1 || !PER_PROCESS.exceeded(len, bytes) {
                return false;
            }
            if front >= pos {
                return true;
            }
            bytes -= entry.event.weight();
            len -= 1;
        }
        false
    }

    /// The ledger: output bytes of every event so far, delivered or reported lost.
    pub(crate) fn ledger(&self) -> u64 {
        self.cum
    }

    pub fn front_pos(&self) -> u64 {
        self.front_pos
    }

    pub fn get(&self, pos: u64) -> Option<&Entry> {
        let index = usize::try_from(pos.checked_sub(self.front_pos)?).ok()?;
        self.entries.get(index)
    }

    /// The window a subscriber at `after_seq` (having seen `cum_start` output bytes) missed
    /// before `next`, the first entry still retained after it.
    pub fn lag_window(&self, after_seq: u64, cum_start: u64, next: &Entry) -> LagWindow {
        let until_seq = next
            .event
            .seq_range()
            .map_or(after_seq, |(first, _)| first - 1);
        let marks = self
            .marks
            .iter()
            .filter(|m| {
                m.event
                    .seq_range()
                    .is_some_and(|(first, _)| first > after_seq && first <= until_seq)
            })
            .cloned()
            .collect();
        LagWindow {
            after_seq,
            until_seq,
            cum_start,
            cum_end: next.cum_before,
            marks,
        }
    }
}

/// Rebuild the events of a lag window from the read made for it (`None`: the read failed,
/// so all output in the window is reported lost, with exact byte counts; likewise when the
/// read contradicts what this process delivered).
pub fn fill_lag(window: &LagWindow, read: Option<ReadResult>) -> VecDeque<ProcessEvent> {
    let events = rebuild(lag(window), read).or_else(|reason| {
        tracing::debug!(%reason, "a lag repair read contradicts the delivered stream");
        rebuild(lag(window), None)
    });
    events.unwrap_or_default().into()
}

/// The repair window of a lag: the delivered exits and gaps inside it, with their places
/// on the ledger, and the ledger at both ends.
fn lag(window: &LagWindow) -> Window {
    let known = window
        .marks
        .iter()
        .filter_map(|mark| {
            let (seq, _) = mark.event.seq_range()?;
            let known = Known {
                event: mark.event.clone(),
                bytes_before: Some(mark.cum_before),
            };
            Some((seq, known))
        })
        .collect();
    Window {
        after_seq: window.after_seq,
        until_seq: window.until_seq,
        known,
        bytes_before: window.cum_start,
        bytes_after: Some(window.cum_end),
        exit_known: true,
    }
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
