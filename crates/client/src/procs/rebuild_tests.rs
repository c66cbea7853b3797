//! Unit tests of the repair algorithm, from both of its callers' sides.

use super::*;
use rexec_protocol::ByteChunk;
use rexec_protocol::process::OutputStream;

/// One seeded log a server might hold: outputs, one exit, the close last.
struct ServerLog {
    /// Index seq − 1: `Some(len)` for output, `None` for the exit; the close follows.
    events: Vec<Option<u64>>,
    exit_seq: u64,
    /// The first output seq still retained; every lower one was evicted.
    retained_from: u64,
}

impl ServerLog {
    fn close_seq(&self) -> u64 {
        self.events.len() as u64 + 1
    }

    fn output_before(&self, seq: u64) -> u64 {
        let before = ((seq - 1) as usize).min(self.events.len());
        self.events[..before].iter().flatten().sum()
    }

    fn evicted_bytes(&self) -> u64 {
        self.output_before(self.retained_from)
    }

    fn output(&self, seq: u64, len: u64) -> ProcessEvent {
        ProcessEvent::Output {
            seq,
            stream: OutputStream::Stdout,
            bytes: vec![(seq % 251) as u8; len as usize].into(),
        }
    }

    fn exit(&self) -> ProcessEvent {
        ProcessEvent::Exited {
            seq: self.exit_seq,
            code: 3,
            sandbox_denied: false,
            denial: None,
        }
    }

    /// `process/read {afterSeq}` as the server answers it, with or without counters.
    fn read(&self, after_seq: u64, counters: bool) -> ReadResult {
        let chunks = (after_seq + 1..self.close_seq())
            .filter(|&seq| seq >= self.retained_from)
            .filter_map(|seq| {
                let len = self.events[(seq - 1) as usize]?;
                Some(OutputChunk {
                    seq,
                    stream: OutputStream::Stdout,
                    chunk: ByteChunk(vec![(seq % 251) as u8; len as usize]),
                })
            })
            .collect();
        ReadResult {
            chunks,
            next_seq: self.close_seq() + 1,
            exited: true,
            exit_code: Some(3),
            closed: true,
            failure: None,
            sandbox_denied: false,
            evicted_chunks: None,
            evicted_bytes: counters.then(|| self.evicted_bytes()),
            sandbox_denial: None,
        }
    }

    fn event(&self, seq: u64) -> ProcessEvent {
        match self.events.get((seq - 1) as usize) {
            Some(Some(len)) => self.output(seq, *len),
            Some(None) => self.exit(),
            None => ProcessEvent::Closed { seq },
        }
    }
}

/// A small deterministic generator (xorshift), so every case can be replayed by its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn random_log(rng: &mut Rng) -> ServerLog {
    let len = 1 + rng.below(12);
    let exit_index = rng.below(len);
    let events: Vec<_> = (0..len)
        .map(|i| (i != exit_index).then(|| 1 + rng.below(40)))
        .collect();
    let retained_from = 1 + rng.below(len + 1);
    ServerLog {
        events,
        exit_seq: exit_index + 1,
        retained_from,
    }
}

/// Checks what any rebuild must give: each seq of the window once, in order; output equal
/// to the server's; the exit's code; and, with counters, exactly the window's output bytes.
fn check_window(log: &ServerLog, events: &[ProcessEvent], after: u64, until: u64, exact: bool) {
    let mut next = after + 1;
    let mut ledger = 0;
    for event in events {
        let (first, last) = event.seq_range().expect("sequenced");
        assert_eq!(first, next, "{events:?}");
        next = last + 1;
        ledger += event.ledger_bytes();
        match event {
            ProcessEvent::Output { seq, .. } => assert_eq!(*event, log.event(*seq)),
            ProcessEvent::Exited { code, .. } => assert_eq!(*code, 3),
            _ => {}
        }
    }
    assert_eq!(next, until + 1, "{events:?}");
    if exact {
        let expected = log.output_before(until + 1) - log.output_before(after + 1);
        assert_eq!(ledger, expected, "{events:?}");
    }
}

#[test]
fn both_callers_rebuild_a_window_exactly_from_the_same_read() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    for _ in 0..5000 {
        let log = random_log(&mut rng);
        let close = log.close_seq();
        let counters = rng.below(4) != 0;
        let after = rng.below(close);

        // The ordered log: a hole after `after`, some of its notifications held.
        let known: BTreeMap<_, _> = (after + 1..=close)
            .filter(|_| rng.below(3) == 0)
            .map(|seq| (seq, unplaced(log.event(seq))))
            .collect();
        let exit_known = log.exit_seq <= after
            || known
                .values()
                .any(|k| matches!(k.event, ProcessEvent::Exited { .. }));
        let window = Window {
            after_seq: after,
            until_seq: close,
            known,
            bytes_before: log.output_before(after + 1),
            bytes_after: None,
            exit_known,
        };
        let events = rebuild(window, Some(log.read(after, counters))).expect("consistent");
        check_window(&log, &events, after, close, counters);
        assert_eq!(events.last(), Some(&ProcessEvent::Closed { seq: close }));
        let exits = events
            .iter()
            .filter(|e| matches!(e, ProcessEvent::Exited { .. }));
        assert_eq!(exits.count(), usize::from(log.exit_seq > after));

        // A lagging subscriber: everything was delivered; it missed `(after, until]`.
        let until = after + rng.below(close - after);
        let mut known = BTreeMap::new();
        if (after + 1..=until).contains(&log.exit_seq) {
            let exit = Known {
                event: log.exit(),
                bytes_before: Some(log.output_before(log.exit_seq)),
            };
            known.insert(log.exit_seq, exit);
        }
        let window = Window {
            after_seq: after,
            until_seq: until,
            known,
            bytes_before: log.output_before(after + 1),
            bytes_after: Some(log.output_before(until + 1)),
            exit_known: true,
        };
        let read = (rng.below(4) != 0).then(|| log.read(after, counters));
        let events = rebuild(window, read).expect("consistent");
        check_window(&log, &events, after, until, true);
        // Its gaps are split at the exit and each is exact.
        for event in &events {
            match event {
                ProcessEvent::Gap { seqs, bytes_lost } => {
                    let run = log.output_before(seqs.end() + 1) - log.output_before(*seqs.start());
                    assert_eq!(*bytes_lost, run, "{events:?}");
                }
                other => {
                    let (seq, _) = other.seq_range().expect("sequenced");
                    assert_eq!(*other, log.event(seq));
                }
            }
        }
    }
}

#[test]
fn a_chunk_inside_a_gap_already_reported_stays_lost() {
    let lost = Known {
        event: ProcessEvent::Gap {
            seqs: 1..=2,
            bytes_lost: 5,
        },
        bytes_before: Some(0),
    };
    let window = Window {
        after_seq: 0,
        until_seq: 3,
        known: BTreeMap::from([(1, lost.clone())]),
        bytes_before: 0,
        bytes_after: Some(9),
        exit_known: true,
    };
    let log = ServerLog {
        events: vec![Some(2), Some(3), Some(4)],
        exit_seq: 99,
        retained_from: 2,
    };
    let events = rebuild(window, Some(log.read(0, true))).expect("consistent");
    assert_eq!(events, [lost.event, log.output(3, 4)]);
}

#[test]
fn a_read_contradicting_a_received_exit_or_close_is_an_error() {
    let log = ServerLog {
        events: vec![Some(2), Some(3)],
        exit_seq: 99,
        retained_from: 1,
    };
    for received in [
        ProcessEvent::Exited {
            seq: 2,
            code: 0,
            sandbox_denied: false,
            denial: None,
        },
        ProcessEvent::Closed { seq: 2 },
    ] {
        let window = Window {
            after_seq: 0,
            until_seq: 3,
            known: BTreeMap::from([(2, unplaced(received))]),
            bytes_before: 0,
            bytes_after: None,
            exit_known: true,
        };
        let error = rebuild(window, Some(log.read(0, true))).expect_err("contradiction");
        assert!(error.contains("seq 2"), "{error}");
    }
}

#[test]
fn without_counters_lost_bytes_are_unknown() {
    let log = ServerLog {
        events: vec![Some(2), Some(3), None],
        exit_seq: 3,
        retained_from: 2,
    };
    let window = Window {
        after_seq: 0,
        until_seq: 4,
        known: BTreeMap::new(),
        bytes_before: 0,
        bytes_after: None,
        exit_known: false,
    };
    let events = rebuild(window, Some(log.read(0, false))).expect("consistent");
    assert_eq!(
        events,
        [
            ProcessEvent::Gap {
                seqs: 1..=1,
                bytes_lost: 0
            },
            log.output(2, 3),
            log.exit(),
            ProcessEvent::Closed { seq: 4 },
        ]
    );
}
