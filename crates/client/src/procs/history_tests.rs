//! Unit tests of the replay history and the lag rebuild.

use super::*;
use bytes::Bytes;
use rexec_protocol::ByteChunk;
use rexec_protocol::process::{OutputChunk, OutputStream};

fn output(seq: u64, len: usize) -> ProcessEvent {
    ProcessEvent::Output {
        seq,
        stream: OutputStream::Stdout,
        bytes: Bytes::from(vec![b'x'; len]),
    }
}

fn chunk(seq: u64, len: usize) -> OutputChunk {
    OutputChunk {
        seq,
        stream: OutputStream::Stdout,
        chunk: ByteChunk(vec![b'x'; len]),
    }
}

fn read(chunks: Vec<OutputChunk>, next_seq: u64) -> ReadResult {
    ReadResult {
        chunks,
        next_seq,
        ..ReadResult::default()
    }
}

#[test]
fn history_is_bounded_by_events_and_bytes() {
    let mut history = History::default();
    for seq in 1..=300 {
        history.push(output(seq, 1));
    }
    assert_eq!(history.front_pos(), 300 - PER_PROCESS.events as u64);
    let mut history = History::default();
    for seq in 1..=3 {
        history.push(output(seq, PER_PROCESS.bytes / 2));
    }
    assert_eq!(history.front_pos(), 1);
    history.push(output(4, PER_PROCESS.bytes * 2));
    assert_eq!(history.front_pos(), 3, "the newest entry is always kept");
}

#[test]
fn lag_rebuild_takes_output_from_the_read_and_exits_from_the_marks() {
    let mut history = History::default();
    history.push(output(1, 10));
    history.push(output(2, 20));
    history.push(ProcessEvent::Exited {
        seq: 3,
        code: 0,
        sandbox_denied: false,
        denial: None,
    });
    history.push(output(4, 40));
    history.push(ProcessEvent::Closed { seq: 5 });
    let next = Entry {
        event: ProcessEvent::Closed { seq: 5 },
        cum_before: 70,
    };
    // a subscriber that saw only seq 1
    let window = history.lag_window(1, 10, &next);
    assert_eq!((window.until_seq, window.marks.len()), (4, 1));
    let events = fill_lag(&window, Some(read(vec![chunk(2, 20), chunk(4, 40)], 6)));
    let seqs: Vec<_> = events.iter().filter_map(ProcessEvent::seq_range).collect();
    assert_eq!(seqs, [(2, 2), (3, 3), (4, 4)]);
}

#[test]
fn lag_rebuild_reports_evicted_output_with_exact_bytes() {
    let mut history = History::default();
    for (seq, len) in [(1, 5), (2, 7), (3, 11), (4, 13)] {
        history.push(output(seq, len));
    }
    let next = Entry {
        event: output(5, 1),
        cum_before: 36,
    };
    let window = history.lag_window(0, 0, &next);
    // the server still has seqs 3 and 4 only
    let events: Vec<_> = fill_lag(&window, Some(read(vec![chunk(3, 11), chunk(4, 13)], 5))).into();
    assert_eq!(
        events[0],
        ProcessEvent::Gap {
            seqs: 1..=2,
            bytes_lost: 12
        }
    );
    assert_eq!(events.len(), 3);
    // the read failed entirely: everything is reported, exactly
    let events: Vec<_> = fill_lag(&window, None).into();
    assert_eq!(
        events,
        [ProcessEvent::Gap {
            seqs: 1..=4,
            bytes_lost: 36
        }]
    );
}

#[test]
fn lag_rebuild_splits_lost_runs_around_an_exit() {
    let mut history = History::default();
    history.push(output(1, 5));
    history.push(ProcessEvent::Exited {
        seq: 2,
        code: 9,
        sandbox_denied: true,
        denial: None,
    });
    history.push(output(3, 7));
    let next = Entry {
        event: ProcessEvent::Closed { seq: 4 },
        cum_before: 12,
    };
    let window = history.lag_window(0, 0, &next);
    let events: Vec<_> = fill_lag(&window, None).into();
    assert_eq!(
        events,
        [
            ProcessEvent::Gap {
                seqs: 1..=1,
                bytes_lost: 5
            },
            ProcessEvent::Exited {
                seq: 2,
                code: 9,
                sandbox_denied: true,
                denial: None,
            },
            ProcessEvent::Gap {
                seqs: 3..=3,
                bytes_lost: 7
            },
        ]
    );
}
