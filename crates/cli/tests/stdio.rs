//! The stdio transport (`--listen stdio`): one JSON message per line each way. Runs against
//! rexec and codex exec-server 0.169.0 (found, or ignored when missing, by `rexec-testkit`). rexec also exits when stdin closes, killing its children.

use anyhow::{Context, Result, ensure};
use rexec_testkit::codex;
use rexec_testkit::scratch::ScratchDir;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const DEADLINE: Duration = Duration::from_secs(10);

struct StdioServer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    _codex_home: Option<ScratchDir>,
}

impl StdioServer {
    fn spawn(mut command: Command, codex_home: Option<ScratchDir>) -> Result<Self> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().context("starting the stdio server")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("no stdout")?;
        Ok(Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            _codex_home: codex_home,
        })
    }

    async fn send(&mut self, message: Value) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        stdin.write_all(format!("{message}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }

    async fn next(&mut self) -> Result<Value> {
        let line = tokio::time::timeout(DEADLINE, self.lines.next_line())
            .await
            .context("no line from the server in time")??
            .context("the server closed stdout")?;
        serde_json::from_str(&line).with_context(|| format!("not JSON: {line}"))
    }

    /// Read until `process/closed` for `id` and the response to its start (request id 2;
    /// codex may send it after the notifications); returns (stdout bytes, exit code).
    async fn run_to_close(&mut self, id: &str) -> Result<(Vec<u8>, i64)> {
        let (mut out, mut code) = (Vec::new(), None);
        let (mut closed, mut started) = (false, false);
        while !(closed && started) {
            let message = self.next().await?;
            match message["method"].as_str() {
                Some("process/output") if message["params"]["processId"] == id => {
                    let chunk = message["params"]["chunk"].as_str().unwrap_or_default();
                    out.extend(base64_simd::STANDARD.decode_to_vec(chunk)?);
                }
                Some("process/exited") => code = message["params"]["exitCode"].as_i64(),
                Some("process/closed") => closed = true,
                None if message["id"] == 2 => started = true,
                _ => {}
            }
        }
        Ok((out, code.context("closed before exited")?))
    }
}

fn start(id: &str, script: &str) -> Value {
    json!({"id": 2, "method": "process/start", "params": {"processId": id,
        "argv": ["sh", "-c", script], "cwd": "file:///tmp",
        "env": {"PATH": "/usr/bin:/bin"}, "tty": false, "pipeStdin": false, "arg0": null}})
}

async fn exchange(mut server: StdioServer) -> Result<StdioServer> {
    // Pipelined handshake and start, as a command-backed client would send them.
    server
        .send(json!({"id": 1, "method": "initialize", "params": {"clientName": "stdio-test"}}))
        .await?;
    server
        .send(json!({"method": "initialized", "params": {}}))
        .await?;
    server.send(start("p", "echo over-stdio; exit 4")).await?;
    let init = server.next().await?;
    ensure!(
        init["id"] == 1 && init["result"]["sessionId"].is_string(),
        "initialize: {init}"
    );
    let (out, code) = server.run_to_close("p").await?;
    ensure!(
        out == b"over-stdio\n",
        "stdout {:?}",
        String::from_utf8_lossy(&out)
    );
    ensure!(code == 4, "exit code {code}");
    server.send(json!("not a request")).await?;
    let error = server.next().await?;
    ensure!(
        error["id"] == -1 && error["error"]["code"] == -32600,
        "malformed line: {error}"
    );
    Ok(server)
}

#[tokio::test]
async fn rexec_stdio_round_trip_and_exit_on_eof() -> Result<()> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rexec"));
    command.args(["serve", "--listen", "stdio"]);
    let mut server = exchange(StdioServer::spawn(command, None)?).await?;
    server
        .send(start("sleeper", "echo $$; exec sleep 30"))
        .await?;
    let pid = loop {
        let message = server.next().await?;
        if message["method"] == "process/output" {
            let chunk = message["params"]["chunk"].as_str().unwrap_or_default();
            let text = String::from_utf8(base64_simd::STANDARD.decode_to_vec(chunk)?)?;
            break text.trim().parse::<u32>()?;
        }
    };
    drop(server.stdin.take());
    let status = tokio::time::timeout(DEADLINE, server.child.wait())
        .await
        .context("rexec did not exit after stdin closed")??;
    ensure!(status.success(), "exit status {status}");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "child {pid} outlived the server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A 2 MiB line under a 1 MiB limit is answered (id -1, naming the limit) and skipped;
/// the server keeps serving the lines after it and its processes keep running.
#[tokio::test]
async fn rexec_stdio_skips_an_over_long_line() -> Result<()> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rexec"));
    command.args(["serve", "--listen", "stdio", "--max-frame-bytes", "1048576"]);
    let mut server = exchange(StdioServer::spawn(command, None)?).await?;
    server.send(start("before", "sleep 30")).await?;
    let started = server.next().await?;
    ensure!(
        started["id"] == 2 && started.get("result").is_some(),
        "start: {started}"
    );
    let long = format!(
        r#"{{"id":3,"method":"process/start","params":{{"pad":"{}"}}}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let stdin = server.stdin.as_mut().context("stdin")?;
    stdin.write_all(long.as_bytes()).await?;
    stdin.write_all(b"\n").await?;
    let error = server.next().await?;
    ensure!(
        error["id"] == -1
            && error["error"]["code"] == -32600
            && error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("1048576")),
        "the over-long line: {error}"
    );
    server.send(start("after", "echo still-serving")).await?;
    let (out, code) = server.run_to_close("after").await?;
    ensure!(
        out == b"still-serving\n" && code == 0,
        "after: {out:?} {code}"
    );
    server
        .send(json!({"id": 4, "method": "process/terminate", "params": {"processId": "before"}}))
        .await?;
    loop {
        let message = server.next().await?;
        if message["id"] == 4 {
            ensure!(
                message["result"]["running"] == true,
                "the earlier process died: {message}"
            );
            break;
        }
    }
    Ok(())
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

rexec_testkit::codex_test! {
    #[tokio::test]
    async fn codex_stdio_round_trip() -> Result<()> {
        let bin = codex::require_codex_bin("codex_stdio_round_trip");
        let codex_home = ScratchDir::new("codex-stdio")?;
        let command = codex::exec_server(&bin, "stdio", &codex_home);
        exchange(StdioServer::spawn(command, Some(codex_home))?).await?;
        Ok(())
    }
}
