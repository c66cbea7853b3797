//! The servers under test: parsing `--server-cmd [NAME=]CMD` and `--url [NAME=]URL`, starting a
//! command with `--listen ws://127.0.0.1:0` appended (unless it has a `--listen` of its own,
//! e.g. `wss://` with a certificate), reading the `ws://` (or `wss://`) URL it prints on
//! stdout, and stopping it again.
//!
//! Every started server gets a fresh `CODEX_HOME` under `$HOME` (codex refuses one under
//! `/tmp`); it is harmless for other servers and removed when the server stops. The server's
//! stdout after the URL and its stderr are drained; the last stderr lines are kept to explain
//! a server that fails to start.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// How long a server may take to print its URL.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped server may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How many trailing stderr lines are kept for error messages.
const STDERR_TAIL_LINES: usize = 20;

/// Where a server under test comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Start this argv (with `--listen ws://127.0.0.1:0` appended unless it has a
    /// `--listen`) once per run.
    Command(Vec<String>),
    /// Connect to an already running server.
    Url(String),
}

/// A server under test and its label in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub name: String,
    pub source: Source,
    /// The option text as given, for the reproduce line.
    pub given: String,
}

/// Splits an optional `NAME=` label off `text`. A label is a non-empty run of ASCII
/// alphanumerics, `_`, `-` and `.` directly followed by `=`.
pub fn split_label(text: &str) -> (Option<&str>, &str) {
    if let Some((label, rest)) = text.split_once('=') {
        let is_label = !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if is_label {
            return (Some(label), rest);
        }
    }
    (None, text)
}

/// Parses a `--server-cmd [NAME=]CMD` value; the default name is the program's file name.
pub fn parse_server_cmd(given: &str) -> Result<ServerSpec> {
    let (label, command) = split_label(given);
    let argv = shell_words::split(command)
        .with_context(|| format!("cannot split --server-cmd `{given}` into words"))?;
    let Some(program) = argv.first() else {
        bail!("--server-cmd `{given}` has no program");
    };
    let name = label.map(str::to_owned).unwrap_or_else(|| {
        Path::new(program)
            .file_name()
            .map_or_else(|| program.clone(), |n| n.to_string_lossy().into_owned())
    });
    Ok(ServerSpec {
        name,
        source: Source::Command(argv),
        given: given.to_owned(),
    })
}

/// Parses a `--url [NAME=]ws://HOST:PORT` value; the default name is the URL.
pub fn parse_url(given: &str) -> Result<ServerSpec> {
    let (label, url) = split_label(given);
    if !url.starts_with("ws://") && !url.starts_with("wss://") {
        bail!("--url `{given}`: expected ws://HOST:PORT or wss://HOST:PORT");
    }
    Ok(ServerSpec {
        name: label.unwrap_or(url).to_owned(),
        source: Source::Url(url.to_owned()),
        given: given.to_owned(),
    })
}

/// Makes labels unique by suffixing `#2`, `#3`… to repeats.
pub fn dedupe_names(specs: &mut [ServerSpec]) {
    for i in 1..specs.len() {
        let base = specs[i].name.clone();
        let mut k = 1;
        while specs[..i].iter().any(|s| s.name == specs[i].name) {
            k += 1;
            specs[i].name = format!("{base}#{k}");
        }
    }
}

/// A server ready to accept connections: started by us, or given by URL.
pub struct RunningServer {
    pub url: String,
    child: Option<Child>,
    codex_home: Option<PathBuf>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl RunningServer {
    /// Starts (or, for a URL, just names) the server of `spec`.
    pub async fn start(spec: &ServerSpec) -> Result<Self> {
        let argv = match &spec.source {
            Source::Url(url) => {
                return Ok(Self {
                    url: url.clone(),
                    child: None,
                    codex_home: None,
                    stderr_tail: Arc::default(),
                });
            }
            Source::Command(argv) => argv,
        };
        let codex_home = fresh_codex_home(&spec.name)?;
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]);
        if !argv.iter().any(|arg| arg == "--listen") {
            command.args(["--listen", "ws://127.0.0.1:0"]);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(home) = &codex_home {
            command.env("CODEX_HOME", home);
        }
        let mut server = Self {
            url: String::new(),
            child: None,
            codex_home,
            stderr_tail: Arc::default(),
        };
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}: {}", spec.name, shell_words::join(argv)))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        server.child = Some(child);
        tokio::spawn(keep_tail(stderr, Arc::clone(&server.stderr_tail)));

        let mut lines = BufReader::new(stdout).lines();
        let first_url = async {
            while let Some(line) = lines.next_line().await? {
                let line = line.trim();
                if line.starts_with("ws://") || line.starts_with("wss://") {
                    return Ok(Some(line.to_owned()));
                }
            }
            Ok::<_, std::io::Error>(None)
        };
        let failure = match tokio::time::timeout(STARTUP_TIMEOUT, first_url).await {
            Ok(Ok(Some(url))) => {
                server.url = url;
                None
            }
            Ok(Ok(None)) => Some("its stdout ended before a ws:// line".to_owned()),
            Ok(Err(error)) => Some(format!("reading its stdout: {error}")),
            Err(_) => Some(format!(
                "no ws:// line on its stdout within {STARTUP_TIMEOUT:?}"
            )),
        };
        if let Some(failure) = failure {
            // Give the stderr reader a moment to catch the server's last words.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let status = match server.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => format!(" ({status})"),
                _ => String::new(),
            };
            let tail = server.stderr_tail();
            let tail = if tail.is_empty() {
                "it wrote nothing to stderr".to_owned()
            } else {
                format!("its stderr ended with:\n{tail}")
            };
            bail!(
                "starting {} ({}): {failure}{status}; {tail}",
                spec.name,
                shell_words::join(argv),
            );
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(server)
    }

    /// The last lines the server wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let tail = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// The process id of a server we started (`None` for a `--url` server).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Stops a server we started — SIGTERM first, so it can end the children it started,
    /// then SIGKILL after [`STOP_GRACE`] — and removes its `CODEX_HOME`.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw);
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                let _ = tokio::time::timeout(STOP_GRACE, child.wait()).await;
            }
            let _ = child.kill().await;
        }
        if let Some(home) = self.codex_home.take() {
            let _ = std::fs::remove_dir_all(home);
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        if let Some(home) = self.codex_home.take() {
            let _ = std::fs::remove_dir_all(home);
        }
    }
}

/// Creates `$HOME/.rexec-bench-NAME-PID-NANOS`; `None` when `HOME` is not set.
fn fresh_codex_home(name: &str) -> Result<Option<PathBuf>> {
    let Some(home) = std::env::var_os("HOME") else {
        return Ok(None);
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let dir = PathBuf::from(home).join(format!(
        ".rexec-bench-{safe}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(Some(dir))
}

async fn keep_tail(stream: impl AsyncRead + Unpin, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_words() -> Result<()> {
        let spec = parse_server_cmd("rexec=target/release/rexec serve")?;
        assert_eq!(spec.name, "rexec");
        assert_eq!(
            spec.source,
            Source::Command(vec!["target/release/rexec".into(), "serve".into()])
        );
        let spec = parse_server_cmd("'/opt/x y/codex' exec-server")?;
        assert_eq!(spec.name, "codex");
        assert_eq!(
            parse_url("ws://127.0.0.1:1/?a=b")?.name,
            "ws://127.0.0.1:1/?a=b"
        );
        assert_eq!(parse_url("c=ws://127.0.0.1:1")?.name, "c");
        let mut specs = vec![spec.clone(), spec.clone(), spec];
        dedupe_names(&mut specs);
        let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["codex", "codex#2", "codex#3"]);
        Ok(())
    }
}
