//! Rendering `oneshot --raw` results: a markdown table with the command line that reproduces it,
//! and the same data (per-run summaries and raw samples) as JSON.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::raw::{CWD, Config, PROGRAM, ServerRun};
use crate::stats::Summary;
use crate::table::machine;

/// Everything a `oneshot` report shows.
pub struct OneshotReport<'a> {
    pub config: &'a Config,
    /// Indexed `[run][server]`.
    pub runs: &'a [Vec<ServerRun>],
    /// A shell command line that runs the same benchmark again.
    pub reproduce: String,
}

/// One server's numbers over all runs (the field-wise median of per-run summaries).
struct Aggregate {
    closed: Summary,
    response: Summary,
}

impl OneshotReport<'_> {
    fn per_server(&self, s: usize) -> impl Iterator<Item = &ServerRun> {
        self.runs.iter().map(move |run| &run[s])
    }

    fn aggregate(&self, s: usize) -> Aggregate {
        let closed: Vec<_> = self.per_server(s).map(ServerRun::start_to_closed).collect();
        let response: Vec<_> = self
            .per_server(s)
            .map(ServerRun::start_to_response)
            .collect();
        Aggregate {
            closed: Summary::median_of(&closed).expect("at least one run"),
            response: Summary::median_of(&response).expect("at least one run"),
        }
    }

    fn version(&self, s: usize) -> String {
        self.per_server(s)
            .find_map(|r| r.executor_version.clone())
            .unwrap_or_else(|| "?".to_owned())
    }

    /// The markdown report: description, table, counters, reproduce line.
    pub fn markdown(&self) -> String {
        let c = self.config;
        let aggregates: Vec<_> = (0..c.servers.len()).map(|s| self.aggregate(s)).collect();
        let mut out = String::new();
        let _ = writeln!(out, "### rexec bench oneshot --raw\n");
        let _ = writeln!(
            out,
            "`process/start` of `{PROGRAM}` (no tty, empty env, cwd `{CWD}`), timed until its \
             start response and until its `process/closed` notification. {} iterations after {} \
             warm-up, {} run{}, servers interleaved per iteration{}{}. Times in ms, nearest-rank \
             percentiles; ratio = p50 / p50 of `{}`. Machine: {}.\n",
            c.iterations,
            c.warmup,
            c.runs,
            if c.runs == 1 { "" } else { "s" },
            if c.runs == 1 {
                ""
            } else {
                "; each figure is the median over runs of that run's figure"
            },
            match (c.pause_ms, c.link) {
                (0, None) => String::new(),
                (0, Some(link)) => format!(", through a proxy adding {link:?}"),
                (pause, None) => format!(", {pause} ms idle before each iteration"),
                (pause, Some(link)) => format!(
                    ", {pause} ms idle before each iteration, through a proxy adding {link:?}"
                ),
            },
            c.servers[0].name,
            machine()
        );
        let _ = writeln!(
            out,
            "| server | version | metric | p50 | p95 | p99 | min | max | mean | p50 ratio |"
        );
        let _ = writeln!(
            out,
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for (s, spec) in c.servers.iter().enumerate() {
            let version = self.version(s);
            let rows = [
                ("start → closed", aggregates[s].closed, aggregates[0].closed),
                (
                    "start → response",
                    aggregates[s].response,
                    aggregates[0].response,
                ),
            ];
            for (metric, m, first) in rows {
                let _ = writeln!(
                    out,
                    "| {} | {version} | {metric} | {} | {} | {} | {} | {} | {} | {:.3}× |",
                    spec.name,
                    ms(m.p50),
                    ms(m.p95),
                    ms(m.p99),
                    ms(m.min),
                    ms(m.max),
                    ms(m.mean),
                    m.p50 / first.p50
                );
            }
        }
        if c.runs > 1 {
            let _ = writeln!(out, "\nPer-run p50 of start → closed (ms):\n");
            let _ = write!(out, "| server |");
            for r in 1..=c.runs {
                let _ = write!(out, " run {r} |");
            }
            let _ = write!(out, "\n| --- |");
            for _ in 0..c.runs {
                let _ = write!(out, " ---: |");
            }
            out.push('\n');
            for (s, spec) in c.servers.iter().enumerate() {
                let _ = write!(out, "| {} |", spec.name);
                for run in self.per_server(s) {
                    let _ = write!(out, " {} |", ms(run.start_to_closed().p50));
                }
                out.push('\n');
            }
        }
        let counters = |f: &dyn Fn(&ServerRun) -> String| {
            c.servers
                .iter()
                .enumerate()
                .map(|(s, spec)| {
                    let values: Vec<_> = self.per_server(s).map(f).collect();
                    format!("{} {}", spec.name, values.join("/"))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "\n`process/read` requests sent: {}. `closed` before the start response: {} (of {} per run).",
            counters(&|r| r.process_read_requests.to_string()),
            counters(&|r| r.closed_before_response().to_string()),
            c.iterations
        );
        out.push_str(&crate::table::reproduce_block(&self.reproduce));
        out
    }

    /// The JSON report: parameters, per-server aggregate and per-run summaries with samples.
    pub fn json(&self) -> Value {
        let c = self.config;
        let first = self.aggregate(0);
        let servers: Vec<Value> = c
            .servers
            .iter()
            .enumerate()
            .map(|(s, spec)| {
                let aggregate = self.aggregate(s);
                let runs: Vec<Value> = self
                    .per_server(s)
                    .map(|run| {
                        json!({
                            "url": run.url,
                            "executorVersion": run.executor_version,
                            "startToClosedMs": run.start_to_closed().to_json(),
                            "startToResponseMs": run.start_to_response().to_json(),
                            "processReadRequests": run.process_read_requests,
                            "closedBeforeResponse": run.closed_before_response(),
                            "samples": run.samples.iter().map(|x| json!({
                                "startToClosedMs": x.start_to_closed_ms,
                                "startToResponseMs": x.start_to_response_ms,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json!({
                    "name": spec.name,
                    "given": spec.given,
                    "executorVersion": self.per_server(s).find_map(|r| r.executor_version.clone()),
                    "startToClosedMs": aggregate.closed.to_json(),
                    "startToResponseMs": aggregate.response.to_json(),
                    "p50RatioStartToClosed": aggregate.closed.p50 / first.closed.p50,
                    "p50RatioStartToResponse": aggregate.response.p50 / first.response.p50,
                    "runs": runs,
                })
            })
            .collect();
        json!({
            "benchmark": "oneshot",
            "program": PROGRAM,
            "iterations": c.iterations,
            "warmup": c.warmup,
            "runs": c.runs,
            "pauseMs": c.pause_ms,
            "percentile": "nearest rank: sorted[ceil(n*p/100)-1]; over several runs, the median of per-run values",
            "machine": machine(),
            "reproduce": self.reproduce,
            "servers": servers,
        })
    }
}

/// Milliseconds with three decimals (microsecond resolution).
fn ms(value: f64) -> String {
    format!("{value:.3}")
}
