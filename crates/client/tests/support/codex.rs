//! codex exec-server 0.169.0 as a peer, when `REXEC_CODEX_BIN` names its binary.
//!
//! Unset, the copy `scripts/install-codex` leaves under `~/.cache/rexec` is used if present;
//! otherwise `codex_bin()` prints a `SKIPPED` line straight to stderr (libtest would hide an
//! `eprintln!` of a passing test) and returns `None` — unless `CI=true`, where a missing peer
//! fails the test.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The codex binary, or `None` (after printing why) when the test must skip.
pub fn codex_bin(test: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REXEC_CODEX_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let installed = std::env::var_os("HOME").map(|home| {
        PathBuf::from(home).join(
            ".cache/rexec/codex-0.169.0/node_modules/@openai/codex-linux-x64/vendor/\
             x86_64-unknown-linux-musl/bin/codex",
        )
    });
    if let Some(path) = installed.filter(|p| p.is_file()) {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: REXEC_CODEX_BIN is not set, and CI=true requires the codex peer"
    );
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {test}: set REXEC_CODEX_BIN to a codex 0.169.0 binary to run it"
    );
    None
}

/// `codex exec-server --listen ws://127.0.0.1:0` with a fresh `CODEX_HOME` under `$HOME`.
pub struct CodexServer {
    pub url: String,
    child: Child,
    home: PathBuf,
}

impl CodexServer {
    pub async fn start(bin: &PathBuf) -> Self {
        let base = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
        let home = base.join(format!(".rexec-client-test-codex-{}", uuid_like()));
        std::fs::create_dir_all(&home).expect("create CODEX_HOME");
        let mut child = Command::new(bin)
            .args(["exec-server", "--listen", "ws://127.0.0.1:0"])
            .env("CODEX_HOME", &home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {}: {err}", bin.display()));
        let stdout = child.stdout.take().expect("codex stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("ws://") {
                    return Some(line.trim().to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("codex exec-server printed no ws:// URL");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { url, child, home }
    }
}

impl Drop for CodexServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}
