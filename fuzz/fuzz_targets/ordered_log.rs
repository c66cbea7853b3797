//! The client's ordered log (`ordered.rs` + `rebuild.rs`) against the server's real event
//! log (`rexec_server::fuzzing::EventLog`), through a delivery channel that duplicates,
//! drops, reorders and delays notifications, answers repair reads late, and reconnects.
//!
//! The input is a scenario: server flavour (ordered notifications or not, eviction
//! counters or not, legacy exits), retention limits small enough to evict, and a list of
//! steps. After the steps the server finishes the process and the channel drains.
//!
//! Oracle: the delivered stream covers seqs 1..=close once each, in order; every `Output`
//! is the server's chunk at that seq; every `Gap` covers only output the server evicted
//! (or an exit whose notification was lost, rebuilt at the highest free seq as `rebuild.rs`
//! documents) and, with eviction counters, the gaps' bytes add up exactly to the output
//! not delivered; one `Exited` with the server's code and verdict; `Closed` last; at most
//! one repair read in flight; nothing `Failed`; the process completes once the channel
//! drains.
//!
//! Then a subscriber that lagged: it saw a prefix of the delivered stream and finds a later
//! event next in the replay history, so it rebuilds the events between from one server read
//! (`fill_lag`, the same `rebuild` the ordered log uses). Oracle: the same seqs as the
//! delivered stream there, the server's output where it is retained, the delivered exit,
//! gaps only over output the server let go, and exactly the delivered stream's bytes.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use rexec_client::ProcessEvent;
use rexec_client::fuzzing::{History, Incoming, OrderedLog, Repair, fill_lag};
use rexec_protocol::process::{OutputStream, ReadResult};
use rexec_protocol::sandbox::{DenialRule, SandboxDenial};
use rexec_server::fuzzing::EventLog;
use std::collections::{BTreeSet, VecDeque};

#[derive(Arbitrary, Debug)]
struct Scenario {
    ordered_server: bool,
    eviction_counters: bool,
    legacy_exits: bool,
    retained_chunks: u8,
    retained_bytes: u8,
    exit_code: i8,
    steps: Vec<Step>,
    /// The lagging subscriber's last event seen and its next history entry, as indexes
    /// into the delivered stream.
    lag_from: u8,
    lag_to: u8,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Step {
    /// The child writes a chunk of `len % 64 + 1` bytes of `fill`.
    Output { stderr: bool, len: u8, fill: u8 },
    /// The child exits (once), denied by the sandbox or not.
    Exit { code: i8, denied: bool },
    /// Its streams end (once, after the exit).
    Close,
    /// The channel hands over the notification at this index (a reorder unless 0).
    Deliver(u8),
    /// The channel hands over a copy and keeps the original.
    Duplicate(u8),
    /// The channel loses it (recovered only by a later resume).
    Drop(u8),
    /// `process/start` is answered.
    Start,
    /// The server takes its snapshot for the pending repair read.
    ServeRead,
    /// The answered read reaches the client.
    ReadArrives,
    /// The oldest armed reorder-grace timer fires.
    Grace,
    /// The connection drops (whatever was in transit is lost) and the client resumes.
    Reconnect,
}

/// Notifications a client may receive before its start is answered, in this model; far
/// below the reorder buffer's bound, so an early overflow (which fails the process by
/// design) is not what the target explores.
const EVENTS_BEFORE_START: usize = 64;
/// Steps the drain may take before the process must be complete.
const DRAIN_STEPS: usize = 100_000;

fuzz_target!(|scenario: Scenario| {
    let mut world = World::new(&scenario);
    for &step in &scenario.steps {
        world.step(step);
    }
    world.drain(scenario.exit_code.into());
    world.check_complete();
    world.check_lag(scenario.lag_from, scenario.lag_to);
});

/// What the server's log holds at each seq (index seq − 1).
#[derive(Debug, Clone, PartialEq)]
enum Logged {
    Output {
        stream: OutputStream,
        bytes: Bytes,
    },
    Exit {
        code: i32,
        denial: Option<SandboxDenial>,
    },
    Close,
}

enum PendingRead {
    Sent(u64),
    Answered(Box<ReadResult>),
}

struct World {
    ordered_server: bool,
    eviction_counters: bool,
    legacy_exits: bool,
    server: EventLog,
    logged: Vec<Logged>,
    channel: VecDeque<Incoming>,
    /// Notifications lost since the last resume.
    lost: bool,
    client: OrderedLog,
    started: bool,
    received: usize,
    read: Option<PendingRead>,
    graces: VecDeque<u64>,
    stream: Stream,
}

/// The delivered stream, checked event by event.
#[derive(Default)]
struct Stream {
    covered: u64,
    closed: bool,
    exits: Vec<(u64, i32, bool, Option<SandboxDenial>)>,
    output_seqs: BTreeSet<u64>,
    gap_seqs: BTreeSet<u64>,
    bytes_lost: u64,
    /// Output bytes delivered or reported lost: the ledger a repair read is applied with.
    ledger: u64,
    delivered: Vec<ProcessEvent>,
}

impl World {
    fn new(scenario: &Scenario) -> Self {
        let max_chunks = usize::from(scenario.retained_chunks % 8) + 1;
        // At least one whole chunk (64 bytes) always fits, as on the real server.
        let max_bytes = 64 + usize::from(scenario.retained_bytes);
        Self {
            ordered_server: scenario.ordered_server,
            eviction_counters: scenario.eviction_counters,
            legacy_exits: scenario.legacy_exits,
            server: EventLog::with_limits(max_bytes, max_chunks),
            logged: Vec::new(),
            channel: VecDeque::new(),
            lost: false,
            client: OrderedLog::new(scenario.ordered_server),
            started: false,
            received: 0,
            read: None,
            graces: VecDeque::new(),
            stream: Stream::default(),
        }
    }

    fn exited(&self) -> bool {
        self.logged.iter().any(|l| matches!(l, Logged::Exit { .. }))
    }

    fn closed(&self) -> bool {
        self.logged.last() == Some(&Logged::Close)
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::Output { stderr, len, fill } => {
                let stream = if stderr {
                    OutputStream::Stderr
                } else {
                    OutputStream::Stdout
                };
                let bytes = Bytes::from(vec![fill; usize::from(len % 64) + 1]);
                self.output(stream, bytes);
            }
            Step::Exit { code, denied } => self.exit(code.into(), denied),
            Step::Close => self.close(),
            Step::Deliver(index) => {
                if let Some(event) = self.take(index) {
                    self.receive(event);
                }
            }
            Step::Duplicate(index) => {
                if !self.channel.is_empty() {
                    let index = usize::from(index) % self.channel.len();
                    self.receive(self.channel[index].clone());
                }
            }
            Step::Drop(index) => {
                if self.take(index).is_some() {
                    self.lost = true;
                }
            }
            Step::Start => self.start(),
            Step::ServeRead => self.serve_read(),
            Step::ReadArrives => self.read_arrives(),
            Step::Grace => self.fire_grace(),
            Step::Reconnect => self.reconnect(),
        }
    }

    fn output(&mut self, stream: OutputStream, bytes: Bytes) {
        if self.closed() {
            return;
        }
        let seq = self.server.push_output(stream, bytes.clone());
        self.logged.push(Logged::Output {
            stream,
            bytes: bytes.clone(),
        });
        assert_eq!(seq, self.logged.len() as u64);
        let event = ProcessEvent::Output { seq, stream, bytes };
        self.channel.push_back(event.into());
    }

    fn exit(&mut self, code: i32, denied: bool) {
        if self.exited() {
            return;
        }
        let denial = denied.then(|| SandboxDenial {
            rule: DenialRule::FileSystem,
            exact: false,
            detail: "/etc/motd".to_owned(),
        });
        let record = self.server.record_exit(code, denial.clone());
        self.logged.push(Logged::Exit {
            code,
            denial: denial.clone(),
        });
        assert_eq!(record.seq, self.logged.len() as u64);
        let sandbox_denied = !self.legacy_exits && denial.is_some();
        let denial = denial.filter(|_| !self.legacy_exits).map(Box::new);
        let event = ProcessEvent::Exited {
            seq: record.seq,
            code,
            sandbox_denied,
            denial,
        };
        self.channel.push_back(Incoming {
            event,
            awaits_verdict: self.legacy_exits,
        });
    }

    fn close(&mut self) {
        if !self.exited() || self.closed() {
            return;
        }
        let seq = self.server.record_closed();
        self.logged.push(Logged::Close);
        assert_eq!(seq, self.logged.len() as u64);
        self.channel.push_back(ProcessEvent::Closed { seq }.into());
    }

    fn take(&mut self, index: u8) -> Option<Incoming> {
        if self.channel.is_empty() {
            return None;
        }
        let index = usize::from(index) % self.channel.len();
        self.channel.remove(index)
    }

    fn receive(&mut self, event: Incoming) {
        if !self.started && self.received >= EVENTS_BEFORE_START {
            self.start();
        }
        self.received += 1;
        let mut out = Vec::new();
        let repair = self.client.on_event(event, &mut out);
        self.after(out, repair);
    }

    fn start(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        let mut out = Vec::new();
        let repair = self.client.on_started(&mut out);
        self.after(out, repair);
    }

    /// `process/read {afterSeq, waitMs: 0}` as the server answers it at this instant.
    fn serve_read(&mut self) {
        let Some(PendingRead::Sent(after_seq)) = self.read else {
            return;
        };
        let mut result = self.server.read(after_seq, None).result;
        if !self.eviction_counters {
            result.evicted_chunks = None;
            result.evicted_bytes = None;
        }
        self.read = Some(PendingRead::Answered(Box::new(result)));
    }

    fn read_arrives(&mut self) {
        let answered = |read: &mut PendingRead| matches!(read, PendingRead::Answered(_));
        let Some(PendingRead::Answered(result)) = self.read.take_if(answered) else {
            return;
        };
        let mut out = Vec::new();
        let repair = self.client.on_read(*result, self.stream.ledger, &mut out);
        self.after(out, repair);
    }

    fn fire_grace(&mut self) {
        if let Some(token) = self.graces.pop_front() {
            let mut out = Vec::new();
            let repair = self.client.on_grace_expired(token, &mut out);
            self.after(out, repair);
        }
    }

    /// The connection ends: what was in transit is gone, a pending read's answer never
    /// comes; the resume reads once from the last delivered seq.
    fn reconnect(&mut self) {
        if !self.started {
            return; // an unanswered start is the client's to terminate, not to repair
        }
        self.channel.clear();
        self.lost = false;
        if self.read.take().is_some() {
            self.client.on_read_lost();
        }
        if let Some(after_seq) = self.client.begin_resume() {
            assert_eq!(
                after_seq, self.stream.covered,
                "resume reads from the last seq"
            );
            self.read = Some(PendingRead::Sent(after_seq));
        }
    }

    /// The process finishes and everything in transit arrives, in order; a resume
    /// follows only if something was lost (the only way a real connection loses frames).
    fn drain(&mut self, exit_code: i32) {
        self.exit(exit_code, false);
        self.close();
        self.start();
        for _ in 0..DRAIN_STEPS {
            if !self.channel.is_empty() {
                self.step(Step::Deliver(0));
            } else if matches!(self.read, Some(PendingRead::Sent(_))) {
                self.serve_read();
            } else if self.read.is_some() {
                self.read_arrives();
            } else if !self.graces.is_empty() {
                self.fire_grace();
            } else if !self.client.is_terminal() && self.lost {
                self.reconnect();
            } else {
                return;
            }
        }
        panic!("the channel did not drain in {DRAIN_STEPS} steps");
    }

    fn after(&mut self, out: Vec<ProcessEvent>, repair: Repair) {
        for event in out {
            self.check_event(event);
        }
        if self.eviction_counters {
            let undelivered: u64 = self
                .output_seqs_up_to(self.stream.covered)
                .filter(|seq| !self.stream.output_seqs.contains(seq))
                .map(|seq| self.output_len(seq))
                .sum();
            assert_eq!(
                self.stream.bytes_lost, undelivered,
                "gaps report {} bytes lost, the server lost {undelivered}",
                self.stream.bytes_lost
            );
        }
        match repair {
            Repair::None => {}
            Repair::Read { after_seq } => {
                assert!(self.started, "a repair read before the start was answered");
                assert!(
                    self.read.is_none(),
                    "a second repair read while one is in flight"
                );
                assert_eq!(after_seq, self.stream.covered, "reads from the last seq");
                self.read = Some(PendingRead::Sent(after_seq));
            }
            Repair::ArmGrace { token } => {
                assert!(!self.ordered_server, "grace armed for an ordered server");
                self.graces.push_back(token);
            }
        }
    }

    fn check_lag(&self, from: u8, to: u8) {
        let delivered = &self.stream.delivered;
        if delivered.len() < 2 {
            return;
        }
        let from = usize::from(from) % (delivered.len() - 1);
        let to = from + 1 + usize::from(to) % (delivered.len() - 1 - from);
        let mut history = History::default();
        for event in delivered {
            history.push_keeping(event.clone(), None);
        }
        let Some(next) = history.get(to as u64) else {
            return; // trimmed from the history: nothing would be next there
        };
        let ledger = |events: &[ProcessEvent]| -> u64 { events.iter().map(ledger_bytes).sum() };
        let after_seq = from
            .checked_sub(1)
            .and_then(|last| delivered[last].seq_range())
            .map_or(0, |(_, last)| last);
        let window = history.lag_window(after_seq, ledger(&delivered[..from]), next);
        let mut read = self.server.read(after_seq, None).result;
        if !self.eviction_counters {
            read.evicted_chunks = None;
            read.evicted_bytes = None;
        }
        let rebuilt: Vec<_> = fill_lag(&window, Some(read)).into();
        let mut covered = after_seq;
        for event in &rebuilt {
            let (first, last) = event.seq_range().expect("a sequenced event");
            assert_eq!(first, covered + 1, "lag rebuild: {event:?} out of order");
            covered = last;
            match event {
                ProcessEvent::Output { seq, stream, bytes } => {
                    let expected = Logged::Output {
                        stream: *stream,
                        bytes: bytes.clone(),
                    };
                    assert_eq!(self.logged(*seq), &expected, "lag rebuild: output at {seq}");
                }
                ProcessEvent::Exited { .. } => assert!(
                    delivered.contains(event),
                    "lag rebuild: {event:?} is not the exit delivered"
                ),
                ProcessEvent::Gap { seqs, .. } => {
                    for seq in seqs.clone() {
                        assert!(!self.retained(seq), "lag rebuild: gap over retained {seq}");
                    }
                }
                other => panic!("lag rebuild: {other:?} inside the window"),
            }
        }
        let until = delivered[to].seq_range().map_or(0, |(first, _)| first - 1);
        assert_eq!(
            covered, until,
            "lag rebuild: {rebuilt:?} ends short of the window"
        );
        assert_eq!(
            ledger(&rebuilt),
            ledger(&delivered[from..to]),
            "lag rebuild: {rebuilt:?} accounts for other bytes than {:?}",
            &delivered[from..to]
        );
    }

    fn output_seqs_up_to(&self, last: u64) -> impl Iterator<Item = u64> + '_ {
        (1..=last).filter(|&seq| matches!(self.logged(seq), Logged::Output { .. }))
    }

    fn output_len(&self, seq: u64) -> u64 {
        match self.logged(seq) {
            Logged::Output { bytes, .. } => bytes.len() as u64,
            _ => 0,
        }
    }

    fn logged(&self, seq: u64) -> &Logged {
        usize::try_from(seq)
            .ok()
            .and_then(|seq| self.logged.get(seq.checked_sub(1)?))
            .unwrap_or_else(|| panic!("seq {seq} delivered, the server has {}", self.logged.len()))
    }

    fn retained(&self, seq: u64) -> bool {
        self.server.retained().any(|chunk| chunk.seq == seq)
    }

    fn check_event(&mut self, event: ProcessEvent) {
        assert!(!self.stream.closed, "{event:?} after Closed");
        let (first, last) = event
            .seq_range()
            .unwrap_or_else(|| panic!("the stream failed: {event:?}"));
        assert_eq!(first, self.stream.covered + 1, "{event:?} out of order");
        assert!(first <= last);
        self.stream.covered = last;
        self.stream.ledger += ledger_bytes(&event);
        self.stream.delivered.push(event.clone());
        match event {
            ProcessEvent::Output { seq, stream, bytes } => {
                let expected = Logged::Output { stream, bytes };
                assert_eq!(self.logged(seq), &expected, "output at seq {seq}");
                self.stream.output_seqs.insert(seq);
            }
            ProcessEvent::Exited {
                seq,
                code,
                sandbox_denied,
                denial,
            } => {
                let logged = self.logged(seq).clone();
                match logged {
                    Logged::Exit { .. } => {}
                    // Rebuilt in the highest free seq: its own seq was lost with the
                    // output evicted around it (checked in `check_complete`).
                    Logged::Output { .. } => {
                        assert!(!self.retained(seq), "exit placed on retained output {seq}")
                    }
                    Logged::Close => panic!("exit delivered at the close's seq {seq}"),
                }
                self.stream
                    .exits
                    .push((seq, code, sandbox_denied, denial.map(|d| *d)));
            }
            ProcessEvent::Closed { seq } => {
                assert_eq!(self.logged(seq), &Logged::Close, "closed at seq {seq}");
                self.stream.closed = true;
            }
            ProcessEvent::Gap { seqs, bytes_lost } => {
                if !self.eviction_counters {
                    assert_eq!(bytes_lost, 0, "bytes lost without eviction counters");
                }
                self.stream.bytes_lost += bytes_lost;
                for seq in seqs {
                    match self.logged(seq) {
                        Logged::Output { .. } => {
                            assert!(!self.retained(seq), "gap over retained output {seq}")
                        }
                        Logged::Exit { .. } => {}
                        Logged::Close => panic!("gap over the close at seq {seq}"),
                    }
                    self.stream.gap_seqs.insert(seq);
                }
            }
            ProcessEvent::Failed { .. } => unreachable!("seq_range is None"),
        }
    }

    fn check_complete(&self) {
        assert!(
            self.client.is_closed() && self.stream.closed,
            "not complete after the drain: covered {} of {}",
            self.stream.covered,
            self.logged.len()
        );
        assert_eq!(self.stream.covered, self.logged.len() as u64);
        let [(seq, code, sandbox_denied, denial)] = self.stream.exits.as_slice() else {
            panic!("exits delivered: {:?}", self.stream.exits);
        };
        let (exit_seq, logged) = self
            .logged
            .iter()
            .enumerate()
            .find_map(|(i, l)| match l {
                Logged::Exit { code, denial } => Some((i as u64 + 1, (code, denial))),
                _ => None,
            })
            .expect("the server exited");
        assert_eq!((code, denial), logged, "exit status");
        assert_eq!(*sandbox_denied, logged.1.is_some(), "sandbox verdict");
        if *seq != exit_seq {
            assert!(
                self.stream.gap_seqs.contains(&exit_seq) && *seq > exit_seq,
                "exit delivered at {seq}, the server's is at {exit_seq}, not in a gap"
            );
        }
    }
}

/// Output bytes an event accounts for, delivered or lost.
fn ledger_bytes(event: &ProcessEvent) -> u64 {
    match event {
        ProcessEvent::Output { bytes, .. } => bytes.len() as u64,
        ProcessEvent::Gap { bytes_lost, .. } => *bytes_lost,
        _ => 0,
    }
}
