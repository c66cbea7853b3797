//! The `connect-run` benchmark: what `rexec run -- /usr/bin/true` costs a client, each
//! iteration from nothing: a first `Client::start` on a new `Client` (TCP connect, then the WebSocket
//! upgrade request with `initialize`, `initialized` and `process/start` in the same flight),
//! waiting for the completion, `close`. Reported: p50/p95 of the whole and of each part.
//! With `--rtt-ms`, the proxy models the TCP handshake too (see `proxy`), so the total is
//! what a real link of that RTT would show. Servers are started afresh per run and
//! interleaved per iteration.

use anyhow::{Context, Result, anyhow, bail};
use rexec_client::ProcessSpec;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::args::{ServerArgs, emit, pairs};
use crate::oneshot::{CWD, PROGRAM};
use crate::progress::Progress;
use crate::stats::{median, percentile};
use crate::table::{machine, markdown, ms, ratio, reproduce_block, reproduce_line};
use crate::target::{self, Target, version_of};

const ITERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `rexec bench connect-run`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectRunArgs {
    #[command(flatten)]
    pub servers: ServerArgs,
    /// Measured iterations per server and run.
    #[arg(long, default_value_t = 30)]
    pub iterations: usize,
    /// Unmeasured iterations per server before measuring, in every run.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Independent runs, each with freshly started servers; figures are medians over runs.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// One iteration, in ms.
#[derive(Debug, Clone, Copy)]
struct Sample {
    total: f64,
    /// Until the `process/start` answer: connect, upgrade, initialize, start.
    connect: f64,
    /// From the start answer to the completion.
    run: f64,
    close: f64,
}

/// A reported part of an iteration: label, JSON key, and its value in a sample.
type Part = (&'static str, &'static str, fn(&Sample) -> f64);

const PARTS: [Part; 4] = [
    ("connect + run + close", "totalMs", |s| s.total),
    ("connect + start", "connectStartMs", |s| s.connect),
    ("start → complete", "waitMs", |s| s.run),
    ("close", "closeMs", |s| s.close),
];

/// Runs `rexec bench connect-run`.
pub async fn run(args: ConnectRunArgs) -> Result<()> {
    if args.iterations == 0 || args.runs == 0 {
        bail!("--iterations and --runs must be at least 1");
    }
    let specs = args.servers.specs()?;
    let per_run = (args.warmup + args.iterations) * specs.len();
    let progress = Progress::new((per_run * args.runs) as u64, "connect-run");
    let mut runs: Vec<Vec<Vec<Sample>>> = Vec::new();
    let mut versions: Vec<Option<String>> = vec![None; specs.len()];
    for run in 0..args.runs {
        progress.note(format!("run {}/{}", run + 1, args.runs));
        let targets = target::start_all(&specs, args.servers.link()).await?;
        let outcome = measure(&args, &targets, &mut versions, &progress).await;
        target::stop_all(targets).await;
        runs.push(outcome?);
    }
    progress.finish();
    let mut words = args.servers.words(&specs);
    words.extend(pairs(&[
        ("--iterations", args.iterations.to_string()),
        ("--warmup", args.warmup.to_string()),
        ("--runs", args.runs.to_string()),
    ]));
    let reproduce = reproduce_line("connect-run", words);
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let (md, js) = render(&args, &names, &versions, &runs, &reproduce);
    emit(&md, &js, args.servers.json)
}

async fn measure(
    args: &ConnectRunArgs,
    targets: &[Target],
    versions: &mut [Option<String>],
    progress: &Progress,
) -> Result<Vec<Vec<Sample>>> {
    let mut samples = vec![Vec::with_capacity(args.iterations); targets.len()];
    for i in 0..args.warmup + args.iterations {
        for (s, target) in targets.iter().enumerate() {
            let sample = tokio::time::timeout(ITERATION_TIMEOUT, once(target, &mut versions[s]))
                .await
                .unwrap_or_else(|_| Err(anyhow!("not done within {ITERATION_TIMEOUT:?}")))
                .with_context(|| format!("{} iteration {}", target.name, i + 1))?;
            if i >= args.warmup {
                samples[s].push(sample);
            }
            progress.inc();
        }
    }
    Ok(samples)
}

async fn once(target: &Target, version: &mut Option<String>) -> Result<Sample> {
    let started = Instant::now();
    let client = target.client();
    let process = client
        .start(ProcessSpec::new([PROGRAM]).cwd(CWD).clean_env())
        .await
        .with_context(|| target.failed("connecting and starting on"))?;
    let connected = Instant::now();
    let done = process.wait().await;
    let ran = Instant::now();
    client.close().await;
    let closed = Instant::now();
    let done = done.context("run")?;
    if done.exit_code != 0 {
        bail!("{PROGRAM} exited with {}", done.exit_code);
    }
    if version.is_none() {
        *version = version_of(&client);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(Sample {
        total: ms(closed - started),
        connect: ms(connected - started),
        run: ms(ran - connected),
        close: ms(closed - ran),
    })
}

fn render(
    args: &ConnectRunArgs,
    names: &[String],
    versions: &[Option<String>],
    runs: &[Vec<Vec<Sample>>],
    reproduce: &str,
) -> (String, Value) {
    let figure = |s: usize, f: fn(&Sample) -> f64, p: u32| -> f64 {
        let per_run: Vec<f64> = runs
            .iter()
            .map(|run| {
                let mut values: Vec<f64> = run[s].iter().map(f).collect();
                values.sort_by(f64::total_cmp);
                percentile(&values, p)
            })
            .collect();
        median(&per_run)
    };
    let mut out = String::new();
    let _ = writeln!(out, "### rexec bench connect-run\n");
    let _ = writeln!(
        out,
        "Per iteration, from nothing: a first `Client::start` on a new `Client` (TCP connect, then the \
         WebSocket upgrade request with `initialize`, `initialized` and `process/start({PROGRAM})` \
         in the same flight), the completion from pushed events, `close` — what \
         `rexec run -- {PROGRAM}` costs besides starting the binary. Over {}{}. {} iterations per server and run after {} warm-ups, {} run{}, servers \
         interleaved per iteration; each figure is the median over runs of that run's \
         nearest-rank percentile. Machine: {}.\n",
        args.servers.link_text(),
        if args.servers.rtt_ms > 0 {
            " (the proxy delays the TCP handshake by one RTT too, as a real link would)"
        } else {
            ""
        },
        args.iterations,
        args.warmup,
        args.runs,
        if args.runs == 1 { "" } else { "s" },
        machine()
    );
    let mut headers = vec!["server".to_owned(), "version".to_owned()];
    for (label, _, _) in PARTS {
        headers.push(format!(">{label} p50"));
        headers.push(">p95".to_owned());
    }
    headers.push(">total p50 ratio".to_owned());
    let first_total = figure(0, PARTS[0].2, 50);
    let mut rows = Vec::new();
    let mut servers = Vec::new();
    for (s, name) in names.iter().enumerate() {
        let mut row = vec![
            name.clone(),
            versions[s].clone().unwrap_or_else(|| "?".to_owned()),
        ];
        let mut figures = serde_json::Map::new();
        for (_, key, f) in PARTS {
            let (p50, p95) = (figure(s, f, 50), figure(s, f, 95));
            row.push(ms(p50));
            row.push(ms(p95));
            figures.insert(key.to_owned(), json!({"p50": p50, "p95": p95}));
        }
        row.push(ratio(figure(s, PARTS[0].2, 50), first_total));
        rows.push(row);
        servers.push(json!({
            "server": name,
            "executorVersion": versions[s],
            "figures": figures,
            "runs": runs.iter().map(|run| run[s].iter().map(|x| json!({
                "totalMs": x.total, "connectStartMs": x.connect, "waitMs": x.run,
                "closeMs": x.close,
            })).collect::<Vec<_>>()).collect::<Vec<_>>(),
        }));
    }
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    out.push_str(&markdown(&headers, &rows));
    if args.servers.rtt_ms > 0 {
        let rtt = args.servers.rtt_ms as f64;
        let _ = writeln!(
            out,
            "\nBudget 3 × RTT + 30 ms = {}; the first server's total p50 is {:.2} RTT \
             (one RTT of it is the TCP handshake).",
            ms(3.0 * rtt + 30.0),
            first_total / rtt
        );
    }
    out.push_str(&reproduce_block(reproduce));
    let js = json!({
        "benchmark": "connect-run",
        "program": PROGRAM,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "runs": args.runs,
        "rttMs": args.servers.rtt_ms,
        "jitterMs": args.servers.jitter_ms,
        "machine": machine(),
        "reproduce": reproduce,
        "servers": servers,
    });
    (out, js)
}
