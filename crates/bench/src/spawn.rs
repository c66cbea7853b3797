//! The `spawn` benchmark: many one-shot `/usr/bin/true` at once. K client connections
//! (default 64) each keep `--depth` one-shots in flight (default 1) until N processes
//! (default 1 000) have run; reported are processes per second (N ÷ wall time from the
//! first start to the last completion), p50/p99 of each one-shot's `start` → complete, and
//! errors. Each run starts every server afresh and measures them one after another.

use anyhow::{Result, bail};
use futures_util::future::join_all;
use rexec_client::{Client, ProcessSpec};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::args::{ServerArgs, emit, pairs};
use crate::oneshot::{CWD, PROGRAM};
use crate::progress::Progress;
use crate::stats::{Summary, median};
use crate::table::{machine, markdown, ms, ratio, reproduce_block, reproduce_line};
use crate::target::{Target, version_of};

/// Options of `rexec bench spawn`.
#[derive(Debug, Clone, clap::Args)]
pub struct SpawnArgs {
    #[command(flatten)]
    pub servers: ServerArgs,
    /// Client connections, all busy at once.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// One-shots in total per server and run.
    #[arg(long, default_value_t = 1000)]
    pub processes: usize,
    /// One-shots each connection keeps in flight.
    #[arg(long, default_value_t = 1)]
    pub depth: usize,
    /// Independent runs; figures are medians over runs.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// One server in one run.
#[derive(Debug, Clone)]
struct Outcome {
    version: Option<String>,
    per_second: f64,
    wall_ms: f64,
    latency: Option<Summary>,
    errors: usize,
    first_error: Option<String>,
}

/// Runs `rexec bench spawn`.
pub async fn run(args: SpawnArgs) -> Result<()> {
    if args.connections == 0 || args.processes == 0 || args.depth == 0 || args.runs == 0 {
        bail!("--connections, --processes, --depth and --runs must be at least 1");
    }
    let specs = args.servers.specs()?;
    let progress = Progress::new((args.processes * specs.len() * args.runs) as u64, "spawn");
    let mut runs: Vec<Vec<Outcome>> = Vec::new();
    for run in 0..args.runs {
        progress.note(format!("run {}/{}", run + 1, args.runs));
        let mut outcomes = Vec::new();
        for spec in &specs {
            let target = Target::start(spec, args.servers.link()).await?;
            let outcome = measure(&args, &target, &progress).await;
            target.stop().await;
            outcomes.push(outcome?);
        }
        runs.push(outcomes);
    }
    progress.finish();
    let mut words = args.servers.words(&specs);
    words.extend(pairs(&[
        ("--connections", args.connections.to_string()),
        ("--processes", args.processes.to_string()),
        ("--depth", args.depth.to_string()),
        ("--runs", args.runs.to_string()),
    ]));
    let reproduce = reproduce_line("spawn", words);
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let (md, js) = render(&args, &names, &runs, &reproduce);
    emit(&md, &js, args.servers.json)
}

async fn measure(args: &SpawnArgs, target: &Target, progress: &Progress) -> Result<Outcome> {
    let connected = join_all((0..args.connections).map(|_| target.connect())).await;
    let clients = connected.into_iter().collect::<Result<Vec<Client>>>()?;
    let version = clients.first().and_then(version_of);
    // Warm-up: one one-shot per connection, not timed.
    join_all(
        clients
            .iter()
            .map(|c| c.run(ProcessSpec::new([PROGRAM]).cwd(CWD).clean_env())),
    )
    .await;

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers = clients.iter().flat_map(|client| {
        (0..args.depth).map(|_| worker(client, args.processes, &next, progress))
    });
    let results = join_all(workers).await;
    let wall = started.elapsed().as_secs_f64();
    for client in &clients {
        client.close().await;
    }
    let mut latencies = Vec::with_capacity(args.processes);
    let mut errors = 0;
    let mut first_error = None;
    for (ok, failed) in results {
        latencies.extend(ok);
        errors += failed.len();
        if first_error.is_none() {
            first_error = failed.into_iter().next();
        }
    }
    Ok(Outcome {
        version,
        per_second: args.processes as f64 / wall,
        wall_ms: wall * 1000.0,
        latency: Summary::of(&latencies),
        errors,
        first_error,
    })
}

/// Runs one-shots on `client` until `total` have been taken: (latencies in ms, errors).
async fn worker(
    client: &Client,
    total: usize,
    next: &AtomicUsize,
    progress: &Progress,
) -> (Vec<f64>, Vec<String>) {
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    while next.fetch_add(1, Ordering::Relaxed) < total {
        let started = Instant::now();
        match client
            .run(ProcessSpec::new([PROGRAM]).cwd(CWD).clean_env())
            .await
        {
            Ok(done) if done.exit_code == 0 => ok.push(started.elapsed().as_secs_f64() * 1e3),
            Ok(done) => failed.push(format!("{PROGRAM} exited with {}", done.exit_code)),
            Err(err) => failed.push(err.to_string()),
        }
        progress.inc();
    }
    (ok, failed)
}

fn render(
    args: &SpawnArgs,
    names: &[String],
    runs: &[Vec<Outcome>],
    reproduce: &str,
) -> (String, Value) {
    let mut out = String::new();
    let _ = writeln!(out, "### rexec bench spawn\n");
    let _ = writeln!(
        out,
        "{} one-shot `{PROGRAM}` per server and run over {} client connections with {} in \
         flight each ({} at once), {}. processes/s = {} ÷ wall time from the first start to \
         the last completion; latency = `start` called → complete, nearest rank. {} run{}, \
         servers one after another, each figure the median over runs. Machine: {}.\n",
        args.processes,
        args.connections,
        args.depth,
        args.connections * args.depth,
        args.servers.link_text(),
        args.processes,
        args.runs,
        if args.runs == 1 { "" } else { "s" },
        machine()
    );
    let per = |s: usize, f: &dyn Fn(&Outcome) -> Option<f64>| -> Option<f64> {
        let values: Vec<f64> = runs.iter().filter_map(|run| f(&run[s])).collect();
        (!values.is_empty()).then(|| median(&values))
    };
    let first_rate = per(0, &|o| Some(o.per_second)).unwrap_or(0.0);
    let mut rows = Vec::new();
    let mut servers = Vec::new();
    for (s, name) in names.iter().enumerate() {
        let rate = per(s, &|o| Some(o.per_second)).unwrap_or(0.0);
        let p50 = per(s, &|o| o.latency.map(|l| l.p50));
        let p99 = per(s, &|o| o.latency.map(|l| l.p99));
        let errors: Vec<String> = runs.iter().map(|r| r[s].errors.to_string()).collect();
        let version = runs.iter().find_map(|r| r[s].version.clone());
        rows.push(vec![
            name.clone(),
            version.clone().unwrap_or_else(|| "?".to_owned()),
            format!("{rate:.0}"),
            p50.map_or("—".to_owned(), ms),
            p99.map_or("—".to_owned(), ms),
            errors.join(" / "),
            ratio(rate, first_rate),
        ]);
        servers.push(json!({
            "server": name,
            "executorVersion": version,
            "processesPerSecond": rate,
            "p50Ms": p50,
            "p99Ms": p99,
            "runs": runs.iter().map(|r| {
                let o = &r[s];
                json!({
                    "processesPerSecond": o.per_second,
                    "wallMs": o.wall_ms,
                    "latencyMs": o.latency.map(|l| l.to_json()),
                    "errors": o.errors,
                    "firstError": o.first_error,
                })
            }).collect::<Vec<_>>(),
        }));
    }
    out.push_str(&markdown(
        &[
            "server",
            "version",
            ">processes/s",
            ">p50",
            ">p99",
            ">errors per run",
            ">rate ratio",
        ],
        &rows,
    ));
    for (s, name) in names.iter().enumerate() {
        if let Some(error) = runs.iter().find_map(|r| r[s].first_error.clone()) {
            let _ = writeln!(out, "\nFirst error on {name}: {error}");
        }
    }
    out.push_str(&reproduce_block(reproduce));
    let js = json!({
        "benchmark": "spawn",
        "program": PROGRAM,
        "connections": args.connections,
        "processes": args.processes,
        "depth": args.depth,
        "runs": args.runs,
        "rttMs": args.servers.rtt_ms,
        "jitterMs": args.servers.jitter_ms,
        "machine": machine(),
        "reproduce": reproduce,
        "servers": servers,
    });
    (out, js)
}
