//! Scenario runner and shared helpers: [`run`] (what each test [`crate::conformance_test!`]
//! generates calls), the skip rules, process-start params, and the process-level helpers
//! on [`Client`] (collect events until `process/closed`, read, write).

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use crate::client::Client;
use crate::server::{self, Server, ServerOptions, SharedLog, Target};

/// Upper bound on one whole scenario: a backstop only; scenarios wait with their own
/// deadlines and finish in a few seconds when things work.
const SCENARIO_LIMIT: Duration = Duration::from_secs(90);
/// How long to wait for a process event that should come promptly.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// PATH given to every child (children get exactly the env they are passed).
pub const CHILD_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What a scenario gets: the target and a way to start servers of that kind.
#[derive(Clone)]
pub struct Ctx {
    pub target: Target,
    logs: Arc<Mutex<Vec<SharedLog>>>,
}

impl Ctx {
    /// A server with default flags.
    pub async fn server(&self) -> Result<Server> {
        self.server_with(&ServerOptions::default()).await
    }

    pub async fn server_with(&self, options: &ServerOptions) -> Result<Server> {
        let server = Server::spawn(self.target, options).await?;
        self.logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(server.log());
        Ok(server)
    }

    /// A server with default flags and an initialized client on it.
    pub async fn server_and_client(&self) -> Result<(Server, Client)> {
        let server = self.server().await?;
        let mut client = Client::connect(&server).await?;
        client.initialize().await?;
        Ok((server, client))
    }
}

/// Runs one scenario against one target, applying the skip rules; panics on failure with
/// the error chain and the tail of every server's output.
pub async fn run<F, Fut>(target: Target, test_name: &str, rexec_only: Option<&str>, scenario: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    if target == Target::Codex {
        // Generated `#[ignore]`d; reached only when ignored tests are asked for.
        if let Some(why) = rexec_only {
            say_skipped(&format!("SKIPPED {test_name}: rexec extension ({why})"));
            return;
        }
        crate::codex::require_codex_bin(test_name);
    }
    let ctx = Ctx {
        target,
        logs: Arc::new(Mutex::new(Vec::new())),
    };
    let logs = ctx.logs.clone();
    let outcome = tokio::time::timeout(SCENARIO_LIMIT, scenario(ctx)).await;
    let failure = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(error)) => format!("{test_name} failed: {error:#}"),
        Err(_) => format!("{test_name} did not finish within {SCENARIO_LIMIT:?}"),
    };
    let mut report = failure;
    for log in logs.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        report.push('\n');
        report.push_str(&server::lock(log).render());
    }
    panic!("{report}");
}

/// Prints a SKIPPED line straight to stderr: libtest's capture of `eprintln!` would hide
/// it for a passing test, and a skip must never be silent.
pub fn say_skipped(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Whether `program` runs here (`program version_flag`); when not, `test` is skipped
/// visibly, and under `CI=true`, which installs it, that is an error.
pub fn installed_or_skipped(program: &str, version_flag: &str, test: &str) -> Result<bool> {
    let runs = std::process::Command::new(program)
        .arg(version_flag)
        .output()
        .is_ok();
    if !runs {
        ensure!(!crate::locate::in_ci(), "CI=true requires {program}");
        say_skipped(&format!("SKIPPED {test}: {program} is not installed"));
    }
    Ok(runs)
}

/// Run `command` to its end within `deadline`, `stdin` piped in (or /dev/null), its
/// stdout and stderr captured.
pub async fn output_within(
    mut command: tokio::process::Command,
    stdin: Option<&[u8]>,
    deadline: Duration,
) -> Result<std::process::Output> {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt as _;
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().context("starting the command")?;
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().context("stdin")?;
        pipe.write_all(bytes).await?;
    }
    tokio::time::timeout(deadline, child.wait_with_output())
        .await
        .context("the command did not finish in time")?
        .context("waiting for the command")
}

// ----- process/start params -----

/// `process/start` params for `argv`: cwd /tmp, env {PATH}, no tty, no stdin pipe.
pub fn start_params(process_id: &str, argv: &[&str]) -> Value {
    json!({
        "processId": process_id,
        "argv": argv,
        "cwd": "file:///tmp",
        "env": {"PATH": CHILD_PATH},
        "tty": false,
        "pipeStdin": false,
        "arg0": null,
    })
}

/// `process/start` params for `sh -c script`.
pub fn sh(process_id: &str, script: &str) -> Value {
    start_params(process_id, &["sh", "-c", script])
}

/// Decodes a base64 `chunk`.
pub fn b64(chunk: &Value) -> Result<Vec<u8>> {
    let text = chunk
        .as_str()
        .with_context(|| format!("chunk is not a string: {chunk}"))?;
    base64_simd::STANDARD
        .decode_to_vec(text)
        .with_context(|| format!("chunk is not base64: {text:?}"))
}

pub fn encode(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

/// A pushed process event: `process/output`, `process/exited` or `process/closed`.
#[derive(Debug, Clone)]
pub struct Event {
    pub method: String,
    pub params: Value,
}

impl Event {
    pub fn seq(&self) -> Option<u64> {
        self.params["seq"].as_u64()
    }
    pub fn is(&self, short: &str) -> bool {
        self.method == format!("process/{short}")
    }
}

/// Every event of one process up to and including `process/closed`.
#[derive(Debug, Clone, Default)]
pub struct Events(pub Vec<Event>);

impl Events {
    /// Concatenated bytes of the output events of `stream` (stdout, stderr or pty).
    pub fn output(&self, stream: &str) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let mut outputs: Vec<&Event> = self.0.iter().filter(|e| e.is("output")).collect();
        outputs.sort_by_key(|e| e.seq());
        for event in outputs {
            if event.params["stream"] == stream {
                bytes.extend(b64(&event.params["chunk"])?);
            }
        }
        Ok(bytes)
    }

    pub fn output_text(&self, stream: &str) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.output(stream)?).into_owned())
    }

    pub fn exited(&self) -> Result<&Event> {
        self.0
            .iter()
            .find(|e| e.is("exited"))
            .with_context(|| format!("no process/exited event: {self:?}"))
    }

    pub fn exit_code(&self) -> Result<i64> {
        let exited = self.exited()?;
        exited.params["exitCode"]
            .as_i64()
            .with_context(|| format!("exited without an integer exitCode: {}", exited.params))
    }

    /// `closed` has arrived and so has every seq between the first one collected here and
    /// it (earlier seqs may have been consumed by a previous wait). Codex 0.169 can push
    /// events out of seq order (`closed` before `exited`), so `closed` alone is not the end.
    fn complete(&self) -> bool {
        let Some(last) = self.0.iter().find(|e| e.is("closed")).and_then(Event::seq) else {
            return false;
        };
        let mut seen: Vec<u64> = self.0.iter().filter_map(Event::seq).collect();
        seen.sort_unstable();
        seen.dedup();
        let first = seen.first().copied().unwrap_or(last);
        seen == (first..=last).collect::<Vec<u64>>()
    }

    pub fn seqs(&self) -> Vec<Option<u64>> {
        self.0.iter().map(Event::seq).collect()
    }

    /// Seqs are exactly 1..=n, `exited` appears once and `closed` has the last seq. For
    /// rexec (`process/orderedNotifications`) they also arrive in that order, `closed`
    /// last; codex 0.169 may push them out of order (an exit before the output it follows).
    pub fn check_sequence(&self, target: Target) -> Result<()> {
        let seqs = self.seqs();
        let expected: Vec<Option<u64>> = (1..=seqs.len() as u64).map(Some).collect();
        let mut sorted = seqs.clone();
        sorted.sort();
        let in_order = seqs == expected;
        ensure!(
            sorted == expected && (in_order || target == Target::Codex),
            "seqs are {seqs:?}, expected 1..={}: {self:?}",
            seqs.len()
        );
        let exits = self.0.iter().filter(|e| e.is("exited")).count();
        ensure!(exits == 1, "{exits} exited events: {self:?}");
        let closed = self.0.iter().find(|e| e.is("closed"));
        ensure!(
            closed.and_then(Event::seq) == Some(seqs.len() as u64),
            "closed does not have the last seq: {self:?}"
        );
        ensure!(
            target == Target::Codex || self.0.last().is_some_and(|e| e.is("closed")),
            "closed is not last: {self:?}"
        );
        Ok(())
    }
}

impl Client {
    /// `process/start` that must succeed; returns the result.
    pub async fn start(&mut self, params: Value) -> Result<Value> {
        let id = params["processId"].as_str().unwrap_or_default().to_string();
        self.call("process/start", params)
            .await
            .with_context(|| format!("starting process {id}"))
    }

    /// Collects this process's pushed events until `process/closed`.
    pub async fn events_until_closed(
        &mut self,
        process_id: &str,
        timeout: Duration,
    ) -> Result<Events> {
        let deadline = Instant::now() + timeout;
        let mut events = Events::default();
        loop {
            let Some(n) = self.next_process_notification(process_id, deadline).await? else {
                bail!("process {process_id} not closed within {timeout:?}; got {events:?}");
            };
            let event = Event {
                method: n["method"].as_str().unwrap_or_default().to_string(),
                params: n["params"].clone(),
            };
            events.0.push(event);
            if events.complete() {
                return Ok(events);
            }
        }
    }

    /// Waits for the next pushed event of `process_id`.
    pub async fn next_event(&mut self, process_id: &str, timeout: Duration) -> Result<Event> {
        let n = self
            .next_process_notification(process_id, Instant::now() + timeout)
            .await?
            .with_context(|| format!("no event for process {process_id} within {timeout:?}"))?;
        Ok(Event {
            method: n["method"].as_str().unwrap_or_default().to_string(),
            params: n["params"].clone(),
        })
    }

    /// Collects pushed output of `process_id` until its text contains `needle`.
    pub async fn wait_output_containing(
        &mut self,
        process_id: &str,
        needle: &str,
        timeout: Duration,
    ) -> Result<(String, Events)> {
        let deadline = Instant::now() + timeout;
        let mut events = Events::default();
        loop {
            let mut text = String::new();
            for stream in ["stdout", "stderr", "pty"] {
                text.push_str(&events.output_text(stream)?);
            }
            if text.contains(needle) {
                return Ok((text, events));
            }
            let Some(n) = self.next_process_notification(process_id, deadline).await? else {
                bail!(
                    "{process_id} printed no {needle:?} within {timeout:?}; output so far {text:?}"
                );
            };
            let event = Event {
                method: n["method"].as_str().unwrap_or_default().to_string(),
                params: n["params"].clone(),
            };
            events.0.push(event);
        }
    }

    /// `process/read` with explicit fields (`None` is sent as null).
    pub async fn read(
        &mut self,
        process_id: &str,
        after_seq: Option<u64>,
        max_bytes: Option<u64>,
        wait_ms: u64,
    ) -> Result<Value> {
        let params = json!({
            "processId": process_id,
            "afterSeq": after_seq,
            "maxBytes": max_bytes,
            "waitMs": wait_ms,
        });
        let timeout = RPC_SLACK + Duration::from_millis(wait_ms);
        self.request_within("process/read", params, timeout)
            .await?
            .map_err(|error| anyhow!("process/read of {process_id} failed: {error}"))
    }

    /// `process/write` that must get a response; returns the `status` string.
    pub async fn write(
        &mut self,
        process_id: &str,
        bytes: &[u8],
        write_id: &str,
    ) -> Result<String> {
        let params = json!({"processId": process_id, "chunk": encode(bytes), "writeId": write_id});
        let result = self.call("process/write", params).await?;
        result["status"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("write result without status: {result}"))
    }

    /// `process/terminate`; returns `running`.
    pub async fn terminate(&mut self, process_id: &str) -> Result<bool> {
        let result = self
            .call("process/terminate", json!({"processId": process_id}))
            .await?;
        result["running"]
            .as_bool()
            .with_context(|| format!("terminate result without running: {result}"))
    }

    /// A cheap request that proves the connection is alive and initialized.
    pub async fn ping(&mut self) -> Result<()> {
        let result = self
            .call(
                "process/terminate",
                json!({"processId": "conformance-no-such-process"}),
            )
            .await
            .context("the connection no longer answers requests")?;
        ensure!(
            result == json!({"running": false}),
            "liveness probe answered {result}"
        );
        Ok(())
    }
}

/// Extra time a request may take beyond its own `waitMs`.
const RPC_SLACK: Duration = Duration::from_secs(15);

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub async fn poll_until<F>(what: &str, timeout: Duration, mut condition: F) -> Result<()>
where
    F: FnMut() -> bool,
{
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() >= deadline {
            bail!("{what}: not true within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Asserts an RPC error's code and that its message contains `needle`.
pub fn check_error(error: &crate::client::RpcError, code: i64, needle: &str) -> Result<()> {
    ensure!(
        error.code == code && error.message.contains(needle),
        "expected error {code} containing {needle:?}, got {error}"
    );
    Ok(())
}
