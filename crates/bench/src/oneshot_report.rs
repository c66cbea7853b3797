//! Rendering `oneshot` results in the layout of the seed's A/B table (codex PR #30273):
//! rows are metrics, columns are the arms of each server plus a change column, followed by
//! ratios between servers, the per-run p50s and the reproduce line; and the same data with
//! every sample as JSON.

use serde_json::{Value, json};
use std::fmt::Write as _;

use crate::oneshot::{Arm, CWD, Cell, Measured, OneshotArgs, PROGRAM, Sample};
use crate::stats::{median, percentile};
use crate::table::{change_ms, machine, markdown, ms, ratio, reproduce_block};

/// The timed parts of a one-shot.
#[derive(Debug, Clone, Copy)]
enum Metric {
    Total,
    Start,
    Wait,
    FinalRead,
}

impl Metric {
    const ALL: [Metric; 4] = [Self::Total, Self::Start, Self::Wait, Self::FinalRead];

    fn label(self) -> &'static str {
        match self {
            Self::Total => "End-to-end completion",
            Self::Start => "Start RPC",
            Self::Wait => "Completion wait",
            Self::FinalRead => "Final `process/read` RPC",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Total => "endToEndMs",
            Self::Start => "startRpcMs",
            Self::Wait => "completionWaitMs",
            Self::FinalRead => "finalReadRpcMs",
        }
    }

    fn value(self, sample: &Sample) -> Option<f64> {
        match self {
            Self::Total => Some(sample.total_ms),
            Self::Start => Some(sample.start_ms),
            Self::Wait => Some(sample.wait_ms),
            Self::FinalRead => sample.read_ms,
        }
    }
}

/// Everything a `oneshot` report shows.
pub struct Report<'a> {
    pub args: &'a OneshotArgs,
    pub measured: &'a Measured,
    pub reproduce: String,
}

impl Report<'_> {
    fn cells(&self, k: usize) -> impl Iterator<Item = &Cell> {
        self.measured.runs.iter().map(move |run| &run[k])
    }

    fn index(&self, server: usize, arm: usize) -> usize {
        server * self.measured.arms.len() + arm
    }

    /// The nearest-rank percentile `p` of `metric` in each run of cell `k`.
    fn per_run(&self, k: usize, metric: Metric, p: u32) -> Vec<f64> {
        self.cells(k)
            .filter_map(|cell| {
                let mut values: Vec<f64> = cell
                    .samples
                    .iter()
                    .filter_map(|s| metric.value(s))
                    .collect();
                values.sort_by(f64::total_cmp);
                (!values.is_empty()).then(|| percentile(&values, p))
            })
            .collect()
    }

    /// The median over runs of the per-run percentile; `None` when the arm has no such part.
    fn figure(&self, k: usize, metric: Metric, p: u32) -> Option<f64> {
        let runs = self.per_run(k, metric, p);
        (!runs.is_empty()).then(|| median(&runs))
    }

    fn version(&self, server: usize) -> String {
        let first = self.index(server, 0);
        (first..first + self.measured.arms.len())
            .find_map(|k| self.cells(k).find_map(|c| c.version.clone()))
            .unwrap_or_else(|| "?".to_owned())
    }

    fn reads(&self, k: usize) -> String {
        let counts: Vec<String> = self.cells(k).map(|c| c.reads.to_string()).collect();
        counts.join(" / ")
    }

    fn arm_header(arm: Arm) -> &'static str {
        match arm {
            Arm::Read => "Final `process/read`",
            Arm::Events => "Pushed events",
        }
    }

    /// The seed layout, one group of columns per server.
    fn main_table(&self) -> String {
        let m = self.measured;
        let both = m.arms.len() == 2;
        let many = m.names.len() > 1;
        let mut headers: Vec<String> = vec!["Metric".to_owned()];
        for (s, name) in m.names.iter().enumerate() {
            let prefix = if many {
                format!("{name} {}: ", self.version(s))
            } else {
                String::new()
            };
            for &arm in &m.arms {
                headers.push(format!(">{prefix}{}", Self::arm_header(arm)));
            }
            if both {
                headers.push(format!(">{prefix}Change"));
            }
        }
        let mut rows = Vec::new();
        for metric in Metric::ALL {
            for p in [50, 95] {
                let mut row = vec![format!("{} p{p}", metric.label())];
                for s in 0..m.names.len() {
                    let values: Vec<Option<f64>> = (0..m.arms.len())
                        .map(|a| self.figure(self.index(s, a), metric, p))
                        .collect();
                    row.extend(values.iter().map(|v| v.map_or("eliminated".to_owned(), ms)));
                    if both {
                        row.push(match (values[0], values[1]) {
                            (Some(read), Some(events)) => change_ms(read, events),
                            (Some(read), None) => format!("−{}", ms(read)),
                            _ => "—".to_owned(),
                        });
                    }
                }
                rows.push(row);
            }
        }
        let mut row = vec![format!(
            "`process/read` requests per run of {}",
            self.args.iterations
        )];
        for s in 0..m.names.len() {
            row.extend((0..m.arms.len()).map(|a| self.reads(self.index(s, a))));
            if both {
                row.push(String::new());
            }
        }
        rows.push(row);
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        markdown(&headers, &rows)
    }

    /// Each other server's figures divided by the first server's, per arm.
    fn ratio_table(&self) -> String {
        let m = self.measured;
        let mut headers = vec!["Metric".to_owned()];
        for name in &m.names[1..] {
            for arm in &m.arms {
                headers.push(format!(">{name} ÷ {}, {}", m.names[0], arm.name()));
            }
        }
        let mut rows = Vec::new();
        for metric in Metric::ALL {
            for p in [50, 95] {
                let mut row = vec![format!("{} p{p}", metric.label())];
                for s in 1..m.names.len() {
                    for a in 0..m.arms.len() {
                        let base = self.figure(self.index(0, a), metric, p);
                        let other = self.figure(self.index(s, a), metric, p);
                        row.push(match (base, other) {
                            (Some(base), Some(other)) => ratio(other, base),
                            _ => "—".to_owned(),
                        });
                    }
                }
                rows.push(row);
            }
        }
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        markdown(&headers, &rows)
    }

    fn per_run_table(&self) -> String {
        let m = self.measured;
        let mut headers = vec!["server, arm".to_owned()];
        headers.extend((1..=m.runs.len()).map(|r| format!(">run {r}")));
        let mut rows = Vec::new();
        for (s, name) in m.names.iter().enumerate() {
            for (a, arm) in m.arms.iter().enumerate() {
                let mut row = vec![format!("{name}, {}", arm.name())];
                let p50s = self.per_run(self.index(s, a), Metric::Total, 50);
                row.extend(p50s.into_iter().map(ms));
                rows.push(row);
            }
        }
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        markdown(&headers, &rows)
    }

    /// The markdown report.
    pub fn markdown(&self) -> String {
        let a = self.args;
        let m = self.measured;
        let mut out = String::new();
        let _ = writeln!(out, "### rexec bench oneshot\n");
        let _ = writeln!(
            out,
            "One-shot `{PROGRAM}` (no tty, empty env, cwd `{CWD}`) through the rexec client over \
             {}. Arms: *final `process/read`* = complete from events, then one more \
             `process/read(afterSeq = closed seq, waitMs = 0)` (the way before codex PR #30273); \
             *pushed events* = complete from pushed events only. {} one-shots per server × arm \
             and run after {} warm-up{}, {} run{}, one client connection per server × arm, \
             interleaved per iteration{}. Each figure is the median over runs of that run's \
             nearest-rank percentile. Machine: {}.\n",
            a.servers.link_text(),
            a.iterations,
            a.warmup,
            if a.warmup == 1 { "" } else { "s" },
            a.runs,
            if a.runs == 1 {
                ""
            } else {
                "s, fresh servers per run"
            },
            if a.pause_ms == 0 {
                String::new()
            } else {
                format!(", {} ms idle before each one-shot", a.pause_ms)
            },
            machine()
        );
        if m.names.len() == 1 {
            let _ = writeln!(out, "Server: {} {}.\n", m.names[0], self.version(0));
        }
        out.push_str(&self.main_table());
        if m.names.len() > 1 {
            let _ = writeln!(out, "\nRatios (each server's figure ÷ {}'s):\n", m.names[0]);
            out.push_str(&self.ratio_table());
        }
        if m.runs.len() > 1 {
            let _ = writeln!(out, "\nPer-run p50 of end-to-end completion:\n");
            out.push_str(&self.per_run_table());
        }
        out.push_str(&reproduce_block(&self.reproduce));
        out
    }

    /// The JSON report: parameters, every cell's figures and raw samples per run.
    pub fn json(&self) -> Value {
        let a = self.args;
        let m = self.measured;
        let mut cells = Vec::new();
        for (s, name) in m.names.iter().enumerate() {
            for (i, arm) in m.arms.iter().enumerate() {
                let k = self.index(s, i);
                let mut figures = serde_json::Map::new();
                for metric in Metric::ALL {
                    figures.insert(
                        metric.key().to_owned(),
                        json!({
                            "p50": self.figure(k, metric, 50),
                            "p95": self.figure(k, metric, 95),
                            "p50PerRun": self.per_run(k, metric, 50),
                            "p95PerRun": self.per_run(k, metric, 95),
                        }),
                    );
                }
                let runs: Vec<Value> = self
                    .cells(k)
                    .map(|cell| {
                        json!({
                            "processReadRequests": cell.reads,
                            "samples": cell.samples.iter().map(|x| json!({
                                "endToEndMs": x.total_ms,
                                "startRpcMs": x.start_ms,
                                "completionWaitMs": x.wait_ms,
                                "finalReadRpcMs": x.read_ms,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                cells.push(json!({
                    "server": name,
                    "executorVersion": self.version(s),
                    "arm": arm.name(),
                    "figures": figures,
                    "runs": runs,
                }));
            }
        }
        json!({
            "benchmark": "oneshot",
            "program": PROGRAM,
            "cwd": CWD,
            "rttMs": a.servers.rtt_ms,
            "jitterMs": a.servers.jitter_ms,
            "iterations": a.iterations,
            "warmup": a.warmup,
            "runs": a.runs,
            "pauseMs": a.pause_ms,
            "percentile": "nearest rank: sorted[ceil(n*p/100)-1]; the median over runs of per-run values",
            "machine": machine(),
            "reproduce": self.reproduce,
            "cells": cells,
        })
    }
}
