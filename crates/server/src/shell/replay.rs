//! A command's most recent output chunks, kept to send again to a `shell/wait` that says
//! which seq it has (`afterSeq`): output printed while nobody streamed it is not lost.
//!
//! The window holds at most [`REPLAY_BYTES`] (but always the newest chunk, however big).
//! A caller whose next chunk fell out of it gets the first kept chunk marked `afterGap`
//! (or, once the window is released, an empty one at the newest seq), so a gap is counted
//! from the offsets, never silent.

use rexec_protocol::shell::REPLAY_BYTES;
use std::collections::VecDeque;

/// One chunk as it is sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub seq: u64,
    pub offset: u64,
    pub after_gap: bool,
    pub bytes: Vec<u8>,
}

struct Kept {
    seq: u64,
    offset: u64,
    bytes: Vec<u8>,
}

#[derive(Default)]
pub struct ReplayWindow {
    chunks: VecDeque<Kept>,
    bytes: usize,
    /// The newest chunk's seq and the offset after it, kept or not.
    newest: Option<(u64, u64)>,
}

impl ReplayWindow {
    pub fn push(&mut self, seq: u64, offset: u64, bytes: Vec<u8>) {
        self.newest = Some((seq, offset + bytes.len() as u64));
        self.bytes += bytes.len();
        self.chunks.push_back(Kept { seq, offset, bytes });
        while self.bytes > REPLAY_BYTES && self.chunks.len() > 1 {
            if let Some(old) = self.chunks.pop_front() {
                self.bytes -= old.bytes.len();
            }
        }
    }

    /// Nobody is expected to ask any more: free the chunks, remember where they ended.
    pub fn release(&mut self) {
        self.chunks = VecDeque::new();
        self.bytes = 0;
    }

    /// What a caller that has everything up to `after_seq` gets sent again.
    pub fn since(&self, after_seq: u64) -> Vec<Replayed> {
        let Some((newest_seq, end)) = self.newest else {
            return Vec::new();
        };
        if newest_seq <= after_seq {
            return Vec::new();
        }
        let mut replayed: Vec<Replayed> = self
            .chunks
            .iter()
            .filter(|kept| kept.seq > after_seq)
            .map(|kept| Replayed {
                seq: kept.seq,
                offset: kept.offset,
                after_gap: false,
                bytes: kept.bytes.clone(),
            })
            .collect();
        match replayed.first_mut() {
            Some(first) => first.after_gap = first.seq != after_seq + 1,
            None => replayed.push(Replayed {
                seq: newest_seq,
                offset: end,
                after_gap: true,
                bytes: Vec::new(),
            }),
        }
        replayed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(chunks: &[usize]) -> ReplayWindow {
        let mut window = ReplayWindow::default();
        let mut offset = 0;
        for (at, &len) in chunks.iter().enumerate() {
            window.push(at as u64 + 1, offset, vec![b'x'; len]);
            offset += len as u64;
        }
        window
    }

    #[test]
    fn a_caller_gets_the_chunks_above_its_seq_in_order() {
        let window = window(&[1, 2, 3]);
        let replayed = window.since(1);
        let seqs: Vec<_> = replayed
            .iter()
            .map(|r| (r.seq, r.offset, r.after_gap))
            .collect();
        assert_eq!(seqs, [(2, 1, false), (3, 3, false)]);
        assert!(window.since(3).is_empty());
    }

    #[test]
    fn past_the_bound_the_oldest_go_and_the_first_kept_says_so() {
        let chunk = REPLAY_BYTES / 4;
        let window = window(&[chunk; 6]);
        let replayed = window.since(0);
        assert_eq!(replayed.len(), 4);
        assert_eq!(replayed[0].seq, 3);
        assert_eq!(replayed[0].offset, 2 * chunk as u64);
        assert!(replayed[0].after_gap);
        assert!(replayed[1..].iter().all(|r| !r.after_gap));
        // A caller that has seq 2 misses nothing.
        assert!(!window.since(2)[0].after_gap);
    }

    #[test]
    fn the_newest_chunk_stays_however_big() {
        let window = window(&[10, REPLAY_BYTES + 1]);
        let replayed = window.since(1);
        assert_eq!(replayed.len(), 1);
        assert_eq!(replayed[0].bytes.len(), REPLAY_BYTES + 1);
        assert!(!replayed[0].after_gap);
    }

    #[test]
    fn a_released_window_answers_with_an_empty_gap_at_the_end() {
        let mut window = window(&[5, 7]);
        window.release();
        assert_eq!(
            window.since(1),
            [Replayed {
                seq: 2,
                offset: 12,
                after_gap: true,
                bytes: Vec::new(),
            }]
        );
        assert!(window.since(2).is_empty());
    }
}
