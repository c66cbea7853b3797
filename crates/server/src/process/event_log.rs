//! The one ordered event log of a process.
//!
//! Output, exit and close each take the next number of a single sequence that starts at 1.
//! Output chunks are retained (1 MiB and 50 000 chunks, oldest evicted first) for
//! `process/read`; eviction is *counted*, so a reader can tell exactly how much it missed.
//! This type is plain data: callers hold the process lock around it and never await.
//!
//! A log that *holds* (`process/start.holdOutput`) never evicts a chunk above the client's
//! acknowledgement. It does not grow past the caps either: its producer asks
//! [`EventLog::has_room`] before reading more output and waits for an acknowledgement
//! while there is none, so eviction turns into backpressure.

use bytes::Bytes;
use rexec_protocol::ByteChunk;
use rexec_protocol::process::{OutputChunk, OutputStream, ReadResult};
use rexec_protocol::sandbox::SandboxDenial;
use std::collections::VecDeque;

pub const RETAINED_OUTPUT_BYTES: usize = 1024 * 1024;
pub const RETAINED_OUTPUT_CHUNKS: usize = 50_000;
/// A held process's retention: the unacknowledged output that may be in flight between the
/// child and a lossless consumer. As much as the outbound queue and socket buffers would
/// hold for a client that stops reading (128 frames of 64 KiB), so acknowledgements do
/// not cost a fast consumer its batching.
pub const HELD_OUTPUT_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct RetainedChunk {
    pub seq: u64,
    pub stream: OutputStream,
    pub bytes: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitRecord {
    pub seq: u64,
    pub code: i32,
    /// `Some` when the sandbox is blamed for the failure (`sandboxDenied: true`).
    pub denial: Option<SandboxDenial>,
}

#[derive(Debug)]
pub struct EventLog {
    next_seq: u64,
    retained: VecDeque<RetainedChunk>,
    retained_bytes: usize,
    evicted_chunks: u64,
    evicted_bytes: u64,
    exit: Option<ExitRecord>,
    closed_seq: Option<u64>,
    max_bytes: usize,
    max_chunks: usize,
    /// The highest seq eviction may reach: `u64::MAX` unless the log holds, then the
    /// client's acknowledgement.
    evictable_through: u64,
    holding: bool,
    /// Output bytes with a seq up to `evictable_through` (kept only while holding).
    acked_bytes: u64,
    /// Output bytes ever recorded, per stream (indexed by [`stream_index`]).
    stream_bytes: [u64; 3],
    /// The seq of the newest evicted chunk (0: none).
    evicted_through: u64,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::with_limits(RETAINED_OUTPUT_BYTES, RETAINED_OUTPUT_CHUNKS)
    }
}

/// What a `process/read` sees at one instant, and whether it may return now.
pub struct ReadSnapshot {
    pub result: ReadResult,
    /// True when the read has something to report: chunks, the close, or an exit the
    /// caller has not advanced past.
    pub ready: bool,
}

impl EventLog {
    pub fn with_limits(max_bytes: usize, max_chunks: usize) -> Self {
        Self {
            next_seq: 1,
            retained: VecDeque::new(),
            retained_bytes: 0,
            evicted_chunks: 0,
            evicted_bytes: 0,
            exit: None,
            closed_seq: None,
            max_bytes,
            max_chunks,
            evictable_through: u64::MAX,
            holding: false,
            acked_bytes: 0,
            stream_bytes: [0; 3],
            evicted_through: 0,
        }
    }

    /// A log that holds output until it is acknowledged.
    pub fn holding(max_bytes: usize, max_chunks: usize) -> Self {
        Self {
            evictable_through: 0,
            holding: true,
            ..Self::with_limits(max_bytes, max_chunks)
        }
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    pub fn push_output(&mut self, stream: OutputStream, bytes: Bytes) -> u64 {
        let seq = self.take_seq();
        self.retained_bytes += bytes.len();
        self.stream_bytes[stream_index(stream)] += bytes.len() as u64;
        self.retained
            .push_back(RetainedChunk { seq, stream, bytes });
        while self.retained_bytes > self.max_bytes || self.retained.len() > self.max_chunks {
            // Held output is never evicted; the producer waited for room instead.
            if self
                .retained
                .front()
                .is_none_or(|oldest| oldest.seq > self.evictable_through)
            {
                break;
            }
            let Some(oldest) = self.retained.pop_front() else {
                break;
            };
            self.retained_bytes -= oldest.bytes.len();
            self.evicted_chunks += 1;
            self.evicted_bytes += oldest.bytes.len() as u64;
            self.evicted_through = oldest.seq;
        }
        seq
    }

    /// The client has every event up to `seq` (clamped to the last one recorded): held
    /// output up to there may be evicted again. True when that freed room.
    pub fn acknowledge(&mut self, seq: u64) -> bool {
        let seq = seq.min(self.next_seq - 1);
        if !self.holding || seq <= self.evictable_through {
            return false;
        }
        // While holding, nothing above `evictable_through` was evicted: every newly
        // acknowledged chunk is still retained.
        let from = self
            .retained
            .partition_point(|c| c.seq <= self.evictable_through);
        self.acked_bytes += self
            .retained
            .range(from..)
            .take_while(|c| c.seq <= seq)
            .map(|c| c.bytes.len() as u64)
            .sum::<u64>();
        self.evictable_through = seq;
        true
    }

    /// Stop holding (the session expired or the server shuts down): eviction as usual.
    pub fn release_hold(&mut self) {
        self.holding = false;
        self.evictable_through = u64::MAX;
    }

    /// Whether a chunk of up to `chunk_bytes` fits without evicting held output. Always
    /// true for a log that does not hold, and when nothing is held (so output of any size
    /// makes progress).
    pub fn has_room(&self, chunk_bytes: usize) -> bool {
        if !self.holding {
            return true;
        }
        let held_bytes =
            (self.evicted_bytes + self.retained_bytes as u64).saturating_sub(self.acked_bytes);
        let held_chunks = self.retained.len()
            - self
                .retained
                .partition_point(|c| c.seq <= self.evictable_through);
        held_bytes == 0
            || (held_bytes + chunk_bytes as u64 <= self.max_bytes as u64
                && held_chunks < self.max_chunks)
    }

    pub fn record_exit(&mut self, code: i32, denial: Option<SandboxDenial>) -> ExitRecord {
        let record = ExitRecord {
            seq: self.take_seq(),
            code,
            denial,
        };
        self.exit = Some(record.clone());
        record
    }

    pub fn record_closed(&mut self) -> u64 {
        let seq = self.take_seq();
        self.closed_seq = Some(seq);
        seq
    }

    pub fn exit(&self) -> Option<&ExitRecord> {
        self.exit.as_ref()
    }

    pub fn is_closed(&self) -> bool {
        self.closed_seq.is_some()
    }

    pub fn closed_seq(&self) -> Option<u64> {
        self.closed_seq
    }

    /// Output bytes ever recorded on `stream`, evicted ones included.
    pub fn stream_bytes(&self, stream: OutputStream) -> u64 {
        self.stream_bytes[stream_index(stream)]
    }

    /// The seq of the newest chunk eviction dropped (0: none yet).
    pub fn evicted_through(&self) -> u64 {
        self.evicted_through
    }

    /// Retained output with a seq above `seq`, oldest first.
    pub fn retained_after(&self, seq: u64) -> impl Iterator<Item = &RetainedChunk> {
        let start = self.retained.partition_point(|c| c.seq <= seq);
        self.retained.range(start..)
    }

    /// Output still retained, oldest first.
    pub fn retained(&self) -> impl Iterator<Item = &RetainedChunk> {
        self.retained.iter()
    }

    /// The `process/read` algorithm (reference §4.2) over the current state.
    pub fn read(&self, after_seq: u64, max_bytes: Option<u64>) -> ReadSnapshot {
        let start = self.retained.partition_point(|c| c.seq <= after_seq);
        let mut chunks = Vec::new();
        let mut total: u64 = 0;
        for chunk in self.retained.range(start..) {
            let len = chunk.bytes.len() as u64;
            if max_bytes.is_some_and(|max| !chunks.is_empty() && total + len > max) {
                break;
            }
            chunks.push(OutputChunk {
                seq: chunk.seq,
                stream: chunk.stream,
                chunk: ByteChunk(chunk.bytes.to_vec()),
            });
            total += len;
            if max_bytes.is_some_and(|max| total >= max) {
                break;
            }
        }
        let next_seq = match (max_bytes, chunks.last()) {
            (Some(_), Some(last)) => last.seq + 1,
            _ => self.next_seq,
        };
        let exited = self.exit.is_some();
        let closed = self.closed_seq.is_some();
        let ready = !chunks.is_empty() || closed || (exited && after_seq < next_seq - 1);
        ReadSnapshot {
            ready,
            result: ReadResult {
                chunks,
                next_seq,
                exited,
                exit_code: self.exit.as_ref().map(|e| e.code),
                closed,
                failure: None,
                sandbox_denied: self.exit.as_ref().is_some_and(|e| e.denial.is_some()),
                evicted_chunks: Some(self.evicted_chunks),
                evicted_bytes: Some(self.evicted_bytes),
                sandbox_denial: self.exit.as_ref().and_then(|e| e.denial.clone()),
            },
        }
    }
}

pub fn stream_index(stream: OutputStream) -> usize {
    match stream {
        OutputStream::Stdout => 0,
        OutputStream::Stderr => 1,
        OutputStream::Pty => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(log: &mut EventLog, text: &str) -> u64 {
        log.push_output(
            OutputStream::Stdout,
            Bytes::copy_from_slice(text.as_bytes()),
        )
    }

    #[test]
    fn one_counter_for_output_exit_and_close() {
        let mut log = EventLog::default();
        assert_eq!(out(&mut log, "a"), 1);
        assert_eq!(log.record_exit(0, None).seq, 2);
        assert_eq!(out(&mut log, "late"), 3);
        assert_eq!(log.record_closed(), 4);
        let read = log.read(0, None).result;
        assert_eq!(read.next_seq, 5);
        assert_eq!(
            read.chunks.iter().map(|c| c.seq).collect::<Vec<_>>(),
            [1, 3]
        );
    }

    #[test]
    fn first_chunk_is_returned_whole_and_next_seq_follows_it() {
        let mut log = EventLog::default();
        out(&mut log, "0123456789");
        out(&mut log, "ab");
        let read = log.read(0, Some(4)).result;
        assert_eq!(
            read.chunks.len(),
            1,
            "first chunk always returned, then stop"
        );
        assert_eq!(read.next_seq, 2);
        let read = log.read(0, Some(12)).result;
        assert_eq!(read.chunks.len(), 2);
        assert_eq!(read.next_seq, 3);
        let read = log.read(2, Some(12)).result;
        assert!(read.chunks.is_empty());
        assert_eq!(read.next_seq, 3, "no chunk: the process's next seq");
    }

    #[test]
    fn exit_is_ready_until_the_caller_moves_past_it() {
        let mut log = EventLog::default();
        out(&mut log, "x");
        log.record_exit(3, None);
        assert!(log.read(1, None).ready, "exit not yet observed");
        assert!(!log.read(2, None).ready, "exit observed: wait for close");
        log.record_closed();
        assert!(log.read(3, None).ready);
    }

    #[test]
    fn eviction_is_oldest_first_and_counted() {
        let mut log = EventLog::with_limits(10, 3);
        for text in ["aaaa", "bbbb", "cccc"] {
            out(&mut log, text);
        }
        // 12 bytes > 10: "aaaa" evicted
        let read = log.read(0, None).result;
        assert_eq!(read.chunks[0].seq, 2);
        assert_eq!(
            (read.evicted_chunks, read.evicted_bytes),
            (Some(1), Some(4))
        );
        for text in ["d", "e"] {
            out(&mut log, text);
        }
        // 5 chunks > 3: "bbbb" evicted
        let read = log.read(0, None).result;
        assert_eq!(
            read.chunks.iter().map(|c| c.seq).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(
            (read.evicted_chunks, read.evicted_bytes),
            (Some(2), Some(8))
        );
    }

    fn seqs(log: &EventLog) -> Vec<u64> {
        log.retained().map(|c| c.seq).collect()
    }

    fn evicted(log: &EventLog) -> (Option<u64>, Option<u64>) {
        let read = log.read(0, None).result;
        (read.evicted_chunks, read.evicted_bytes)
    }

    #[test]
    fn a_holding_log_has_no_room_once_unacknowledged_output_fills_the_cap() {
        let mut log = EventLog::holding(16, 100);
        for text in ["aaaa", "bbbb", "cccc"] {
            assert!(log.has_room(4));
            out(&mut log, text);
        }
        assert!(log.has_room(4), "12 held + 4 fits in 16");
        assert!(!log.has_room(5), "12 held + 5 does not");
        out(&mut log, "dddd");
        assert!(!log.has_room(1), "16 bytes held: the producer must wait");
        assert_eq!(seqs(&log), [1, 2, 3, 4]);
        assert_eq!(evicted(&log), (Some(0), Some(0)));
    }

    #[test]
    fn acknowledged_output_is_evicted_only_when_room_is_needed() {
        let mut log = EventLog::holding(16, 100);
        for text in ["aaaa", "bbbb", "cccc", "dddd"] {
            out(&mut log, text);
        }
        assert!(log.acknowledge(2), "acknowledging frees room");
        assert!(log.has_room(8));
        assert!(!log.has_room(9));
        assert_eq!(seqs(&log), [1, 2, 3, 4], "nothing evicted until needed");
        out(&mut log, "eeee");
        assert_eq!(
            seqs(&log),
            [2, 3, 4, 5],
            "the oldest acknowledged chunk made room"
        );
        assert_eq!(evicted(&log), (Some(1), Some(4)), "and is counted");
        out(&mut log, "ffff");
        assert_eq!(seqs(&log), [3, 4, 5, 6]);
        assert!(!log.has_room(1), "held again: 3..=6 are unacknowledged");
    }

    #[test]
    fn an_unacknowledged_chunk_is_never_evicted_even_past_the_cap() {
        // The producer checks `has_room`; should it push anyway, held output still stays.
        let mut log = EventLog::holding(8, 100);
        for text in ["aaaa", "bbbb", "cccc"] {
            out(&mut log, text);
        }
        assert_eq!(seqs(&log), [1, 2, 3]);
        assert_eq!(evicted(&log), (Some(0), Some(0)));
        log.acknowledge(1);
        out(&mut log, "dddd");
        assert_eq!(seqs(&log), [2, 3, 4], "only the acknowledged chunk went");
    }

    #[test]
    fn the_chunk_cap_holds_as_the_byte_cap_does() {
        let mut log = EventLog::holding(1000, 2);
        out(&mut log, "a");
        assert!(log.has_room(1));
        out(&mut log, "b");
        assert!(!log.has_room(1), "two chunks held, the cap is two");
        assert!(log.acknowledge(1));
        assert!(log.has_room(1));
    }

    #[test]
    fn with_nothing_held_a_chunk_larger_than_the_cap_still_fits() {
        let mut log = EventLog::holding(4, 10);
        assert!(
            log.has_room(64 * 1024),
            "an empty log never stalls its producer"
        );
        out(&mut log, "0123456789");
        assert!(!log.has_room(1));
        assert!(log.acknowledge(1));
        assert!(log.has_room(64 * 1024));
    }

    #[test]
    fn acknowledgements_clamp_to_the_last_seq_and_never_move_back() {
        let mut log = EventLog::holding(8, 100);
        out(&mut log, "aaaa");
        out(&mut log, "bbbb");
        assert!(log.acknowledge(u64::MAX), "clamped to seq 2");
        assert!(log.has_room(8));
        assert!(!log.acknowledge(1), "lower than before: nothing changes");
        assert!(!log.acknowledge(2), "the same again: nothing changes");
        // Output after the clamp is held: the acknowledgement did not cover it.
        out(&mut log, "cccc");
        out(&mut log, "dddd");
        assert_eq!(seqs(&log), [3, 4]);
        assert!(!log.has_room(1));
        assert_eq!(evicted(&log), (Some(2), Some(8)));
    }

    #[test]
    fn exit_and_close_are_recorded_while_output_is_held() {
        let mut log = EventLog::holding(4, 100);
        out(&mut log, "aaaa");
        assert!(!log.has_room(1));
        assert_eq!(log.record_exit(0, None).seq, 2);
        assert_eq!(log.record_closed(), 3);
        let read = log.read(0, None).result;
        assert!(read.exited && read.closed);
        assert_eq!(read.chunks.len(), 1, "the held output is still there");
        assert!(!log.acknowledge(0), "seq 0 acknowledges nothing");
        assert!(log.acknowledge(3), "an ack may cover exit and close");
    }

    #[test]
    fn acknowledging_a_log_that_does_not_hold_changes_nothing() {
        let mut log = EventLog::with_limits(8, 100);
        out(&mut log, "aaaa");
        assert!(!log.acknowledge(1));
        assert!(log.has_room(1_000_000));
        for text in ["bbbb", "cccc"] {
            out(&mut log, text);
        }
        assert_eq!(seqs(&log), [2, 3], "evicts as it always did");
        assert_eq!(evicted(&log), (Some(1), Some(4)));
    }

    #[test]
    fn a_released_hold_evicts_as_usual() {
        let mut log = EventLog::holding(8, 100);
        out(&mut log, "aaaa");
        out(&mut log, "bbbb");
        assert!(!log.has_room(1));
        log.release_hold();
        assert!(log.has_room(1));
        out(&mut log, "cccc");
        assert_eq!(seqs(&log), [2, 3]);
        assert!(!log.acknowledge(3), "no longer holding");
    }
}
