//! codex exec-server as a peer: which binary ([`codex_bin`], the rule in `locate.rs`),
//! the one `CODEX_HOME` rule (a fresh [`ScratchDir`] under `$HOME`, removed with the
//! server: codex refuses one under /tmp), and [`CodexServer`], a bare
//! `codex exec-server --listen ws://127.0.0.1:0` for tests that need nothing else.
//!
//! A codex test without a binary is never a silent pass: outside CI the kit generates it
//! as `#[ignore]`d (see `build.rs` and [`crate::codex_test!`]); run anyway (`--ignored`,
//! or under `CI=true`) it fails naming what is missing.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use crate::locate::{CODEX_BIN_VAR, codex_bin, in_ci};
use crate::scratch::ScratchDir;

/// How long codex (a 300 MB binary, on a machine shared with builds) may take to start.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// The codex binary; panics with what is missing when there is none, for `test`.
pub fn require_codex_bin(test: &str) -> std::path::PathBuf {
    codex_bin().unwrap_or_else(|why| {
        let ci = if in_ci() {
            "; CI=true requires the codex peer"
        } else {
            ""
        };
        panic!("{test}: no codex exec-server binary: {why}{ci} (scripts/install-codex)")
    })
}

/// `bin exec-server --listen listen` with `home` as its `CODEX_HOME` and no inherited
/// connection token.
pub fn exec_server(bin: &Path, listen: &str, home: &ScratchDir) -> Command {
    let mut command = Command::new(bin);
    command.args(["exec-server", "--listen", listen]);
    command.env("CODEX_HOME", home.path());
    command.env_remove("CODEX_EXEC_SERVER_CONNECTION_TOKEN");
    command
}

/// `codex exec-server --listen ws://127.0.0.1:0` with a fresh `CODEX_HOME`; killed and
/// its home removed on drop.
pub struct CodexServer {
    pub url: String,
    child: Child,
    _home: ScratchDir,
}

impl CodexServer {
    pub async fn start(bin: &Path) -> Self {
        let home = ScratchDir::new("codex").expect("create CODEX_HOME");
        let mut child = exec_server(bin, "ws://127.0.0.1:0", &home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {}: {err}", bin.display()));
        let stdout = child.stdout.take().expect("codex stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(STARTUP_TIMEOUT, async {
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
        Self {
            url,
            child,
            _home: home,
        }
    }
}

impl Drop for CodexServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
