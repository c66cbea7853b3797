//! Command-line surface of the benchmarks: `rexec bench <benchmark> …`.
//!
//! The binary mounts [`BenchArgs`] as its `bench` subcommand and calls [`run`]. Every
//! benchmark runs against one or more servers (`--server-cmd`, `--url`; default this
//! `rexec serve`), optionally through a latency proxy (`--rtt-ms`), prints a markdown
//! report (or JSON with `--json`) ending with the command line that reproduces it.

use anyhow::Result;

use crate::connect_run::ConnectRunArgs;
use crate::memory::MemoryArgs;
use crate::oneshot::OneshotArgs;
use crate::shell::ShellBenchArgs;
use crate::spawn::SpawnArgs;
use crate::throughput::ThroughputArgs;

/// `rexec bench`: latency, throughput, spawn rate and memory of exec-servers.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// One-shot `/usr/bin/true` through the client, completed from pushed events (`events`)
    /// or with one more final `process/read` (`read`): the codex PR #30273 A/B.
    Oneshot(OneshotArgs),
    /// MB/s of one process's output delivered to the client, and server CPU per GiB.
    Throughput(ThroughputArgs),
    /// Many concurrent one-shots over many connections: processes/s, p50/p99, errors.
    Spawn(SpawnArgs),
    /// Server RSS idle and with many live processes.
    Memory(MemoryArgs),
    /// A fresh connection + `run /usr/bin/true` + close per iteration (`rexec run`'s cost).
    ConnectRun(ConnectRunArgs),
    /// `true` in a warm named shell vs a fresh one-shot process.
    Shell(ShellBenchArgs),
    /// A TCP proxy that adds latency (RTT/2 each way, and one RTT to the TCP handshake),
    /// for a controlled wide-area link.
    Proxy(ProxyArgs),
}

/// Options of `rexec bench proxy`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    /// Address to listen on, e.g. 127.0.0.1:7001.
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    /// The server to forward to, e.g. 127.0.0.1:7000.
    #[arg(long)]
    pub upstream: std::net::SocketAddr,
    /// Round-trip time to add, in milliseconds (half in each direction).
    #[arg(long, default_value_t = 80)]
    pub rtt_ms: u64,
    /// Extra random delay per chunk, 0..=J milliseconds (byte order is kept).
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
}

/// Runs the benchmark selected by `args` and prints its report.
pub async fn run(args: BenchArgs) -> Result<()> {
    match args.command {
        BenchCommand::Oneshot(args) => crate::oneshot::run(args).await,
        BenchCommand::Throughput(args) => crate::throughput::run(args).await,
        BenchCommand::Spawn(args) => crate::spawn::run(args).await,
        BenchCommand::Memory(args) => crate::memory::run(args).await,
        BenchCommand::ConnectRun(args) => crate::connect_run::run(args).await,
        BenchCommand::Shell(args) => crate::shell::run(args).await,
        BenchCommand::Proxy(args) => run_proxy(args).await,
    }
}

async fn run_proxy(args: ProxyArgs) -> Result<()> {
    let link = crate::proxy::Link {
        rtt: std::time::Duration::from_millis(args.rtt_ms),
        jitter: std::time::Duration::from_millis(args.jitter_ms),
    };
    let proxy = crate::proxy::start(args.listen, args.upstream, link).await?;
    println!("{}", proxy.local_addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
