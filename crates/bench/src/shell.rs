//! The `shell` benchmark: `true` in a warm named shell (`Shell::run`, one `shell/run`
//! round trip, no spawn) against a fresh one-shot `Client::run(/usr/bin/true)` on the same
//! server and connection. Iteration i runs both arms before iteration i+1, so machine noise
//! hits them alike; figures are medians of per-run nearest-rank percentiles over runs with
//! freshly started servers.

use anyhow::{Context, Result, anyhow, bail, ensure};
use rexec_client::ProcessSpec;
use serde_json::json;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::args::{ServerArgs, emit, pairs};
use crate::oneshot::{CWD, PROGRAM};
use crate::progress::Progress;
use crate::stats::Summary;
use crate::table::{machine, markdown, ms, ratio, reproduce_block, reproduce_line};
use crate::target;

const ITERATION_TIMEOUT: Duration = Duration::from_secs(30);
const ARMS: [&str; 2] = ["warm shell `true`", "one-shot `/usr/bin/true`"];

/// Options of `rexec bench shell`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShellBenchArgs {
    #[command(flatten)]
    pub servers: ServerArgs,
    /// Measured iterations per server, arm and run.
    #[arg(long, default_value_t = 200)]
    pub iterations: usize,
    /// Unmeasured iterations per server and arm before measuring, in every run.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Independent runs, each with freshly started servers.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// Runs `rexec bench shell`.
pub async fn run(args: ShellBenchArgs) -> Result<()> {
    if args.iterations == 0 || args.runs == 0 {
        bail!("--iterations and --runs must be at least 1");
    }
    let specs = args.servers.specs()?;
    let per_run = (args.warmup + args.iterations) * specs.len() * ARMS.len();
    let progress = Progress::new((per_run * args.runs) as u64, "shell");
    // summaries[server][arm][run]
    let mut summaries = vec![vec![Vec::new(); ARMS.len()]; specs.len()];
    for run in 0..args.runs {
        progress.note(format!("run {}/{}", run + 1, args.runs));
        let targets = target::start_all(&specs, args.servers.link()).await?;
        let measured = measure(&args, &targets, &progress).await;
        target::stop_all(targets).await;
        for (server, arms) in measured?.into_iter().enumerate() {
            for (arm, samples) in arms.into_iter().enumerate() {
                summaries[server][arm].extend(Summary::of(&samples));
            }
        }
    }
    progress.finish();
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for (server, arms) in summaries.iter().enumerate() {
        let medians: Vec<Summary> = arms
            .iter()
            .map(|runs| Summary::median_of(runs).context("no samples"))
            .collect::<Result<_>>()?;
        for (arm, summary) in medians.iter().enumerate() {
            rows.push(vec![
                specs[server].name.clone(),
                ARMS[arm].to_owned(),
                ms(summary.p50),
                ms(summary.p95),
                ms(summary.p99),
                ratio(summary.p50, medians[1].p50),
            ]);
            json_rows.push(json!({
                "server": specs[server].name,
                "arm": ARMS[arm],
                "latencyMs": summary.to_json(),
            }));
        }
    }
    let mut words = args.servers.words(&specs);
    words.extend(pairs(&[
        ("--iterations", args.iterations.to_string()),
        ("--warmup", args.warmup.to_string()),
        ("--runs", args.runs.to_string()),
    ]));
    let line = reproduce_line("shell", words);
    let mut report = String::new();
    let _ = writeln!(
        report,
        "## shell: warm named shell vs one-shot ({}; {} iterations after {} warm-ups, \
         median of {} runs; {})\n",
        args.servers.link_text(),
        args.iterations,
        args.warmup,
        args.runs,
        machine()
    );
    report.push_str(&markdown(
        &["server", "arm", "p50", "p95", "p99", "p50 vs one-shot"],
        &rows,
    ));
    report.push_str(&reproduce_block(&line));
    let json = json!({"benchmark": "shell", "rows": json_rows, "reproduce": line});
    emit(&report, &json, args.servers.json)
}

/// One run: `samples[server][arm]`, in ms.
async fn measure(
    args: &ShellBenchArgs,
    targets: &[target::Target],
    progress: &Progress,
) -> Result<Vec<Vec<Vec<f64>>>> {
    let mut clients = Vec::new();
    for target in targets {
        let client = target.connect().await?;
        ensure!(
            client.supports(rexec_client::extensions::NAMED_SHELLS),
            "{} has no named shells",
            target.name
        );
        clients.push(client);
    }
    let shells: Vec<_> = clients
        .iter()
        .map(|client| client.shell("bench").cwd(CWD))
        .collect();
    let mut samples = vec![vec![Vec::with_capacity(args.iterations); ARMS.len()]; targets.len()];
    for i in 0..args.warmup + args.iterations {
        for (k, client) in clients.iter().enumerate() {
            for arm in 0..ARMS.len() {
                let began = Instant::now();
                let done = tokio::time::timeout(ITERATION_TIMEOUT, async {
                    if arm == 0 {
                        let outcome = shells[k].run("true").await?;
                        ensure!(
                            outcome.exit_code == Some(0),
                            "`true` in the shell: {outcome:?}"
                        );
                    } else {
                        let completion = client.run(ProcessSpec::new([PROGRAM]).cwd(CWD)).await?;
                        ensure!(completion.success(), "{PROGRAM}: {completion:?}");
                    }
                    Ok(())
                })
                .await;
                let elapsed = began.elapsed().as_secs_f64() * 1000.0;
                done.unwrap_or_else(|_| Err(anyhow!("not done within {ITERATION_TIMEOUT:?}")))
                    .with_context(|| {
                        format!("{} {} iteration {}", targets[k].name, ARMS[arm], i + 1)
                    })?;
                if i >= args.warmup {
                    samples[k][arm].push(elapsed);
                }
                progress.inc();
            }
        }
    }
    for client in &clients {
        client.close().await;
    }
    Ok(samples)
}
