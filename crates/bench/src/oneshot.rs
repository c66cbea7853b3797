//! The `oneshot` benchmark through the rexec client, in the method of codex PR #30273's
//! `remote_latency` A/B: one-shot `/usr/bin/true`, 30 measured after 5 warm-ups, 3 runs,
//! each figure the median of the per-run nearest-rank percentiles. Two arms differ only in
//! how a one-shot completes:
//!
//! - `read`, the old way: wait for `closed`, then one more `process/read(afterSeq = last
//!   seq, waitMs = 0)`, timed as the final-read RPC;
//! - `events`: complete from pushed events alone (`Process::wait`, 0 reads).
//!
//! Every server × arm has its own client connection, and iteration i runs on every one of
//! them before iteration i+1, so machine noise hits them alike. Servers are started afresh
//! for every run. `--raw` runs the older raw-wire start → closed measurement instead.

use anyhow::{Context, Result, anyhow, bail};
use rexec_client::{Client, Process, ProcessEvent, ProcessSpec};
use rexec_protocol::method;
use std::time::{Duration, Instant};

use crate::args::{ServerArgs, emit, pairs};
use crate::oneshot_report::Report;
use crate::progress::Progress;
use crate::target::{self, version_of};

/// The process every iteration starts.
pub const PROGRAM: &str = "/usr/bin/true";
/// The working directory it starts in.
pub const CWD: &str = "/tmp";
/// A single iteration that takes longer than this fails the benchmark.
const ITERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// How a one-shot is completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Arm {
    /// After `closed`, one more `process/read(afterSeq = last seq, waitMs = 0)`.
    Read,
    /// From pushed events only.
    Events,
}

impl Arm {
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Events => "events",
        }
    }
}

/// Options of `rexec bench oneshot`.
#[derive(Debug, Clone, clap::Args)]
pub struct OneshotArgs {
    #[command(flatten)]
    pub servers: ServerArgs,
    /// Completion arms to measure (comma-separated or repeated); default: read,events.
    #[arg(long = "arm", value_enum, value_delimiter = ',')]
    pub arms: Vec<Arm>,
    /// Measured one-shots per server × arm and run.
    #[arg(long, default_value_t = 30)]
    pub iterations: usize,
    /// Unmeasured one-shots per server × arm before measuring, in every run.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Independent runs, each with freshly started servers; figures are medians over runs.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Idle time before each one-shot, outside the clock. Nagle's algorithm on a server's
    /// socket meets the client's delayed ACK only when requests follow replies closely.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub pause_ms: u64,
    /// Measure with the raw wire client instead (start → closed, no client library, no
    /// arms), as the first version of this benchmark did.
    #[arg(long)]
    pub raw: bool,
}

/// One measured one-shot, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// `start` called until complete (for `read`: until the final read answered).
    pub total_ms: f64,
    /// The `process/start` request until its response.
    pub start_ms: f64,
    /// The start response until complete.
    pub wait_ms: f64,
    /// The final `process/read` RPC (`read` arm only).
    pub read_ms: Option<f64>,
}

/// One server × arm in one run.
#[derive(Debug, Clone)]
pub struct Cell {
    pub version: Option<String>,
    pub samples: Vec<Sample>,
    /// `process/read` requests the client sent during the measured iterations.
    pub reads: u64,
}

/// Everything measured: `runs[run][server * arms.len() + arm]`.
pub struct Measured {
    pub names: Vec<String>,
    pub arms: Vec<Arm>,
    pub runs: Vec<Vec<Cell>>,
}

/// Runs `rexec bench oneshot`.
pub async fn run(args: OneshotArgs) -> Result<()> {
    if args.raw {
        return crate::raw::run(args).await;
    }
    if args.iterations == 0 || args.runs == 0 {
        bail!("--iterations and --runs must be at least 1");
    }
    let specs = args.servers.specs()?;
    let mut arms = if args.arms.is_empty() {
        vec![Arm::Read, Arm::Events]
    } else {
        args.arms.clone()
    };
    arms.sort();
    arms.dedup();
    let per_run = (args.warmup + args.iterations) * specs.len() * arms.len();
    let progress = Progress::new((per_run * args.runs) as u64, "oneshot");
    let mut runs = Vec::with_capacity(args.runs);
    for run in 0..args.runs {
        progress.note(format!("run {}/{}", run + 1, args.runs));
        runs.push(run_once(&args, &specs, &arms, &progress).await?);
    }
    progress.finish();
    let measured = Measured {
        names: specs.iter().map(|s| s.name.clone()).collect(),
        arms,
        runs,
    };
    let mut words = args.servers.words(&specs);
    let arms_word: Vec<&str> = measured.arms.iter().map(|a| a.name()).collect();
    words.extend(pairs(&[
        ("--arm", arms_word.join(",")),
        ("--iterations", args.iterations.to_string()),
        ("--warmup", args.warmup.to_string()),
        ("--runs", args.runs.to_string()),
    ]));
    if args.pause_ms > 0 {
        words.extend(pairs(&[("--pause-ms", args.pause_ms.to_string())]));
    }
    let report = Report {
        args: &args,
        measured: &measured,
        reproduce: crate::table::reproduce_line("oneshot", words),
    };
    emit(&report.markdown(), &report.json(), args.servers.json)
}

async fn run_once(
    args: &OneshotArgs,
    specs: &[crate::server::ServerSpec],
    arms: &[Arm],
    progress: &Progress,
) -> Result<Vec<Cell>> {
    let targets = target::start_all(specs, args.servers.link()).await?;
    let outcome = measure_cells(args, &targets, arms, progress).await;
    target::stop_all(targets).await;
    outcome
}

async fn measure_cells(
    args: &OneshotArgs,
    targets: &[target::Target],
    arms: &[Arm],
    progress: &Progress,
) -> Result<Vec<Cell>> {
    let mut clients = Vec::new();
    for target in targets {
        for _ in arms {
            clients.push(target.connect().await?);
        }
        let version = clients.last().and_then(version_of);
        progress.note(format!(
            "  {}: {} (executorVersion {})",
            target.name,
            target.url,
            version.as_deref().unwrap_or("not reported")
        ));
    }
    let mut cells: Vec<Cell> = clients
        .iter()
        .map(|client| Cell {
            version: version_of(client),
            samples: Vec::with_capacity(args.iterations),
            reads: 0,
        })
        .collect();
    let reads = |client: &Client| client.stats().requests(method::PROCESS_READ);
    let mut reads_before = vec![0; clients.len()];
    for i in 0..args.warmup + args.iterations {
        if i == args.warmup {
            for (before, client) in reads_before.iter_mut().zip(&clients) {
                *before = reads(client);
            }
        }
        for (k, client) in clients.iter().enumerate() {
            let arm = arms[k % arms.len()];
            if args.pause_ms > 0 {
                tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
            }
            let target = &targets[k / arms.len()];
            let sample = tokio::time::timeout(ITERATION_TIMEOUT, one_shot(client, arm))
                .await
                .unwrap_or_else(|_| Err(anyhow!("not complete within {ITERATION_TIMEOUT:?}")))
                .with_context(|| {
                    format!(
                        "{} arm {} iteration {}; server stderr ended with:\n{}",
                        target.name,
                        arm.name(),
                        i + 1,
                        target.server.stderr_tail()
                    )
                })?;
            if i >= args.warmup {
                cells[k].samples.push(sample);
            }
            progress.inc();
        }
    }
    for (k, client) in clients.iter().enumerate() {
        cells[k].reads = reads(client) - reads_before[k];
        client.close().await;
    }
    Ok(cells)
}

/// Starts `/usr/bin/true` and completes it the way `arm` says.
pub async fn one_shot(client: &Client, arm: Arm) -> Result<Sample> {
    let spec = ProcessSpec::new([PROGRAM]).cwd(CWD).clean_env();
    let started = Instant::now();
    let process = client.start(spec).await.context("process/start")?;
    let answered = Instant::now();
    let completion = process.wait().await.context("waiting for completion")?;
    if completion.exit_code != 0 {
        bail!("{PROGRAM} exited with {}", completion.exit_code);
    }
    let (read_ms, done) = match arm {
        Arm::Events => (None, Instant::now()),
        Arm::Read => {
            let after = closed_seq(&process).await?;
            let sent = Instant::now();
            let result = process
                .read(Some(after), None, Some(0))
                .await
                .context("the final process/read")?;
            let done = Instant::now();
            if !result.closed {
                bail!("the final process/read does not report the process closed");
            }
            (Some(ms(done - sent)), done)
        }
    };
    Ok(Sample {
        total_ms: ms(done - started),
        start_ms: ms(answered - started),
        wait_ms: ms(done - answered),
        read_ms,
    })
}

/// The seq of `closed`, from the process's (already complete) local event history.
async fn closed_seq(process: &Process) -> Result<u64> {
    let mut events = process.events();
    while let Some(event) = events.next().await {
        match event {
            ProcessEvent::Closed { seq } => return Ok(seq),
            ProcessEvent::Failed { reason } => bail!("the event stream failed: {reason}"),
            _ => {}
        }
    }
    bail!("the event stream ended without closed")
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
