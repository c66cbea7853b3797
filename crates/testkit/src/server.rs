//! Starting the server under test: `rexec serve` or `codex exec-server` 0.169.0.
//!
//! A [`Server`] is one child process listening on loopback. Its first stdout line is the
//! bound `ws://IP:PORT` (`wss://` with [`ServerOptions::tls`]); everything else it prints
//! is kept (last lines only) so a failing test can show it. Dropping a `Server` asks it to shut down (SIGTERM: both servers then
//! kill their managed processes) and kills it if it has not gone after a short grace.
//!
//! Environment:
//! - `REXEC_SERVER_CMD`: a shell-words command line used instead of
//!   `<rexec> serve --listen ws://127.0.0.1:0` ([`rexec_bin`]); the option flags are
//!   appended to it.
//! - `REXEC_CODEX_BIN`: the codex binary (see [`crate::codex`]).

use anyhow::{Context, Result, anyhow, bail};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::codex;
pub use crate::codex::codex_bin;
pub use crate::scratch::ScratchDir;

/// How long a server may take to print its URL (codex is a 300 MB binary; the machine is
/// shared with other builds).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Lines of server output kept for the failure report.
const LOG_TAIL_LINES: usize = 200;

/// Which implementation a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Rexec,
    Codex,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Rexec => "rexec",
            Target::Codex => "codex",
        }
    }
}

/// Server flags. Everything but `token` and `args` exists only on rexec.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Bearer token the WebSocket upgrade must carry.
    pub token: Option<String>,
    /// Flags both servers take, spelled the same (codex's `--ws-auth` family).
    pub args: Vec<String>,
    pub session_ttl_ms: Option<u64>,
    pub closed_retention_ms: Option<u64>,
    pub ping_interval_ms: Option<u64>,
    pub max_frame_bytes: Option<u64>,
    pub handshake_timeout_ms: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_pending_handshakes: Option<u64>,
    pub max_inbound_bytes: Option<u64>,
    /// Run the server with this RLIMIT_NOFILE (soft and hard), through `prlimit`.
    pub descriptor_limit: Option<u64>,
    /// Extra environment for the rexec server (e.g. `REXEC_PROCESS_CONTAINMENT`).
    pub env: Vec<(&'static str, &'static str)>,
    /// Environment for either server (e.g. what `http/request` headers read).
    pub both_env: Vec<(&'static str, String)>,
    pub fs_timeout_ms: Option<u64>,
    /// Listen on `wss://` with these PEM files (rexec only).
    pub tls: Option<ServerTls>,
}

/// `rexec serve --tls-cert/--tls-key [--tls-client-ca]`.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// The last lines a server printed (stderr, and stdout after the URL line).
#[derive(Debug, Default)]
pub struct LogTail {
    pub label: String,
    lines: VecDeque<String>,
}

impl LogTail {
    fn push(&mut self, line: String) {
        if self.lines.len() == LOG_TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// How many lines kept so far contain `text` (tests/tls.rs).
    #[allow(dead_code)]
    pub fn count(&self, text: &str) -> usize {
        self.lines.iter().filter(|line| line.contains(text)).count()
    }

    pub fn render(&self) -> String {
        let mut out = format!("--- last output of {} ---\n", self.label);
        for line in &self.lines {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

pub type SharedLog = Arc<Mutex<LogTail>>;

/// A running server under test.
pub struct Server {
    /// `ws://IP:PORT` as printed by the server.
    pub url: String,
    pub addr: SocketAddr,
    pub token: Option<String>,
    child: Child,
    log: SharedLog,
    _scratch: ScratchDir,
}

impl Server {
    /// Starts a server and waits for its `ws://` line.
    pub async fn spawn(target: Target, options: &ServerOptions) -> Result<Server> {
        let scratch = ScratchDir::new(target.name())?;
        let mut command = match target {
            Target::Rexec => rexec_command(options, &scratch)?,
            Target::Codex => codex_command(options, &scratch)?,
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("spawning {} server: {command:?}", target.name()))?;
        let pid = child.id().unwrap_or(0);
        let log = Arc::new(Mutex::new(LogTail {
            label: format!("{} server pid {pid}", target.name()),
            lines: VecDeque::new(),
        }));
        let stderr = child.stderr.take().context("server stderr")?;
        tokio::spawn(keep_lines(stderr, log.clone(), "stderr"));
        let stdout = child.stdout.take().context("server stdout")?;
        let mut stdout = BufReader::new(stdout).lines();

        let url = tokio::time::timeout(STARTUP_TIMEOUT, async {
            while let Some(line) = stdout.next_line().await? {
                if line.starts_with("ws://") || line.starts_with("wss://") {
                    return Ok(Some(line));
                }
                push_line(&log, "stdout", line);
            }
            anyhow::Ok(None)
        })
        .await;
        let url = match url {
            Ok(Ok(Some(url))) => url.trim().to_string(),
            Ok(Ok(None)) | Ok(Err(_)) => {
                let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await
                {
                    Ok(Ok(status)) => status.to_string(),
                    _ => "still running".to_string(),
                };
                tokio::time::sleep(Duration::from_millis(50)).await; // let stderr drain
                bail!(
                    "{} server ended its stdout without printing a ws:// URL ({status})\n{}",
                    target.name(),
                    lock(&log).render()
                );
            }
            Err(_) => bail!(
                "{} server printed no ws:// URL within {STARTUP_TIMEOUT:?}\n{}",
                target.name(),
                lock(&log).render()
            ),
        };
        let addr: SocketAddr = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("wss://"))
            .and_then(|rest| rest.trim_end_matches('/').parse().ok())
            .with_context(|| format!("server printed an unparsable URL {url:?}"))?;
        let log_for_stdout = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                push_line(&log_for_stdout, "stdout", line);
            }
        });
        Ok(Server {
            url,
            addr,
            token: options.token.clone(),
            child,
            log,
            _scratch: scratch,
        })
    }

    /// A directory under `$HOME`, removed with the server (tests/descendants.rs).
    #[allow(dead_code)]
    pub fn scratch(&self) -> &Path {
        self._scratch.path()
    }

    /// The server's OS process id.
    pub fn pid(&self) -> Result<u32> {
        self.child.id().context("server has already exited")
    }

    pub fn log(&self) -> SharedLog {
        self.log.clone()
    }

    /// Send SIGTERM and wait (up to `timeout`) for the server to exit.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let pid = self.pid()?;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .context("running kill -TERM")?;
        anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .with_context(|| format!("the server did not exit within {timeout:?} of SIGTERM"))?
            .context("waiting for the server")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some(pid) = self.child.id() else { return };
        // Graceful shutdown first, so the server kills its own children; then SIGKILL.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.start_kill();
    }
}

fn rexec_command(options: &ServerOptions, scratch: &ScratchDir) -> Result<Command> {
    let mut argv: Vec<String> = match std::env::var("REXEC_SERVER_CMD") {
        Ok(cmd) if !cmd.trim().is_empty() => shell_words::split(&cmd)
            .with_context(|| format!("REXEC_SERVER_CMD is not a valid command line: {cmd:?}"))?,
        _ => vec![
            rexec_bin()?.display().to_string(),
            "serve".into(),
            "--listen".into(),
            "ws://127.0.0.1:0".into(),
        ],
    };
    if let Some(token) = &options.token {
        argv.push("--token-file".into());
        argv.push(write_token(scratch, token)?.display().to_string());
    }
    if let Some(tls) = &options.tls {
        for arg in argv
            .iter_mut()
            .filter(|arg| arg.as_str() == "ws://127.0.0.1:0")
        {
            *arg = "wss://127.0.0.1:0".into();
        }
        argv.extend(["--tls-cert".into(), tls.cert.display().to_string()]);
        argv.extend(["--tls-key".into(), tls.key.display().to_string()]);
        if let Some(ca) = &tls.client_ca {
            argv.extend(["--tls-client-ca".into(), ca.display().to_string()]);
        }
    }
    let numeric = [
        ("--session-ttl-ms", options.session_ttl_ms),
        ("--closed-retention-ms", options.closed_retention_ms),
        ("--ping-interval-ms", options.ping_interval_ms),
        ("--max-frame-bytes", options.max_frame_bytes),
        ("--handshake-timeout-ms", options.handshake_timeout_ms),
        ("--max-connections", options.max_connections),
        ("--max-pending-handshakes", options.max_pending_handshakes),
        ("--max-inbound-bytes", options.max_inbound_bytes),
        ("--fs-timeout-ms", options.fs_timeout_ms),
    ];
    for (flag, value) in numeric {
        if let Some(value) = value {
            argv.push(flag.into());
            argv.push(value.to_string());
        }
    }
    if let Some(limit) = options.descriptor_limit {
        // prlimit sets the limit on itself and execs the server: same pid.
        argv.splice(
            0..0,
            [
                "prlimit".into(),
                format!("--nofile={limit}:{limit}"),
                "--".into(),
            ],
        );
    }
    argv.extend(options.args.iter().cloned());
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]).envs(options.env.iter().copied());
    command.envs(options.both_env.iter().map(|(k, v)| (k, v)));
    Ok(command)
}

fn codex_command(options: &ServerOptions, scratch: &ScratchDir) -> Result<Command> {
    let bin = codex::codex_bin().map_err(|why| anyhow!("no codex exec-server binary: {why}"))?;
    if options.session_ttl_ms.is_some()
        || options.closed_retention_ms.is_some()
        || options.ping_interval_ms.is_some()
        || options.max_frame_bytes.is_some()
        || options.handshake_timeout_ms.is_some()
        || options.max_connections.is_some()
        || options.max_pending_handshakes.is_some()
        || options.max_inbound_bytes.is_some()
        || options.descriptor_limit.is_some()
        || !options.env.is_empty()
        || options.fs_timeout_ms.is_some()
        || options.tls.is_some()
    {
        bail!("codex exec-server has no flags for rexec's session, frame and connection limits");
    }
    let mut command = codex::exec_server(&bin, "ws://127.0.0.1:0", scratch);
    if let Some(token) = &options.token {
        // 0.169.0: `--ws-auth capability-token --ws-token-file F`; the client sends
        // `Authorization: Bearer <token>` on the upgrade.
        command.args(["--ws-auth", "capability-token", "--ws-token-file"]);
        command.arg(write_token(scratch, token)?);
    }
    command.args(&options.args);
    command.envs(options.both_env.iter().map(|(k, v)| (k, v)));
    Ok(command)
}

/// The `rexec` binary cargo built for the running test: an integration test runs from
/// `target/<profile>/deps/`, and its package's binaries are one directory up (the place
/// `CARGO_BIN_EXE_rexec` names, which only the test crate itself can read).
pub fn rexec_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running test binary")?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("rexec"))
        .with_context(|| format!("{} has no grandparent directory", exe.display()))?;
    anyhow::ensure!(
        bin.is_file(),
        "no rexec binary at {} (`cargo test -p rexec` builds it; REXEC_SERVER_CMD names another)",
        bin.display()
    );
    Ok(bin)
}

fn write_token(scratch: &ScratchDir, token: &str) -> Result<PathBuf> {
    let path = scratch.path().join("token");
    std::fs::write(&path, token).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

async fn keep_lines(stream: impl AsyncRead + Unpin, log: SharedLog, label: &'static str) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        push_line(&log, label, line);
    }
}

fn push_line(log: &SharedLog, label: &str, line: String) {
    lock(log).push(format!("[{label}] {line}"));
}

pub fn lock(log: &SharedLog) -> std::sync::MutexGuard<'_, LogTail> {
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
