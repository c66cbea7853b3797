//! The `memory` benchmark: the server's resident memory (VmRSS from `/proc/PID/status`)
//! fresh, idle with the client connections open, and with N live `sleep 600` processes
//! started over those connections (default 1 000 over 4), hence per process
//! ((RSS loaded − RSS idle) ÷ N); VmHWM (peak) too. The processes are terminated and waited
//! for afterwards. Each run starts every server afresh and measures them one after another.

use anyhow::{Context, Result, anyhow, bail};
use futures_util::future::join_all;
use rexec_client::{Client, Process, ProcessSpec};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::time::Duration;

use crate::args::{ServerArgs, emit, pairs};
use crate::procfs::{Memory, memory};
use crate::progress::Progress;
use crate::stats::median;
use crate::table::{kib, machine, markdown, mib, ratio, reproduce_block, reproduce_line};
use crate::target::{Target, version_of};

/// A `process/start` that takes longer fails the run (codex 0.169 stops answering them
/// on a connection with about 140 live processes).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The long-lived process started N times.
const SLEEPER: [&str; 2] = ["/usr/bin/sleep", "600"];

/// Options of `rexec bench memory`.
#[derive(Debug, Clone, clap::Args)]
pub struct MemoryArgs {
    #[command(flatten)]
    pub servers: ServerArgs,
    /// Live processes to hold.
    #[arg(long, default_value_t = 1000)]
    pub processes: usize,
    /// Client connections they are started over (each starts its share one after another).
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Quiet time before each reading.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub settle_ms: u64,
    /// Independent runs; figures are medians over runs.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// One server in one run.
#[derive(Debug, Clone, Copy)]
struct Reading {
    fresh: Memory,
    idle: Memory,
    loaded: Memory,
    after: Memory,
}

impl Reading {
    fn per_process(&self, n: usize) -> f64 {
        (self.loaded.rss as f64 - self.idle.rss as f64) / n as f64
    }
}

/// Runs `rexec bench memory`.
pub async fn run(args: MemoryArgs) -> Result<()> {
    if args.processes == 0 || args.connections == 0 || args.runs == 0 {
        bail!("--processes, --connections and --runs must be at least 1");
    }
    let specs = args.servers.specs()?;
    let progress = Progress::new((args.processes * specs.len() * args.runs) as u64, "memory");
    let mut runs: Vec<Vec<Reading>> = Vec::new();
    let mut versions: Vec<Option<String>> = vec![None; specs.len()];
    for run in 0..args.runs {
        progress.note(format!("run {}/{}", run + 1, args.runs));
        let mut readings = Vec::new();
        for (s, spec) in specs.iter().enumerate() {
            let target = Target::start(spec, args.servers.link()).await?;
            let outcome = measure(&args, &target, &progress).await;
            target.stop().await;
            let (reading, version) = outcome?;
            versions[s] = versions[s].take().or(version);
            readings.push(reading);
        }
        runs.push(readings);
    }
    progress.finish();
    let mut words = args.servers.words(&specs);
    words.extend(pairs(&[
        ("--processes", args.processes.to_string()),
        ("--connections", args.connections.to_string()),
        ("--settle-ms", args.settle_ms.to_string()),
        ("--runs", args.runs.to_string()),
    ]));
    let reproduce = reproduce_line("memory", words);
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let (md, js) = render(&args, &names, &versions, &runs, &reproduce);
    emit(&md, &js, args.servers.json)
}

async fn measure(
    args: &MemoryArgs,
    target: &Target,
    progress: &Progress,
) -> Result<(Reading, Option<String>)> {
    let Some(pid) = target.pid() else {
        bail!(
            "{}: memory needs a server started with --server-cmd",
            target.name
        );
    };
    let settle = || tokio::time::sleep(Duration::from_millis(args.settle_ms));
    settle().await;
    let fresh = memory(pid)?;
    let connected = join_all((0..args.connections).map(|_| target.connect())).await;
    let clients = connected.into_iter().collect::<Result<Vec<Client>>>()?;
    let version = clients.first().and_then(version_of);
    settle().await;
    let idle = memory(pid)?;

    let shares = (0..args.connections).map(|c| {
        let n =
            args.processes / args.connections + usize::from(c < args.processes % args.connections);
        start_sleepers(&clients[c], n, progress)
    });
    let started = join_all(shares).await;
    let mut processes = Vec::with_capacity(args.processes);
    let mut failure = None;
    for (share, error) in started {
        processes.extend(share);
        failure = failure.or(error);
    }
    let loaded = match failure {
        None => {
            settle().await;
            Ok(memory(pid)?)
        }
        Some(err) => Err(err),
    };
    // Terminate and wait for every sleeper, whatever happened.
    join_all(processes.iter().map(|p| async move {
        let _ = p.terminate().await;
        let _ = tokio::time::timeout(Duration::from_secs(30), p.wait()).await;
    }))
    .await;
    let loaded = loaded.with_context(|| format!("starting sleepers on {}", target.name))?;
    settle().await;
    let after = memory(pid)?;
    for client in &clients {
        client.close().await;
    }
    let reading = Reading {
        fresh,
        idle,
        loaded,
        after,
    };
    Ok((reading, version))
}

/// Starts `n` sleepers on `client`, one after another: those started, and why it stopped
/// early (the caller terminates what did start either way).
async fn start_sleepers(
    client: &Client,
    n: usize,
    progress: &Progress,
) -> (Vec<Process>, Option<anyhow::Error>) {
    let mut processes = Vec::with_capacity(n);
    for _ in 0..n {
        let spec = ProcessSpec::new(SLEEPER).cwd("/tmp").clean_env();
        let started = match tokio::time::timeout(START_TIMEOUT, client.start(spec)).await {
            Ok(started) => started.map_err(anyhow::Error::from),
            Err(_) => Err(anyhow!(
                "no process/start response within {START_TIMEOUT:?}"
            )),
        };
        match started {
            Ok(process) => processes.push(process),
            Err(err) => {
                let n = processes.len() + 1;
                return (
                    processes,
                    Some(err.context(format!("sleeper {n} of a connection"))),
                );
            }
        }
        progress.inc();
    }
    (processes, None)
}

fn render(
    args: &MemoryArgs,
    names: &[String],
    versions: &[Option<String>],
    runs: &[Vec<Reading>],
    reproduce: &str,
) -> (String, Value) {
    let n = args.processes;
    let mut out = String::new();
    let _ = writeln!(out, "### rexec bench memory\n");
    let _ = writeln!(
        out,
        "Server VmRSS: *fresh* = started, no connection; *idle* = {} client connections \
         open; *loaded* = {n} live `{}` started over them; per process = (loaded − idle) ÷ \
         {n}; *after* = all terminated and reaped. Peak = VmHWM at the loaded reading. Each \
         reading after {} ms of quiet; {} run{}, servers one after another, each figure the \
         median over runs. Machine: {}.\n",
        args.connections,
        SLEEPER.join(" "),
        args.settle_ms,
        args.runs,
        if args.runs == 1 { "" } else { "s" },
        machine()
    );
    let per = |s: usize, f: &dyn Fn(&Reading) -> f64| -> f64 {
        median(&runs.iter().map(|run| f(&run[s])).collect::<Vec<_>>())
    };
    let first_idle = per(0, &|r| r.idle.rss as f64);
    let mut rows = Vec::new();
    let mut servers = Vec::new();
    for (s, name) in names.iter().enumerate() {
        let fresh = per(s, &|r| r.fresh.rss as f64);
        let idle = per(s, &|r| r.idle.rss as f64);
        let loaded = per(s, &|r| r.loaded.rss as f64);
        let peak = per(s, &|r| r.loaded.hwm as f64);
        let after = per(s, &|r| r.after.rss as f64);
        let each = per(s, &|r| r.per_process(n));
        rows.push(vec![
            name.clone(),
            versions[s].clone().unwrap_or_else(|| "?".to_owned()),
            mib(fresh),
            mib(idle),
            mib(loaded),
            kib(each),
            mib(peak),
            mib(after),
            ratio(idle, first_idle),
        ]);
        servers.push(json!({
            "server": name,
            "executorVersion": versions[s],
            "rssBytes": {"fresh": fresh, "idle": idle, "loaded": loaded, "after": after},
            "peakBytes": peak,
            "perProcessBytes": each,
            "runs": runs.iter().map(|r| {
                let r = &r[s];
                json!({
                    "fresh": {"rss": r.fresh.rss, "hwm": r.fresh.hwm},
                    "idle": {"rss": r.idle.rss, "hwm": r.idle.hwm},
                    "loaded": {"rss": r.loaded.rss, "hwm": r.loaded.hwm},
                    "after": {"rss": r.after.rss, "hwm": r.after.hwm},
                })
            }).collect::<Vec<_>>(),
        }));
    }
    out.push_str(&markdown(
        &[
            "server",
            "version",
            ">fresh",
            ">idle",
            &format!(">{n} live"),
            ">per process",
            ">peak",
            ">after",
            ">idle ratio",
        ],
        &rows,
    ));
    out.push_str(&reproduce_block(reproduce));
    let js = json!({
        "benchmark": "memory",
        "processes": n,
        "connections": args.connections,
        "settleMs": args.settle_ms,
        "runs": args.runs,
        "machine": machine(),
        "reproduce": reproduce,
        "servers": servers,
    });
    (out, js)
}
