//! The bounded replay of a process's delivered events, shared by its subscribers, and the
//! rebuild of what a lagging subscriber missed.
//!
//! Delivered events are appended in order; the oldest are dropped beyond 256 events / 1 MiB
//! of output. Each entry remembers how many output bytes were delivered before it, and the
//! exits and gaps (the non-output events) are kept for the whole life of the process as
//! "marks". A subscriber that falls behind the retained history (or subscribes late) reads
//! what it missed from the server once, and [`fill_lag`] rebuilds the missed seqs from that
//! read plus the marks: output the server still retains comes back as `Output`, the rest
//! becomes `Gap`s whose byte counts are exact because the cumulative counters say how many
//! output bytes each run held.

use crate::event::ProcessEvent;
use rexec_protocol::process::ReadResult;
use std::collections::VecDeque;

/// Events a late or lagging subscriber can replay without a read (upstream's capacity).
pub(crate) const HISTORY_MAX_EVENTS: usize = 256;
/// Output bytes a late or lagging subscriber can replay without a read.
pub(crate) const HISTORY_MAX_BYTES: usize = 1024 * 1024;
/// The largest output chunk a server sends (rexec reads 64 KiB at a time; codex 8 KiB).
const INCOMING_CHUNK_ALLOWANCE: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub event: ProcessEvent,
    /// Output bytes delivered before this event.
    pub cum_before: u64,
}

#[derive(Debug, Default)]
pub(crate) struct History {
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
pub(crate) struct LagWindow {
    pub after_seq: u64,
    pub until_seq: u64,
    /// Output bytes delivered before `after_seq + 1` and before `until_seq + 1`.
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
    pub(crate) fn push_keeping(&mut self, event: ProcessEvent, keep: Option<u64>) {
        let entry = Entry {
            cum_before: self.cum,
            event,
        };
        match &entry.event {
            ProcessEvent::Output { bytes, .. } => self.cum += bytes.len() as u64,
            ProcessEvent::Exited { .. } | ProcessEvent::Gap { .. } => {
                self.marks.push(entry.clone());
            }
            ProcessEvent::Closed { .. } | ProcessEvent::Failed { .. } => {}
        }
        self.bytes += entry.event.weight();
        self.entries.push_back(entry);
        while self.entries.len() > 1
            && (self.entries.len() > HISTORY_MAX_EVENTS || self.bytes > HISTORY_MAX_BYTES)
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
            if len <= 1 || (len <= HISTORY_MAX_EVENTS && bytes <= HISTORY_MAX_BYTES) {
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

    pub(crate) fn front_pos(&self) -> u64 {
        self.front_pos
    }

    pub(crate) fn get(&self, pos: u64) -> Option<&Entry> {
        let index = usize::try_from(pos.checked_sub(self.front_pos)?).ok()?;
        self.entries.get(index)
    }

    /// The window a subscriber at `after_seq` (having seen `cum_start` output bytes) missed
    /// before `next`, the first entry still retained after it.
    pub(crate) fn lag_window(&self, after_seq: u64, cum_start: u64, next: &Entry) -> LagWindow {
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
/// so all output in the window is reported lost, with exact byte counts).
pub(crate) fn fill_lag(window: &LagWindow, read: Option<ReadResult>) -> VecDeque<ProcessEvent> {
    let chunks: Vec<_> = read
        .map(|r| r.chunks)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.seq > window.after_seq && c.seq <= window.until_seq)
        .collect();
    // Everything after the first returned chunk is returned too (eviction is oldest
    // first), so the output bytes before it follow from the window's end counter.
    let returned: u64 = chunks.iter().map(|c| c.chunk.0.len() as u64).sum();
    let mut chunk_cum = window.cum_end.saturating_sub(returned);
    let mut out = VecDeque::new();
    let mut next_seq = window.after_seq + 1;
    let mut cum = window.cum_start;
    let mut marks = window.marks.iter().peekable();
    let mut chunks = chunks.into_iter().peekable();
    loop {
        let mark_seq = marks.peek().and_then(|m| m.event.seq_range()).map(|r| r.0);
        let chunk_seq = chunks.peek().map(|c| c.seq);
        let (seq, boundary) = match (mark_seq, chunk_seq) {
            (None, None) => break,
            (Some(m), Some(c)) if c < m => (c, chunk_cum),
            (Some(m), _) => (m, marks.peek().map_or(cum, |e| e.cum_before)),
            (None, Some(c)) => (c, chunk_cum),
        };
        if seq > next_seq {
            out.push_back(ProcessEvent::Gap {
                seqs: next_seq..=seq - 1,
                bytes_lost: boundary.saturating_sub(cum),
            });
        }
        cum = cum.max(boundary);
        if Some(seq) == mark_seq
            && let Some(mark) = marks.next()
        {
            next_seq = mark.event.seq_range().map_or(seq, |r| r.1) + 1;
            out.push_back(mark.event.clone());
        } else if let Some(chunk) = chunks.next() {
            if chunk.seq < next_seq {
                continue; // a seq a mark already covers: not output
            }
            let len = chunk.chunk.0.len() as u64;
            cum += len;
            chunk_cum += len;
            next_seq = chunk.seq + 1;
            out.push_back(ProcessEvent::Output {
                seq: chunk.seq,
                stream: chunk.stream,
                bytes: chunk.chunk.0.into(),
            });
        }
    }
    if next_seq <= window.until_seq {
        out.push_back(ProcessEvent::Gap {
            seqs: next_seq..=window.until_seq,
            bytes_lost: window.cum_end.saturating_sub(cum),
        });
    }
    out
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
