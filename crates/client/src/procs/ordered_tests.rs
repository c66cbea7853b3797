//! Unit tests of the ordered log: delivery order, repair decisions and read merging.

use super::*;
use bytes::Bytes;
use rexec_protocol::ByteChunk;
use rexec_protocol::process::{OutputChunk, OutputStream};

fn out(seq: u64, text: &str) -> Incoming {
    ProcessEvent::Output {
        seq,
        stream: OutputStream::Stdout,
        bytes: Bytes::copy_from_slice(text.as_bytes()),
    }
    .into()
}

fn exited(seq: u64, code: i32, sandbox_denied: Option<bool>) -> Incoming {
    let event = ProcessEvent::Exited {
        seq,
        code,
        sandbox_denied: sandbox_denied.unwrap_or(false),
        denial: None,
    };
    Incoming {
        event,
        awaits_verdict: sandbox_denied.is_none(),
    }
}

fn closed(seq: u64) -> Incoming {
    ProcessEvent::Closed { seq }.into()
}

/// `on_read`, with the ledger of everything `events` holds (every test keeps all it got).
fn read_into(log: &mut OrderedLog, result: ReadResult, events: &mut Vec<ProcessEvent>) -> Repair {
    let accounted: u64 = events.iter().map(ProcessEvent::ledger_bytes).sum();
    log.on_read(result, accounted, events)
}

fn chunk(seq: u64, text: &str) -> OutputChunk {
    OutputChunk {
        seq,
        stream: OutputStream::Stdout,
        chunk: ByteChunk(text.as_bytes().to_vec()),
    }
}

fn read(
    chunks: Vec<OutputChunk>,
    next_seq: u64,
    exit: Option<(i32, bool)>,
    closed: bool,
) -> ReadResult {
    ReadResult {
        chunks,
        next_seq,
        exited: exit.is_some(),
        exit_code: exit.map(|e| e.0),
        closed,
        failure: None,
        sandbox_denied: exit.is_some_and(|e| e.1),
        evicted_chunks: None,
        evicted_bytes: None,
        sandbox_denial: None,
    }
}

fn started(ordered: bool) -> OrderedLog {
    let mut log = OrderedLog::new(ordered);
    assert_eq!(log.on_started(&mut Vec::new()), Repair::None);
    log
}

/// Compact rendering of delivered events: `o1:text`, `x3:7:false`, `c4`, `g2-3:6`, `F`.
fn render(events: &[ProcessEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            ProcessEvent::Output { seq, bytes, .. } => {
                format!("o{seq}:{}", String::from_utf8_lossy(bytes))
            }
            ProcessEvent::Exited {
                seq,
                code,
                sandbox_denied,
                ..
            } => format!("x{seq}:{code}:{sandbox_denied}"),
            ProcessEvent::Closed { seq } => format!("c{seq}"),
            ProcessEvent::Gap { seqs, bytes_lost } => {
                format!("g{}-{}:{bytes_lost}", seqs.start(), seqs.end())
            }
            ProcessEvent::Failed { .. } => "F".to_owned(),
        })
        .collect()
}

#[test]
fn complete_in_order_stream_needs_no_read() {
    let mut log = started(true);
    let mut events = Vec::new();
    for event in [
        out(1, "a"),
        out(2, "b"),
        exited(3, 0, Some(false)),
        closed(4),
    ] {
        assert_eq!(log.on_event(event, &mut events), Repair::None);
    }
    assert_eq!(render(&events), ["o1:a", "o2:b", "x3:0:false", "c4"]);
    assert!(log.is_closed());
}

#[test]
fn duplicates_are_dropped() {
    let mut log = started(true);
    let mut events = Vec::new();
    for event in [
        out(1, "a"),
        out(1, "a"),
        out(2, "b"),
        out(1, "a"),
        out(2, "b"),
    ] {
        assert_eq!(log.on_event(event, &mut events), Repair::None);
    }
    assert_eq!(render(&events), ["o1:a", "o2:b"]);
}

#[test]
fn gap_on_an_ordered_server_costs_exactly_one_read() {
    let mut log = started(true);
    let mut events = Vec::new();
    assert_eq!(log.on_event(out(1, "a"), &mut events), Repair::None);
    assert_eq!(
        log.on_event(exited(3, 0, Some(false)), &mut events),
        Repair::Read { after_seq: 1 }
    );
    assert_eq!(log.on_event(closed(4), &mut events), Repair::None);
    let repair = read_into(
        &mut log,
        read(
            vec![chunk(1, "a"), chunk(2, "b")],
            5,
            Some((0, false)),
            true,
        ),
        &mut events,
    );
    assert_eq!(repair, Repair::None);
    assert_eq!(render(&events), ["o1:a", "o2:b", "x3:0:false", "c4"]);
    // The dropped notification arriving late is a duplicate.
    assert_eq!(log.on_event(out(2, "b"), &mut events), Repair::None);
    assert_eq!(events.len(), 4);
}

#[test]
fn unordered_server_gets_a_grace_period_before_the_read() {
    let mut log = started(false);
    let mut events = Vec::new();
    log.on_event(out(1, "a"), &mut events);
    assert_eq!(
        log.on_event(out(3, "c"), &mut events),
        Repair::ArmGrace { token: 1 }
    );
    assert_eq!(
        log.on_event(out(4, "d"), &mut events),
        Repair::None,
        "timer already armed"
    );
    assert_eq!(
        log.on_event(out(2, "b"), &mut events),
        Repair::None,
        "reordering healed"
    );
    assert_eq!(log.on_grace_expired(1, &mut events), Repair::None);
    assert_eq!(render(&events), ["o1:a", "o2:b", "o3:c", "o4:d"]);

    assert_eq!(
        log.on_event(out(6, "f"), &mut events),
        Repair::ArmGrace { token: 4 }
    );
    assert_eq!(
        log.on_grace_expired(4, &mut events),
        Repair::Read { after_seq: 4 }
    );
}

#[test]
fn legacy_exit_is_held_for_one_verdict_read() {
    let mut log = started(true);
    let mut events = Vec::new();
    log.on_event(out(1, "a"), &mut events);
    assert_eq!(
        log.on_event(exited(2, 1, None), &mut events),
        Repair::Read { after_seq: 1 }
    );
    assert_eq!(log.on_event(closed(3), &mut events), Repair::None);
    assert_eq!(render(&events), ["o1:a"], "no exit without its verdict");
    let repair = read_into(
        &mut log,
        read(vec![chunk(1, "a")], 4, Some((1, true)), true),
        &mut events,
    );
    assert_eq!(repair, Repair::None);
    assert_eq!(render(&events), ["o1:a", "x2:1:true", "c3"]);
}

#[test]
fn read_rebuilds_a_missing_exit_and_close() {
    let mut log = started(true);
    let mut events = Vec::new();
    log.on_event(out(1, "a"), &mut events);
    log.begin_resume();
    let repair = read_into(
        &mut log,
        read(
            vec![chunk(2, "b"), chunk(4, "late")],
            6,
            Some((3, true)),
            true,
        ),
        &mut events,
    );
    assert_eq!(repair, Repair::None);
    assert_eq!(
        render(&events),
        ["o1:a", "o2:b", "x3:3:true", "o4:late", "c5"]
    );
}

#[test]
fn evicted_output_becomes_one_gap_with_exact_bytes() {
    let mut log = started(true);
    let mut events = Vec::new();
    log.on_event(out(1, "aaaa"), &mut events);
    assert_eq!(
        log.on_event(out(6, "f"), &mut events),
        Repair::Read { after_seq: 1 }
    );
    let mut result = read(
        vec![chunk(4, "dd"), chunk(5, "ee"), chunk(6, "f")],
        7,
        None,
        false,
    );
    // seqs 1 (4 bytes, delivered), 2 and 3 (3 bytes each) were evicted
    result.evicted_chunks = Some(3);
    result.evicted_bytes = Some(10);
    assert_eq!(read_into(&mut log, result, &mut events), Repair::None);
    assert_eq!(
        render(&events),
        ["o1:aaaa", "g2-3:6", "o4:dd", "o5:ee", "o6:f"]
    );
}

#[test]
fn held_events_inside_the_evicted_range_are_kept_and_counted() {
    let mut log = started(true);
    let mut events = Vec::new();
    log.on_event(out(1, "a"), &mut events);
    assert_eq!(
        log.on_event(out(4, "dddd"), &mut events),
        Repair::Read { after_seq: 1 }
    );
    log.on_event(out(5, "e"), &mut events);
    // server retains only from seq 6; seqs 1..=5 evicted: 1 + 2 + 3 + 4 + 1 = 11 bytes
    let mut result = read(vec![chunk(6, "ffffff")], 9, Some((0, false)), true);
    result.evicted_bytes = Some(11);
    assert_eq!(read_into(&mut log, result, &mut events), Repair::None);
    assert_eq!(
        render(&events),
        [
            "o1:a",
            "g2-3:5",
            "o4:dddd",
            "o5:e",
            "o6:ffffff",
            "x7:0:false",
            "c8"
        ]
    );
}

#[test]
fn servers_without_eviction_counters_report_unknown_bytes() {
    let mut log = started(true);
    let mut events = Vec::new();
    log.on_event(out(1, "a"), &mut events);
    log.on_event(closed(5), &mut events);
    read_into(
        &mut log,
        read(vec![], 6, Some((2, false)), true),
        &mut events,
    );
    assert_eq!(render(&events), ["o1:a", "g2-3:0", "x4:2:false", "c5"]);
}

#[test]
fn a_full_reorder_buffer_sheds_the_oldest_and_repairs() {
    let mut log = started(true);
    let mut events = Vec::new();
    log.on_event(out(1, "a"), &mut events);
    assert_eq!(
        log.on_event(out(3, "x"), &mut events),
        Repair::Read { after_seq: 1 }
    );
    for seq in 4..=(3 + PER_PROCESS.events as u64) {
        assert_eq!(log.on_event(out(seq, "x"), &mut events), Repair::None);
    }
    assert_eq!(log.pending.len(), PER_PROCESS.events, "bounded");
    assert_eq!(log.shed_up_to, Some(3));
    // The read was taken before seq 3 reached the server's log: it does not cover the shed
    // event, so one more read follows.
    let repair = read_into(
        &mut log,
        read(vec![chunk(2, "b")], 3, None, false),
        &mut events,
    );
    assert_eq!(repair, Repair::Read { after_seq: 2 });
    let repair = read_into(
        &mut log,
        read(vec![chunk(3, "x")], 4, None, false),
        &mut events,
    );
    assert_eq!(repair, Repair::None);
    assert_eq!(log.last_seq(), 3 + PER_PROCESS.events as u64);
    assert_eq!(events.len(), 3 + PER_PROCESS.events);
}

#[test]
fn overflow_before_the_start_is_answered_fails_only_this_process() {
    let mut log = OrderedLog::new(true);
    let mut events = Vec::new();
    for seq in 2..=(2 + PER_PROCESS.events as u64) {
        log.on_event(out(seq, "x"), &mut events);
    }
    assert_eq!(render(&events), ["F"]);
    assert!(log.is_terminal());
}

#[test]
fn repairs_wait_for_the_start_response() {
    let mut log = OrderedLog::new(true);
    let mut events = Vec::new();
    assert_eq!(log.on_event(out(2, "b"), &mut events), Repair::None);
    assert_eq!(log.on_started(&mut events), Repair::Read { after_seq: 0 });
}

#[test]
fn notifications_during_a_resume_read_cost_no_extra_read() {
    let mut log = started(true);
    let mut events = Vec::new();
    log.on_event(out(1, "a"), &mut events);
    assert_eq!(log.begin_resume(), Some(1));
    assert_eq!(log.on_event(out(5, "e"), &mut events), Repair::None);
    let result = read(
        vec![chunk(2, "b"), chunk(3, "c"), chunk(4, "d")],
        5,
        None,
        false,
    );
    assert_eq!(read_into(&mut log, result, &mut events), Repair::None);
    assert_eq!(render(&events), ["o1:a", "o2:b", "o3:c", "o4:d", "o5:e"]);
}

#[test]
fn a_contradictory_read_fails_the_process() {
    let mut log = started(true);
    let mut events = Vec::new();
    log.on_event(out(1, "a"), &mut events);
    log.begin_resume();
    read_into(
        &mut log,
        read(vec![chunk(2, "b")], 3, None, true),
        &mut events,
    );
    assert_eq!(render(&events), ["o1:a", "F"]);
}

#[test]
fn a_read_taken_before_a_legacy_exit_gives_it_no_verdict() {
    let mut log = started(true);
    let mut events = Vec::new();
    log.on_event(out(1, "a"), &mut events);
    assert_eq!(log.begin_resume(), Some(1));
    // The exit overtakes the answer of a read the server took while the child still ran.
    assert_eq!(log.on_event(exited(2, 1, None), &mut events), Repair::None);
    let repair = read_into(
        &mut log,
        read(vec![chunk(1, "a")], 2, None, false),
        &mut events,
    );
    assert_eq!(render(&events), ["o1:a"], "no exit without its verdict");
    assert_eq!(
        repair,
        Repair::Read { after_seq: 1 },
        "one more read for it"
    );
    let repair = read_into(
        &mut log,
        read(vec![], 3, Some((1, true)), false),
        &mut events,
    );
    assert_eq!(repair, Repair::None);
    assert_eq!(render(&events), ["o1:a", "x2:1:true"]);
}

#[test]
fn the_highest_seq_fails_the_process_instead_of_overflowing() {
    let mut log = started(true);
    let mut events = Vec::new();
    assert_eq!(
        log.on_event(out(2, "b"), &mut events),
        Repair::Read { after_seq: 0 }
    );
    read_into(&mut log, read(vec![], u64::MAX, None, false), &mut events);
    assert_eq!(
        log.last_seq(),
        u64::MAX - 1,
        "a hostile read can get this far"
    );
    assert_eq!(log.on_event(out(u64::MAX, "x"), &mut events), Repair::None);
    assert_eq!(render(&events).last().map(String::as_str), Some("F"));
    assert!(log.is_terminal());
}

#[test]
fn a_read_that_runs_past_a_received_close_fails_the_process() {
    // Found by the `client_inbound` fuzz target: `closed` at seq 3 arrives first, and
    // the repair read claims seqs up to u64::MAX − 1 without a close.
    let mut log = started(true);
    let mut events = Vec::new();
    assert_eq!(
        log.on_event(closed(3), &mut events),
        Repair::Read { after_seq: 0 }
    );
    read_into(&mut log, read(vec![], u64::MAX, None, false), &mut events);
    let rendered = render(&events);
    assert_eq!(
        rendered.last().map(String::as_str),
        Some("F"),
        "{rendered:?}"
    );
    assert!(
        !rendered.iter().any(|e| e.starts_with('c')),
        "nothing may follow a close, and a close contradicted by the read is not delivered: {rendered:?}"
    );
}
