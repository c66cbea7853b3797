//! `oneshot --raw`: how long a trivial process takes end to end, measured with the raw wire
//! client (`wire`) instead of the client library.
//!
//! Each iteration sends `process/start` for `/usr/bin/true` and stops two clocks: when the
//! start response arrives, and when the `process/closed` notification for that processId
//! arrives (events may come before the response; any order is handled). The client completes
//! from pushed events only and counts the `process/read` requests it sent, which must be 0.
//!
//! With several servers, each is started once per run and the iterations are interleaved
//! (iteration i runs on server A, then B, …) so machine noise hits all of them alike.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rexec_protocol::method;
use serde_json::json;

use crate::args::{emit, pairs};
use crate::oneshot::OneshotArgs;
use crate::proxy::Link;
use crate::raw_report::OneshotReport;
use crate::server::ServerSpec;
use crate::stats::Summary;
use crate::target;
use crate::wire::{Connection, Incoming};

/// The process every iteration starts.
pub const PROGRAM: &str = crate::oneshot::PROGRAM;
/// The working directory it starts in.
pub const CWD: &str = "file:///tmp";
/// A single iteration that takes longer than this fails the benchmark.
const ITERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config {
    pub servers: Vec<ServerSpec>,
    pub iterations: usize,
    pub warmup: usize,
    pub runs: usize,
    /// Idle milliseconds before each iteration on each server (not timed).
    pub pause_ms: u64,
    /// The simulated link in front of every server, if any.
    pub link: Option<Link>,
}

/// Runs `rexec bench oneshot --raw` and prints its report.
pub async fn run(args: OneshotArgs) -> Result<()> {
    let config = Config {
        servers: args.servers.specs()?,
        iterations: args.iterations,
        warmup: args.warmup,
        runs: args.runs,
        pause_ms: args.pause_ms,
        link: args.servers.link(),
    };
    let runs = measure(&config).await?;
    let mut words = args.servers.words(&config.servers);
    words.extend(pairs(&[
        ("--iterations", config.iterations.to_string()),
        ("--warmup", config.warmup.to_string()),
        ("--runs", config.runs.to_string()),
    ]));
    if config.pause_ms > 0 {
        words.extend(pairs(&[("--pause-ms", config.pause_ms.to_string())]));
    }
    words.push("--raw".to_owned());
    let report = OneshotReport {
        config: &config,
        runs: &runs,
        reproduce: crate::table::reproduce_line("oneshot", words),
    };
    emit(&report.markdown(), &report.json(), args.servers.json)
}

/// One measured iteration.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// From just before the `process/start` frame was written until its response was read.
    pub start_to_response_ms: f64,
    /// From just before the `process/start` frame was written until `process/closed` was read.
    pub start_to_closed_ms: f64,
    /// Whether `process/closed` arrived before the start response.
    pub closed_before_response: bool,
}

/// One server's measurements in one run.
#[derive(Debug, Clone)]
pub struct ServerRun {
    pub url: String,
    /// `environmentInfo.executorVersion` from the `initialize` result, if reported.
    pub executor_version: Option<String>,
    pub samples: Vec<Sample>,
    /// `process/read` requests sent on the connection (warm-up included); should be 0.
    pub process_read_requests: u64,
}

impl ServerRun {
    pub fn start_to_closed(&self) -> Summary {
        summary(self.samples.iter().map(|s| s.start_to_closed_ms))
    }

    pub fn start_to_response(&self) -> Summary {
        summary(self.samples.iter().map(|s| s.start_to_response_ms))
    }

    pub fn closed_before_response(&self) -> usize {
        self.samples
            .iter()
            .filter(|s| s.closed_before_response)
            .count()
    }
}

fn summary(samples: impl Iterator<Item = f64>) -> Summary {
    Summary::of(&samples.collect::<Vec<_>>()).expect("at least one iteration is measured")
}

/// Runs the whole benchmark; the result is indexed `[run][server]`.
pub async fn measure(config: &Config) -> Result<Vec<Vec<ServerRun>>> {
    if config.servers.is_empty() {
        bail!("no server to measure: give --server-cmd or --url");
    }
    if config.iterations == 0 || config.runs == 0 {
        bail!("--iterations and --runs must be at least 1");
    }
    let mut runs = Vec::with_capacity(config.runs);
    for run in 0..config.runs {
        eprintln!("run {}/{}", run + 1, config.runs);
        runs.push(run_once(config).await?);
    }
    Ok(runs)
}

async fn run_once(config: &Config) -> Result<Vec<ServerRun>> {
    let servers = target::start_all(&config.servers, config.link).await?;
    let outcome = measure_servers(config, &servers).await;
    target::stop_all(servers).await;
    outcome
}

async fn measure_servers(config: &Config, servers: &[target::Target]) -> Result<Vec<ServerRun>> {
    let mut conns = Vec::with_capacity(servers.len());
    let mut results = Vec::with_capacity(servers.len());
    for (spec, server) in config.servers.iter().zip(servers) {
        let (conn, init) = Connection::connect_initialized(&server.url, target::CLIENT_NAME)
            .await
            .with_context(|| format!("connecting to {} at {}", spec.name, server.url))?;
        let version = init["environmentInfo"]["executorVersion"]
            .as_str()
            .map(str::to_owned);
        eprintln!(
            "  {}: {} (executorVersion {})",
            spec.name,
            server.url,
            version.as_deref().unwrap_or("not reported")
        );
        conns.push(conn);
        results.push(ServerRun {
            url: server.url.clone(),
            executor_version: version,
            samples: Vec::with_capacity(config.iterations),
            process_read_requests: 0,
        });
    }

    for i in 0..config.warmup + config.iterations {
        for (s, conn) in conns.iter_mut().enumerate() {
            if config.pause_ms > 0 {
                tokio::time::sleep(Duration::from_millis(config.pause_ms)).await;
            }
            let process_id = format!("bench-{}", i + 1);
            let sample =
                match tokio::time::timeout(ITERATION_TIMEOUT, one_iteration(conn, &process_id))
                    .await
                {
                    Ok(Ok(sample)) => Ok(sample),
                    Ok(Err(error)) => Err(error),
                    Err(_) => Err(anyhow!("no process/closed within {ITERATION_TIMEOUT:?}")),
                }
                .with_context(|| {
                    format!(
                        "{} iteration {} ({process_id}); server stderr ended with:\n{}",
                        config.servers[s].name,
                        i + 1,
                        servers[s].server.stderr_tail()
                    )
                })?;
            if i >= config.warmup {
                results[s].samples.push(sample);
            }
        }
    }

    for (conn, result) in conns.into_iter().zip(&mut results) {
        result.process_read_requests = conn.process_read_requests();
        conn.close().await;
    }
    Ok(results)
}

/// Starts `/usr/bin/true` as `process_id` and waits for both its start response and its
/// `process/closed` notification, in whichever order they come.
pub async fn one_iteration(conn: &mut Connection, process_id: &str) -> Result<Sample> {
    let id = conn.next_request_id();
    let text = json!({
        "id": id,
        "method": method::PROCESS_START,
        "params": {
            "processId": process_id,
            "argv": [PROGRAM],
            "cwd": CWD,
            "env": {},
            "tty": false,
            "pipeStdin": false,
            "arg0": null,
        },
    })
    .to_string();
    let started = Instant::now();
    conn.send_request_text(id, method::PROCESS_START, text)
        .await?;
    let mut response_at = None;
    let mut closed_at = None;
    while response_at.is_none() || closed_at.is_none() {
        let frame = conn.next_frame().await?;
        match frame.message {
            Incoming::Response { id: got, outcome } if got.as_i64() == Some(id) => {
                outcome.map_err(|error| anyhow!("process/start failed: {error}"))?;
                response_at = Some(frame.at);
            }
            Incoming::Response {
                outcome: Err(error),
                ..
            } => bail!("server sent an error for no request of ours: {error}"),
            Incoming::Notification { method, params }
                if method == method::PROCESS_CLOSED && params["processId"] == process_id =>
            {
                closed_at = Some(frame.at);
            }
            _ => {}
        }
    }
    let (Some(response_at), Some(closed_at)) = (response_at, closed_at) else {
        unreachable!("the loop ends only when both are set");
    };
    let ms = |at: Instant| at.duration_since(started).as_secs_f64() * 1000.0;
    Ok(Sample {
        start_to_response_ms: ms(response_at),
        start_to_closed_ms: ms(closed_at),
        closed_before_response: closed_at < response_at,
    })
}
