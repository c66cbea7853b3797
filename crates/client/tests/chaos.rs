//! The chaos soak: four clients run processes with known output — large floods, mixed
//! stdout/stderr, slow trickles, stdin round trips, one-shots — concurrently, in rounds,
//! through a proxy that cuts connections, stalls one side (longer than the server's ping
//! interval, so its dead-peer detection and the client's resume both run) and delays
//! frames at random. At the end every byte arrived once and in order or inside an exactly
//! counted `Gap`, every process completed with its exit code, and the server's tasks and
//! descriptors are back to where they started.
//!
//! Seeded: the seed is printed; `REXEC_CHAOS_SEED=N` repeats its fault schedule (the
//! interleaving with the real sockets still varies from run to run).

mod support;

use rexec_client::{Client, ClientError, ClientOptions, Process, ProcessSpec};
use rexec_server::ServerConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::expect::{Checker, Delivered, Expected};
use support::leaks::{Resources, settle};
use support::proxy::{Fault, Proxy, Verdict};
use support::rng::{Rng, seed_from_env};
use support::{PERL_LINE, TestServer, lines, perl, sh};
use tokio::task::JoinSet;
use tokio::time::Instant;

const CLIENTS: usize = 4;
/// How long faults are injected; the round running when it ends finishes without them.
const CHAOS: Duration = Duration::from_secs(12);
/// The whole soak, faults, drain and leak check included, fails beyond this.
const BOUND: Duration = Duration::from_secs(55);
const PING_INTERVAL: Duration = Duration::from_millis(400);
/// Detached sessions are kept this long: longer than the client's resume window plus the
/// time the server may take to detach a stalled peer before the client notices anything.
const SESSION_TTL: Duration = Duration::from_secs(4);
const RESUME_WINDOW: Duration = Duration::from_millis(2500);
/// Closed processes stay readable this long. Its clock starts when the process closes,
/// which can be before an outage begins (its last notifications queued behind a stall of
/// up to 1.2 s, the server's detection taking up to two ping intervals), and the resume
/// that repairs it can take the whole resume window after that: 4.5 s in all, plus a
/// loaded machine's delays. Shorter, and a repair read meets a forgotten process
/// ("unknown process id").
const CLOSED_RETENTION: Duration = Duration::from_secs(10);

/// Numbered lines like [`support::line`], tagged with one letter so stdout and stderr
/// differ: 47 bytes each.
fn tagged(tag: char, first: u64, last: u64) -> Vec<u8> {
    (first..=last)
        .flat_map(|n| format!("{tag}{n:08} abcdefghijklmnopqrstuvwxyz0123456789\n").into_bytes())
        .collect()
}

const PERL_TAGGED: &str = r#"select(STDERR); $|=1; select(STDOUT); $|=1;
sub tagged { sprintf("%s%08d abcdefghijklmnopqrstuvwxyz0123456789\n", $_[0], $_[1]) } "#;

#[derive(Default)]
struct Tally {
    processes: AtomicU64,
    bytes: AtomicU64,
    gaps: AtomicU64,
    bytes_lost: AtomicU64,
    /// Starts answered `Disconnected` (the client terminated them) and sent again.
    restarts: AtomicU64,
    cuts: AtomicU64,
    server_stalls: AtomicU64,
    client_stalls: AtomicU64,
    delays: AtomicU64,
}

impl Tally {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn delivered(&self, d: Delivered) {
        Self::add(&self.processes, 1);
        Self::add(&self.bytes, d.bytes);
        Self::add(&self.gaps, d.gaps);
        Self::add(&self.bytes_lost, d.bytes_lost);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_soak_loses_duplicates_and_leaks_nothing() {
    let seed = seed_from_env("REXEC_CHAOS_SEED");
    let started = Instant::now();
    tokio::time::timeout(BOUND, soak(seed))
        .await
        .unwrap_or_else(|_| panic!("seed {seed}: the soak did not finish within {BOUND:?}"));
    println!("seed {seed}: passed in {:?}", started.elapsed());
}

async fn soak(seed: u64) {
    let mut rng = Rng::new(seed);
    let server = TestServer::with_config(ServerConfig {
        session_ttl: SESSION_TTL,
        closed_retention: CLOSED_RETENTION,
        ping_interval: PING_INTERVAL,
        ..ServerConfig::default()
    })
    .await;
    let proxy = Arc::new(Proxy::start(&server.url).await);
    // The first child spawned sets up tokio's SIGCHLD handling for good: not a leak.
    tokio::process::Command::new("true")
        .status()
        .await
        .expect("spawn true");
    let baseline = Resources::now();
    let tally = Arc::new(Tally::default());
    // Connected before the faults start: a first connect is not resumed, it fails.
    let mut connected = Vec::new();
    for _ in 0..CLIENTS {
        connected.push(connect(&proxy.url).await);
    }
    let chaos_end = Instant::now() + CHAOS;
    set_frame_faults(&proxy, rng.fork(), Arc::clone(&tally));
    let driver = tokio::spawn(drive_faults(
        Arc::clone(&proxy),
        rng.fork(),
        Arc::clone(&tally),
        chaos_end,
    ));

    let mut clients = JoinSet::new();
    for (index, client) in connected.into_iter().enumerate() {
        let tally = Arc::clone(&tally);
        clients.spawn(async move {
            let mut round = 0;
            while Instant::now() < chaos_end {
                run_round(&client, index, round, &tally).await;
                round += 1;
            }
            client.close().await;
            round
        });
    }
    let mut rounds = 0;
    while let Some(done) = clients.join_next().await {
        rounds += done.unwrap_or_else(|err| panic!("seed {seed}: a client failed: {err}"));
    }
    driver.await.expect("fault driver");
    proxy.set_rule(|_| Verdict::Pass);
    let stats = proxy.stats();
    println!(
        "seed {seed}: {CLIENTS} clients, {rounds} rounds, {} processes, {} bytes delivered, \
         {} gaps ({} bytes lost, all accounted); faults: {} cuts, {} server stalls, \
         {} client stalls, {} delays; {} connections ({} ended by the server, {} of them after a stall), \
         {} resumes, \
         {} reads, {} restarted starts",
        Tally::get(&tally.processes),
        Tally::get(&tally.bytes),
        Tally::get(&tally.gaps),
        Tally::get(&tally.bytes_lost),
        Tally::get(&tally.cuts),
        Tally::get(&tally.server_stalls),
        Tally::get(&tally.client_stalls),
        Tally::get(&tally.delays),
        stats.connections,
        stats.server_hangups,
        stats.hangups_after_stall,
        stats.results.get("initialize").copied().unwrap_or(0) - CLIENTS,
        stats.requests.get("process/read").copied().unwrap_or(0),
        Tally::get(&tally.restarts),
    );

    // Every client closed: once the sessions expire and the closed processes are forgotten
    // the server holds nothing.
    let settled = settle(
        &baseline,
        CLOSED_RETENTION.max(SESSION_TTL) + Duration::from_secs(7),
    )
    .await
    .unwrap_or_else(|leak| panic!("seed {seed}: leaked: {leak}"));
    assert!(proxy.live_connections().is_empty());
    println!(
        "seed {seed}: settled at {} descriptors, {} tasks (baseline {}, {})",
        settled.fds.len(),
        settled.tasks,
        baseline.fds.len(),
        baseline.tasks
    );
}

async fn connect(url: &str) -> Client {
    let options = ClientOptions {
        resume_window: RESUME_WINDOW,
        ..support::options()
    };
    support::connect_with(url, options).await
}

/// Per server→client frame: now and then a cut or, for a notification, a delay that
/// later frames overtake. Responses are not overtaken: a start answer held behind a 1 MiB
/// flood of its own output fails that process by design, and one WebSocket cannot reorder.
fn set_frame_faults(proxy: &Proxy, rng: Rng, tally: Arc<Tally>) {
    let rng = Mutex::new(rng);
    proxy.set_rule(move |frame| {
        let mut rng = rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if frame.method.is_some() && rng.chance(20) {
            Tally::add(&tally.delays, 1);
            Verdict::Delay(Duration::from_millis(rng.between(1, 150)))
        } else if rng.chance(1) {
            Tally::add(&tally.cuts, 1);
            if rng.chance(500) {
                Verdict::Cut
            } else {
                // The server keeps its side a while: resumes meanwhile get -32010.
                Verdict::CutClientSide(Duration::from_millis(rng.between(50, 600)))
            }
        } else {
            Verdict::Pass
        }
    });
}

/// Until `end`, every 100–600 ms: cut or reset a random connection, or stall one of its sides
/// (from a few milliseconds, a delay in order, to three ping intervals).
async fn drive_faults(proxy: Arc<Proxy>, mut rng: Rng, tally: Arc<Tally>, end: Instant) {
    loop {
        let next = Instant::now() + Duration::from_millis(rng.between(100, 600));
        if next >= end {
            return;
        }
        tokio::time::sleep_until(next).await;
        let live = proxy.live_connections();
        if live.is_empty() {
            continue;
        }
        let id = live[rng.between(0, live.len() as u64 - 1) as usize];
        let fault = match rng.between(0, 11) {
            0..=2 => {
                Tally::add(&tally.cuts, 1);
                Fault::Cut
            }
            // A reset: the client's next write fails before its reader hears of it.
            3 => {
                Tally::add(&tally.cuts, 1);
                Fault::ResetClient
            }
            4..=7 => {
                Tally::add(&tally.server_stalls, 1);
                // Up to three ping intervals.
                Fault::StallServer(Duration::from_millis(rng.between(50, 1200)))
            }
            8..=9 => {
                Tally::add(&tally.client_stalls, 1);
                Fault::StallClient(Duration::from_millis(rng.between(50, 800)))
            }
            // A short stall either way is a delay that keeps the frames' order.
            10 => {
                Tally::add(&tally.delays, 1);
                Fault::StallServer(Duration::from_millis(rng.between(5, 120)))
            }
            _ => {
                Tally::add(&tally.delays, 1);
                Fault::StallClient(Duration::from_millis(rng.between(5, 120)))
            }
        };
        proxy.inject(id, fault);
    }
}

/// One round of one client: every kind of process at once, each checked.
async fn run_round(client: &Client, index: usize, round: u64, tally: &Arc<Tally>) {
    let tag = format!("client {index} round {round}");
    let mut work = JoinSet::new();
    let flood_lines = 40_000;
    work.spawn(streamed(
        client.clone(),
        format!("{tag} flood"),
        perl(&format!(
            "{PERL_LINE} for my $i (1..{flood_lines}) {{ print line($i) }}"
        ))
        // Alternate rounds read the flood through a lossless stream.
        .lossless(round % 2 == 1),
        Expected {
            stdout: lines(1, flood_lines),
            stderr: Vec::new(),
            exit_code: 0,
        },
        Arc::clone(tally),
    ));
    work.spawn(streamed(
        client.clone(),
        format!("{tag} mixed"),
        perl(&format!(
            "{PERL_TAGGED} for my $i (1..3000) {{ print STDOUT tagged('o', $i); \
             print STDERR tagged('e', $i / 3) if $i % 3 == 0 }} exit 3"
        )),
        Expected {
            stdout: tagged('o', 1, 3000),
            stderr: tagged('e', 1, 1000),
            exit_code: 3,
        },
        Arc::clone(tally),
    ));
    work.spawn(streamed(
        client.clone(),
        format!("{tag} trickle"),
        perl(&format!(
            "{PERL_TAGGED} for my $i (1..60) {{ print STDERR tagged('t', $i); \
             select(undef, undef, undef, 0.025) }} exit 5"
        )),
        Expected {
            stdout: Vec::new(),
            stderr: tagged('t', 1, 60),
            exit_code: 5,
        },
        Arc::clone(tally),
    ));
    work.spawn(stdin_round_trip(
        client.clone(),
        format!("{tag} stdin"),
        Arc::clone(tally),
    ));
    for shot in 0..3 {
        let code = (index as i32 + shot) % 4;
        let name = format!("{tag} one-shot {shot}");
        let script = format!("echo out {index} {round} {shot}; echo err {shot} >&2; exit {code}");
        let expected = Expected {
            stdout: format!("out {index} {round} {shot}\n").into_bytes(),
            stderr: format!("err {shot}\n").into_bytes(),
            exit_code: code,
        };
        work.spawn(one_shot(
            client.clone(),
            name,
            sh(&script),
            expected,
            Arc::clone(tally),
        ));
    }
    let input = lines(1, 300);
    work.spawn(one_shot(
        client.clone(),
        format!("{tag} one-shot with stdin"),
        ProcessSpec::new(["cat"])
            .env("PATH", support::PATH)
            .stdin(input.clone()),
        Expected {
            stdout: input,
            stderr: Vec::new(),
            exit_code: 0,
        },
        Arc::clone(tally),
    ));
    while let Some(done) = work.join_next().await {
        if let Err(err) = done {
            std::panic::resume_unwind(err.into_panic());
        }
    }
}

/// Start `spec`, sending it again while the answer to the start is lost in a cut (the
/// client then terminates that attempt: it never ran unobserved).
async fn start(client: &Client, name: &str, spec: &ProcessSpec, tally: &Tally) -> Process {
    let began = Instant::now();
    let mut lost = Vec::new();
    for _ in 0..20 {
        match client.start(spec.clone()).await {
            Ok(process) => return process,
            Err(ClientError::Disconnected(why)) => {
                Tally::add(&tally.restarts, 1);
                lost.push(format!("{:?}: {why}", began.elapsed()));
            }
            Err(err) => panic!("{name}: start failed: {err}"),
        }
    }
    panic!("{name}: 20 starts in a row lost their answer: {lost:#?}");
}

/// Follow a process's events as they come and check them against `expected`; then its
/// completion's exit code.
async fn streamed(
    client: Client,
    name: String,
    spec: ProcessSpec,
    expected: Expected,
    tally: Arc<Tally>,
) {
    let process = start(&client, &name, &spec, &tally).await;
    let events = process.events();
    let delivered = check_events(&name, events, &expected).await;
    let done = process
        .wait()
        .await
        .unwrap_or_else(|err| panic!("{name}: wait: {err}"));
    assert_eq!(done.exit_code, expected.exit_code, "{name}: completion");
    tally.delivered(delivered);
}

async fn check_events(
    name: &str,
    mut events: rexec_client::EventStream,
    expected: &Expected,
) -> Delivered {
    let mut checker = Checker::new(name, expected);
    while let Some(event) = events.next().await {
        checker.event(&event).unwrap_or_else(|why| panic!("{why}"));
    }
    checker.finish().unwrap_or_else(|why| panic!("{why}"))
}

/// `cat` fed line by line with `Process::write` (each retried with its writeId across
/// cuts), then closed: it echoes every line exactly once.
async fn stdin_round_trip(client: Client, name: String, tally: Arc<Tally>) {
    const WRITES: u64 = 40;
    const PER_WRITE: u64 = 10;
    let spec = ProcessSpec::new(["cat"])
        .env("PATH", support::PATH)
        .pipe_stdin(true);
    let process = start(&client, &name, &spec, &tally).await;
    let expected = Expected {
        stdout: lines(1, WRITES * PER_WRITE),
        stderr: Vec::new(),
        exit_code: 0,
    };
    let events = process.events();
    let writer = {
        let process = process.clone();
        let name = name.clone();
        async move {
            for n in 0..WRITES {
                let chunk = lines(n * PER_WRITE + 1, (n + 1) * PER_WRITE);
                let status = process
                    .write(&chunk)
                    .await
                    .unwrap_or_else(|err| panic!("{name}: write {n}: {err}"));
                assert_eq!(
                    status,
                    rexec_client::WriteStatus::Accepted,
                    "{name}: write {n}"
                );
            }
            process
                .close_stdin()
                .await
                .unwrap_or_else(|err| panic!("{name}: close stdin: {err}"));
        }
    };
    let (delivered, ()) = tokio::join!(check_events(&name, events, &expected), writer);
    let done = process
        .wait()
        .await
        .unwrap_or_else(|err| panic!("{name}: wait: {err}"));
    assert_eq!(done.exit_code, 0, "{name}: completion");
    tally.delivered(delivered);
}

/// `Client::run`: the completion alone must hold the whole output (it is small).
async fn one_shot(
    client: Client,
    name: String,
    spec: ProcessSpec,
    expected: Expected,
    tally: Arc<Tally>,
) {
    let process = start(&client, &name, &spec, &tally).await;
    let done = process
        .wait()
        .await
        .unwrap_or_else(|err| panic!("{name}: wait: {err}"));
    assert!(done.gaps.is_empty(), "{name}: gaps {:?}", done.gaps);
    assert_eq!(done.omitted_bytes, 0, "{name}");
    assert!(
        done.stdout == expected.stdout && done.stderr == expected.stderr,
        "{name}: stdout {:?} stderr {:?}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(done.exit_code, expected.exit_code, "{name}");
    tally.delivered(Delivered {
        bytes: (done.stdout.len() + done.stderr.len()) as u64,
        ..Delivered::default()
    });
}
