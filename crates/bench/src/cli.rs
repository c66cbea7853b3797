//! Command-line surface of the benchmarks: `rexec bench <benchmark> …`.
//!
//! The binary mounts [`BenchArgs`] as its `bench` subcommand and calls [`run`].

use anyhow::Result;

use crate::oneshot::{self, Config};
use crate::report::OneshotReport;
use crate::server::{self, Source};

/// `rexec bench`: latency benchmarks against one or more exec-servers.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Latency of one-shot `/usr/bin/true` processes: process/start until process/closed.
    Oneshot(OneshotArgs),
    /// A TCP proxy that adds latency (RTT/2 each way), for a controlled wide-area link.
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

/// Options of `rexec bench oneshot`.
#[derive(Debug, Clone, clap::Args)]
pub struct OneshotArgs {
    /// A command that starts a server and prints its `ws://` URL as its first stdout line;
    /// `--listen ws://127.0.0.1:0` is appended. Split with shell quoting rules; an optional
    /// `NAME=` prefix labels it. Repeatable; servers are listed in the order given, commands
    /// before URLs, and ratios are relative to the first.
    #[arg(long = "server-cmd", value_name = "[NAME=]CMD")]
    pub server_cmd: Vec<String>,
    /// An already running server, optionally labelled `NAME=ws://…`. Repeatable.
    #[arg(long, value_name = "[NAME=]URL")]
    pub url: Vec<String>,
    /// Measured iterations per server and run.
    #[arg(long, default_value_t = 200)]
    pub iterations: usize,
    /// Unmeasured iterations per server before measuring.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Independent runs, each with freshly started servers; figures are medians over runs.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Idle time before each iteration on each server, outside the clock. Nagle's algorithm
    /// on a server's socket meets the client's delayed ACK only when requests follow replies
    /// closely (Linux "pingpong" mode), so this changes what such a server shows.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub pause_ms: u64,
    /// Print the results as JSON on stdout (the markdown table then goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark selected by `args` and prints its report.
pub async fn run(args: BenchArgs) -> Result<()> {
    match args.command {
        BenchCommand::Oneshot(args) => run_oneshot(args).await,
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

async fn run_oneshot(args: OneshotArgs) -> Result<()> {
    let mut servers = Vec::new();
    for given in &args.server_cmd {
        servers.push(server::parse_server_cmd(given)?);
    }
    for given in &args.url {
        servers.push(server::parse_url(given)?);
    }
    server::dedupe_names(&mut servers);
    let config = Config {
        servers,
        iterations: args.iterations,
        warmup: args.warmup,
        runs: args.runs,
        pause_ms: args.pause_ms,
    };
    let runs = oneshot::measure(&config).await?;
    let report = OneshotReport {
        config: &config,
        runs: &runs,
        reproduce: reproduce_line(&config, args.json),
    };
    if args.json {
        eprintln!("{}", report.markdown());
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        println!("{}", report.markdown());
    }
    Ok(())
}

/// The command line that reruns `config`: this process's own argv up to the `oneshot` word
/// (or `rexec bench oneshot` when it has none), then every option spelled out.
fn reproduce_line(config: &Config, json: bool) -> String {
    let argv: Vec<String> = std::env::args().collect();
    let mut words: Vec<String> = match argv.iter().position(|a| a == "oneshot") {
        Some(i) => argv[..=i].to_vec(),
        None => ["rexec", "bench", "oneshot"].map(str::to_owned).to_vec(),
    };
    for (flag, value) in [
        ("--iterations", config.iterations),
        ("--warmup", config.warmup),
        ("--runs", config.runs),
    ] {
        words.push(flag.to_owned());
        words.push(value.to_string());
    }
    if config.pause_ms > 0 {
        words.push("--pause-ms".to_owned());
        words.push(config.pause_ms.to_string());
    }
    for spec in &config.servers {
        let flag = match spec.source {
            Source::Command(_) => "--server-cmd",
            Source::Url(_) => "--url",
        };
        words.push(flag.to_owned());
        words.push(spec.given.clone());
    }
    if json {
        words.push("--json".to_owned());
    }
    shell_words::join(words)
}
