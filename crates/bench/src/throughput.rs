//! The `throughput` benchmark: one process writes N MiB (`head -c N /dev/zero`); the client
//! keeps none of it (output budget 0, so its completion only counts the bytes, exactly, in
//! `omitted_bytes`). Two consumers: `events` follows the process with `Process::events`,
//! counting the bytes of every `Output` event and of every `Gap` (bytes the subscriber lost
//! by lagging behind the client's bounded history); `wait` only waits for the completion.
//! Reported: MB/s delivered to the client (10⁶ bytes per second, `start` called until
//! complete), the server's CPU seconds per GiB (utime + stime of the server process from
//! `/proc/PID/stat`, before and after) and this client process's, the share the subscriber
//! saw, and `process/read` requests (lag repairs). Servers are started once; iteration i
//! runs on every server × output path × consumer before i+1.

use anyhow::{Context, Result, bail};
use rexec_client::{Client, ProcessEvent, ProcessSpec};
use rexec_protocol::method;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::time::Instant;

use crate::args::{ServerArgs, emit, pairs};
use crate::procfs::cpu_seconds;
use crate::progress::Progress;
use crate::stats::median;
use crate::table::{machine, markdown, ratio, reproduce_block, reproduce_line};
use crate::target::{self, Target, client_options_binary, version_of};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Which output path the client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Binary {
    /// Binary WebSocket frames where the server grants them.
    On,
    /// Base64 in JSON text frames.
    Off,
    /// Both, as separate connections (a server that does not grant binary output is
    /// measured once, as `off`).
    Both,
}

/// How the client consumes the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Consumer {
    /// A `Process::events` subscriber counting `Output` bytes.
    Events,
    /// `Process::wait` only (the completion counts the bytes).
    Wait,
    /// Both, as separate cells.
    Both,
}

impl Consumer {
    fn name(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Wait => "wait",
            Self::Both => "both",
        }
    }
}

/// Options of `rexec bench throughput`.
#[derive(Debug, Clone, clap::Args)]
pub struct ThroughputArgs {
    #[command(flatten)]
    pub servers: ServerArgs,
    /// MiB the process writes to stdout.
    #[arg(long, default_value_t = 256)]
    pub mib: u64,
    /// Measured transfers per server × output path × consumer.
    #[arg(long, default_value_t = 5)]
    pub iterations: usize,
    /// Unmeasured transfers per server × output path × consumer first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Output path: binary frames (`on`), base64 JSON (`off`), or `both`.
    #[arg(long, value_enum, default_value = "both")]
    pub binary: Binary,
    /// Consumer: an `events` subscriber, `wait` for the completion only, or `both`.
    #[arg(long, value_enum, default_value = "both")]
    pub consumer: Consumer,
}

/// One measured transfer.
#[derive(Debug, Clone, Copy)]
struct Sample {
    mb_per_s: f64,
    /// Share of the bytes the `events` subscriber saw as `Output` (1.0 for `wait`).
    seen: f64,
    server_cpu_per_gib: Option<f64>,
    client_cpu_per_gib: f64,
    reads: u64,
}

/// One server × output mode.
struct Cell {
    server: usize,
    binary: bool,
    events: bool,
    client: Client,
    version: Option<String>,
    samples: Vec<Sample>,
}

/// Runs `rexec bench throughput`.
pub async fn run(args: ThroughputArgs) -> Result<()> {
    if args.iterations == 0 || args.mib == 0 {
        bail!("--iterations and --mib must be at least 1");
    }
    let specs = args.servers.specs()?;
    let targets = target::start_all(&specs, args.servers.link()).await?;
    let outcome = measure(&args, &targets).await;
    target::stop_all(targets).await;
    let (cells, names) = outcome?;
    let mut words = args.servers.words(&specs);
    words.extend(pairs(&[
        ("--mib", args.mib.to_string()),
        ("--iterations", args.iterations.to_string()),
        ("--warmup", args.warmup.to_string()),
        (
            "--binary",
            match args.binary {
                Binary::On => "on",
                Binary::Off => "off",
                Binary::Both => "both",
            }
            .to_owned(),
        ),
        ("--consumer", args.consumer.name().to_owned()),
    ]));
    let reproduce = reproduce_line("throughput", words);
    let (md, js) = render(&args, &names, &cells, &reproduce);
    emit(&md, &js, args.servers.json)
}

async fn measure(args: &ThroughputArgs, targets: &[Target]) -> Result<(Vec<Cell>, Vec<String>)> {
    let modes: &[bool] = match args.binary {
        Binary::On => &[true],
        Binary::Off => &[false],
        Binary::Both => &[true, false],
    };
    let consumers: &[bool] = match args.consumer {
        Consumer::Events => &[true],
        Consumer::Wait => &[false],
        Consumer::Both => &[true, false],
    };
    let mut cells = Vec::new();
    for (s, target) in targets.iter().enumerate() {
        for &binary in modes {
            for &events in consumers {
                let client = target.connect_with(client_options_binary(binary)).await?;
                if binary && !client.binary_output() && modes.len() == 2 {
                    client.close().await; // not granted: the `off` cell measures this path
                    continue;
                }
                let version = version_of(&client);
                cells.push(Cell {
                    server: s,
                    binary: client.binary_output(),
                    events,
                    client,
                    version,
                    samples: Vec::new(),
                });
            }
        }
    }
    let bytes = args.mib * 1024 * 1024;
    let total = (args.warmup + args.iterations) * cells.len();
    let progress = Progress::new(total as u64, "throughput");
    for i in 0..args.warmup + args.iterations {
        for cell in &mut cells {
            let target = &targets[cell.server];
            let sample = transfer(&cell.client, target.pid(), bytes, cell.events)
                .await
                .with_context(|| {
                    format!(
                        "{} transfer {}; server stderr ended with:\n{}",
                        target.name,
                        i + 1,
                        target.server.stderr_tail()
                    )
                })?;
            if i >= args.warmup {
                cell.samples.push(sample);
            }
            progress.inc();
        }
    }
    progress.finish();
    for cell in &cells {
        cell.client.close().await;
    }
    Ok((cells, targets.iter().map(|t| t.name.clone()).collect()))
}

/// One process writing `bytes` zeros, followed to completion by an `events` subscriber
/// or by `wait` alone.
async fn transfer(
    client: &Client,
    server_pid: Option<u32>,
    bytes: u64,
    events: bool,
) -> Result<Sample> {
    let count = bytes.to_string();
    let spec = ProcessSpec::new(["/usr/bin/head", "-c", count.as_str(), "/dev/zero"])
        .cwd("/tmp")
        .clean_env()
        .output_budget(0)
        .lossless(events);
    let reads_before = client.stats().requests(method::PROCESS_READ);
    let own_cpu = cpu_seconds(std::process::id())?;
    let server_cpu = server_pid.map(cpu_seconds).transpose()?;
    let started = Instant::now();
    let process = client.start(spec).await.context("process/start")?;
    let mut seen = bytes;
    if events {
        let mut stream = process.events();
        let (mut output, mut lost) = (0u64, 0u64);
        while let Some(event) = stream.next().await {
            match event {
                ProcessEvent::Output { bytes, .. } => output += bytes.len() as u64,
                ProcessEvent::Gap { bytes_lost, .. } => lost += bytes_lost,
                ProcessEvent::Failed { reason } => bail!("the event stream failed: {reason}"),
                ProcessEvent::Exited { .. } | ProcessEvent::Closed { .. } => {}
            }
        }
        if output + lost != bytes {
            bail!("the subscriber saw {output} bytes and {lost} lost, of {bytes}");
        }
        seen = output;
    }
    let done = process.wait().await.context("waiting for completion")?;
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu = match (server_pid, server_cpu) {
        (Some(pid), Some(before)) => Some(cpu_seconds(pid)? - before),
        _ => None,
    };
    let own_cpu = cpu_seconds(std::process::id())? - own_cpu;
    if done.exit_code != 0 {
        bail!("head exited with {}", done.exit_code);
    }
    if done.omitted_bytes != bytes || !done.gaps.is_empty() {
        bail!(
            "{} bytes delivered to the client of {bytes}, gaps {:?}",
            done.omitted_bytes,
            done.gaps
        );
    }
    let gib = bytes as f64 / GIB;
    Ok(Sample {
        mb_per_s: bytes as f64 / elapsed / 1e6,
        seen: seen as f64 / bytes as f64,
        server_cpu_per_gib: server_cpu.map(|cpu| cpu / gib),
        client_cpu_per_gib: own_cpu / gib,
        reads: client.stats().requests(method::PROCESS_READ) - reads_before,
    })
}

/// Median MB/s, min, max, median server and client CPU s/GiB, median share seen, reads.
type Figures = (f64, f64, f64, Option<f64>, f64, f64, u64);

fn figures(cell: &Cell) -> Figures {
    let rates: Vec<f64> = cell.samples.iter().map(|s| s.mb_per_s).collect();
    let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rates.iter().copied().fold(0.0, f64::max);
    let server: Vec<f64> = cell
        .samples
        .iter()
        .filter_map(|s| s.server_cpu_per_gib)
        .collect();
    let client: Vec<f64> = cell.samples.iter().map(|s| s.client_cpu_per_gib).collect();
    let seen: Vec<f64> = cell.samples.iter().map(|s| s.seen).collect();
    (
        median(&rates),
        min,
        max,
        (!server.is_empty()).then(|| median(&server)),
        median(&client),
        median(&seen),
        cell.samples.iter().map(|s| s.reads).sum(),
    )
}

fn render(
    args: &ThroughputArgs,
    names: &[String],
    cells: &[Cell],
    reproduce: &str,
) -> (String, Value) {
    let mut out = String::new();
    let _ = writeln!(out, "### rexec bench throughput\n");
    let _ = writeln!(
        out,
        "One process writes {} MiB (`head -c {} /dev/zero`) over {}; the client keeps none of \
         it (output budget 0; the completion counts the bytes). Consumer *events*: a \
         `Process::events` subscriber counts `Output` bytes (*subscriber saw* = their share; \
         the rest came as `Gap`s after it lagged behind the client's 1 MiB history); *wait*: \
         `Process::wait` only. {} measured transfers per server × output path × consumer after {} warm-up{}, interleaved. \
         MB/s = 10⁶ bytes/s from `start` to `closed`, median (min–max); CPU = utime + stime \
         per GiB delivered, median, of the server process and of this client process. \
         Machine: {}.\n",
        args.mib,
        args.mib * 1024 * 1024,
        args.servers.link_text(),
        args.iterations,
        args.warmup,
        if args.warmup == 1 { "" } else { "s" },
        machine()
    );
    let first = cells.first().map_or(1.0, |c| figures(c).0);
    let mut rows = Vec::new();
    let mut json_cells = Vec::new();
    for cell in cells {
        let (rate, min, max, server_cpu, client_cpu, seen, reads) = figures(cell);
        let output = if cell.binary {
            "binary frames"
        } else {
            "base64 JSON"
        };
        let consumer = if cell.events { "events" } else { "wait" };
        rows.push(vec![
            names[cell.server].clone(),
            cell.version.clone().unwrap_or_else(|| "?".to_owned()),
            output.to_owned(),
            consumer.to_owned(),
            format!("{rate:.0}"),
            format!("{min:.0}–{max:.0}"),
            server_cpu.map_or("n/a".to_owned(), |c| format!("{c:.2}")),
            format!("{client_cpu:.2}"),
            if cell.events {
                format!("{:.1}%", seen * 100.0)
            } else {
                "—".to_owned()
            },
            reads.to_string(),
            ratio(rate, first),
        ]);
        json_cells.push(json!({
            "server": names[cell.server],
            "executorVersion": cell.version,
            "binaryOutput": cell.binary,
            "consumer": consumer,
            "subscriberSawShare": seen,
            "mbPerS": {"median": rate, "min": min, "max": max},
            "serverCpuSecondsPerGib": server_cpu,
            "clientCpuSecondsPerGib": client_cpu,
            "processReadRequests": reads,
            "samples": cell.samples.iter().map(|s| json!({
                "mbPerS": s.mb_per_s,
                "subscriberSawShare": s.seen,
                "serverCpuSecondsPerGib": s.server_cpu_per_gib,
                "clientCpuSecondsPerGib": s.client_cpu_per_gib,
                "processReadRequests": s.reads,
            })).collect::<Vec<_>>(),
        }));
    }
    out.push_str(&markdown(
        &[
            "server",
            "version",
            "output",
            "consumer",
            ">MB/s",
            ">MB/s min–max",
            ">server CPU s/GiB",
            ">client CPU s/GiB",
            ">subscriber saw",
            ">`process/read`",
            ">MB/s ratio",
        ],
        &rows,
    ));
    out.push_str(&reproduce_block(reproduce));
    let js = json!({
        "benchmark": "throughput",
        "mib": args.mib,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "rttMs": args.servers.rtt_ms,
        "jitterMs": args.servers.jitter_ms,
        "machine": machine(),
        "reproduce": reproduce,
        "cells": json_cells,
    });
    (out, js)
}
