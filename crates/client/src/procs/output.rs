//! The `Completion` accumulator: head + tail of each output stream within a byte budget,
//! with an exact count of what was left out, plus the gaps and the exit.
//!
//! It is fed every delivered event in seq order, under the process lock, so it must stay
//! cheap: no allocation beyond the budget, no await.

use crate::event::{Completion, GapInfo, ProcessEvent, Timings};
use rexec_protocol::process::OutputStream;
use rexec_protocol::sandbox::SandboxDenial;
use std::collections::VecDeque;

/// The first `head_cap` bytes and the last `tail_cap` bytes of a stream.
#[derive(Debug)]
pub(crate) struct HeadTail {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_cap: usize,
    tail_cap: usize,
    omitted: u64,
}

impl HeadTail {
    pub(crate) fn new(budget: usize) -> Self {
        let head_cap = budget / 2;
        Self {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_cap,
            tail_cap: budget - head_cap,
            omitted: 0,
        }
    }

    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        if self.head.len() < self.head_cap {
            let take = (self.head_cap - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        if bytes.is_empty() {
            return;
        }
        if bytes.len() >= self.tail_cap {
            let dropped = self.tail.len() + (bytes.len() - self.tail_cap);
            self.omitted += dropped as u64;
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_cap..]);
            return;
        }
        let over = (self.tail.len() + bytes.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..over);
        self.omitted += over as u64;
        self.tail.extend(bytes);
    }

    pub(crate) fn omitted(&self) -> u64 {
        self.omitted
    }

    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + self.tail.len());
        out.extend_from_slice(&self.head);
        let (a, b) = self.tail.as_slices();
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        out
    }
}

/// Everything a `Completion` needs, built as events are delivered.
#[derive(Debug)]
pub(crate) struct OutputCollector {
    stdout: HeadTail,
    stderr: HeadTail,
    pty: HeadTail,
    gaps: Vec<GapInfo>,
    exit: Option<(i32, bool, Option<SandboxDenial>)>,
}

impl OutputCollector {
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            stdout: HeadTail::new(budget),
            stderr: HeadTail::new(budget),
            pty: HeadTail::new(budget),
            gaps: Vec::new(),
            exit: None,
        }
    }

    pub(crate) fn apply(&mut self, event: &ProcessEvent) {
        match event {
            ProcessEvent::Output { stream, bytes, .. } => match stream {
                OutputStream::Stdout => self.stdout.push(bytes),
                OutputStream::Stderr => self.stderr.push(bytes),
                OutputStream::Pty => self.pty.push(bytes),
            },
            ProcessEvent::Exited {
                code,
                sandbox_denied,
                denial,
                ..
            } => self.exit = Some((*code, *sandbox_denied, denial.as_deref().cloned())),
            ProcessEvent::Gap { seqs, bytes_lost } => self.gaps.push(GapInfo {
                seqs: seqs.clone(),
                bytes_lost: *bytes_lost,
            }),
            ProcessEvent::Closed { .. } | ProcessEvent::Failed { .. } => {}
        }
    }

    /// The completion, once the exit is known.
    pub(crate) fn completion(&self, timings: Timings) -> Option<Completion> {
        let (exit_code, sandbox_denied, sandbox_denial) = self.exit.clone()?;
        Some(Completion {
            exit_code,
            sandbox_denied,
            sandbox_denial,
            stdout: self.stdout.to_vec(),
            stderr: self.stderr.to_vec(),
            pty: self.pty.to_vec(),
            gaps: self.gaps.clone(),
            omitted_bytes: self.stdout.omitted() + self.stderr.omitted() + self.pty.omitted(),
            timings,
            timed_out: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn keeps_everything_within_budget() {
        let mut buf = HeadTail::new(100);
        buf.push(b"hello ");
        buf.push(b"world");
        assert_eq!(buf.to_vec(), b"hello world");
        assert_eq!(buf.omitted(), 0);
    }

    #[test]
    fn keeps_head_and_tail_and_counts_the_middle_exactly() {
        let data = pattern(10_000);
        for chunk_size in [1, 7, 333, 10_000] {
            let mut buf = HeadTail::new(1000);
            for chunk in data.chunks(chunk_size) {
                buf.push(chunk);
            }
            let mut expected = data[..500].to_vec();
            expected.extend_from_slice(&data[data.len() - 500..]);
            assert_eq!(buf.to_vec(), expected, "chunk size {chunk_size}");
            assert_eq!(buf.omitted(), 9000, "chunk size {chunk_size}");
        }
    }

    #[test]
    fn odd_budget_and_zero_budget() {
        let data = pattern(50);
        let mut buf = HeadTail::new(5);
        buf.push(&data);
        assert_eq!(buf.to_vec(), [&data[..2], &data[47..]].concat());
        assert_eq!(buf.omitted(), 45);
        let mut none = HeadTail::new(0);
        none.push(&data);
        assert!(none.to_vec().is_empty());
        assert_eq!(none.omitted(), 50);
    }
}
