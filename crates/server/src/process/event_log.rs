//! The one ordered event log of a process.
//!
//! Output, exit and close each take the next number of a single sequence that starts at 1.
//! Output chunks are retained (1 MiB and 50 000 chunks, oldest evicted first) for
//! `process/read`; eviction is *counted*, so a reader can tell exactly how much it missed.
//! This type is plain data: callers hold the process lock around it and never await.

use bytes::Bytes;
use rexec_protocol::ByteChunk;
use rexec_protocol::process::{OutputChunk, OutputStream, ReadResult};
use rexec_protocol::sandbox::SandboxDenial;
use std::collections::VecDeque;

pub const RETAINED_OUTPUT_BYTES: usize = 1024 * 1024;
pub const RETAINED_OUTPUT_CHUNKS: usize = 50_000;

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
        self.retained
            .push_back(RetainedChunk { seq, stream, bytes });
        while self.retained_bytes > self.max_bytes || self.retained.len() > self.max_chunks {
            let Some(oldest) = self.retained.pop_front() else {
                break;
            };
            self.retained_bytes -= oldest.bytes.len();
            self.evicted_chunks += 1;
            self.evicted_bytes += oldest.bytes.len() as u64;
        }
        seq
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
}
