//! The `shell` benchmark: `true` in a warm named shell (`Shell::run`, one `shell/run`
//! round trip, no spawn) against a fresh one-shot `Client::run(/usr/bin/true)` on the same
//! server and connection, and against a bash on a PTY driven by prompt marker and polling,
//! the way agent runtimes do it (`shell_polling`, one arm per `--poll-ms`). Iteration i runs
//! every arm before iteration i+1, so machine noise hits them alike; figures are medians of
//! per-run nearest-rank percentiles over runs with freshly started servers.

use anyhow::{Context, Result, anyhow, bail, ensure};
use rexec_client::ProcessSpec;
use serde_json::json;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::args::{ServerArgs, emit, pairs};
use crate::oneshot::{CWD, PROGRAM};
use crate::progress::Progress;
use crate::shell_polling::PollingShell;
use crate::stats::Summary;
use crate::table::{machine, markdown, ms, ratio, reproduce_block, reproduce_line};
use crate::target;

const ITERATION_TIMEOUT: Duration = Duration::from_secs(30);
const ARMS: [&str; 2] = ["warm shell `true`", "one-shot `/usr/bin/true`"];

/// The arms' names: the two above, then one per poll interval.
fn arm_names(args: &ShellBenchArgs) -> Vec<String> {
    let mut names: Vec<String> = ARMS.map(str::to_owned).into();
    names.extend(
        args.poll_ms
            .iter()
            .map(|ms| format!("PTY `true`, marker + poll every {ms} ms")),
    );
    names
}

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
    /// A prompt-marker-plus-polling arm per interval, in ms (OpenHands polls every 500).
    #[arg(
        long,
        value_name = "MS",
        value_delimiter = ',',
        default_value = "500,10"
    )]
    pub poll_ms: Vec<u64>,
}

/// Runs `rexec bench shell`.
pub async fn run(args: ShellBenchArgs) -> Result<()> {
    if args.iterations == 0 || args.runs == 0 {
        bail!("--iterations and --runs must be at least 1");
    }
    if args.poll_ms.contains(&0) {
        bail!("--poll-ms intervals must be at least 1");
    }
    let specs = args.servers.specs()?;
    let arms = arm_names(&args);
    let per_run = (args.warmup + args.iterations) * specs.len() * arms.len();
    let progress = Progress::new((per_run * args.runs) as u64, "shell");
    // summaries[server][arm][run]
    let mut summaries = vec![vec![Vec::new(); arms.len()]; specs.len()];
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
    for (server, runs_per_arm) in summaries.iter().enumerate() {
        let medians: Vec<Summary> = runs_per_arm
            .iter()
            .map(|runs| Summary::median_of(runs).context("no samples"))
            .collect::<Result<_>>()?;
        for (arm, summary) in medians.iter().enumerate() {
            rows.push(vec![
                specs[server].name.clone(),
                arms[arm].clone(),
                ms(summary.p50),
                ms(summary.p95),
                ms(summary.p99),
                ratio(summary.p50, medians[0].p50),
                ratio(summary.p50, medians[1].p50),
            ]);
            json_rows.push(json!({
                "server": specs[server].name,
                "arm": arms[arm],
                "latencyMs": summary.to_json(),
            }));
        }
    }
    let mut words = args.servers.words(&specs);
    words.extend(pairs(&[
        ("--iterations", args.iterations.to_string()),
        ("--warmup", args.warmup.to_string()),
        ("--runs", args.runs.to_string()),
        (
            "--poll-ms",
            args.poll_ms
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]));
    let line = reproduce_line("shell", words);
    let mut report = String::new();
    let _ = writeln!(
        report,
        "## shell: warm named shell vs one-shot vs prompt marker + polling ({}; {} iterations after {} warm-ups, \
         median of {} runs; {})\n",
        args.servers.link_text(),
        args.iterations,
        args.warmup,
        args.runs,
        machine()
    );
    report.push_str(&markdown(
        &[
            "server",
            "arm",
            "p50",
            "p95",
            "p99",
            "p50 vs warm shell",
            "p50 vs one-shot",
        ],
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
    // polled[server][interval]
    let mut polled = Vec::new();
    for (k, target) in targets.iter().enumerate() {
        let mut of_server = Vec::new();
        for (j, &interval) in args.poll_ms.iter().enumerate() {
            let id = format!("bench-poll-{k}-{j}");
            let shell = PollingShell::start(&target.url, id, Duration::from_millis(interval))
                .await
                .with_context(|| format!("{}: the polled shell", target.name))?;
            of_server.push(shell);
        }
        polled.push(of_server);
    }
    let arms = arm_names(args);
    let mut samples = vec![vec![Vec::with_capacity(args.iterations); arms.len()]; targets.len()];
    for i in 0..args.warmup + args.iterations {
        for (k, client) in clients.iter().enumerate() {
            for arm in 0..arms.len() {
                let began = Instant::now();
                let done = tokio::time::timeout(ITERATION_TIMEOUT, async {
                    if let Some(shell) = arm.checked_sub(ARMS.len()) {
                        let code = polled[k][shell].run("true").await?;
                        ensure!(code == 0, "`true` in the polled shell: $? = {code}");
                    } else if arm == 0 {
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
                        format!("{} {} iteration {}", targets[k].name, arms[arm], i + 1)
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
    for shell in polled.into_iter().flatten() {
        shell.close().await;
    }
    Ok(samples)
}
