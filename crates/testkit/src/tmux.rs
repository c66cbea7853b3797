//! A command on a terminal of its own: a detached tmux session on a tmux server of the
//! test's own, typed into with send-keys and read through capture-pane, as a person at a
//! terminal would use `rexec shell`.

use anyhow::{Result, ensure};
use std::time::Duration;
use tokio::process::Command;
use tokio::time::Instant;

/// How long a wait for the screen, or for the session's end, may take.
const DEADLINE: Duration = Duration::from_secs(20);

/// The session `t` on the tmux server `socket`; the server is killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Run `command` in a `width`×`height` session, or `None` when tmux is not installed
    /// (said on stderr as `test`'s skip; under `CI=true` that is an error).
    pub async fn start(test: &str, command: &str, width: u16, height: u16) -> Result<Option<Self>> {
        if !crate::harness::installed_or_skipped("tmux", "-V", test)? {
            return Ok(None);
        }
        let tmux = Self {
            socket: format!("rexec-{test}-{}", std::process::id()),
        };
        let (width, height) = (width.to_string(), height.to_string());
        let session = [
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &width,
            "-y",
            &height,
            command,
        ];
        tmux.tmux(&session).await?;
        Ok(Some(tmux))
    }

    /// `tmux ARGS` on this server; its stdout.
    pub async fn tmux(&self, args: &[&str]) -> Result<String> {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .await?;
        ensure!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Press `key` (`C-c`, `Enter`).
    pub async fn press(&self, key: &str) -> Result<()> {
        self.tmux(&["send-keys", "-t", "t", key]).await.map(drop)
    }

    /// Type `line` and Enter.
    pub async fn type_line(&self, line: &str) -> Result<()> {
        self.tmux(&["send-keys", "-t", "t", "-l", line]).await?;
        self.press("Enter").await
    }

    /// The screen once `needle` is on it.
    pub async fn wait_for(&self, needle: &str) -> Result<String> {
        self.wait_for_any(&[needle]).await
    }

    /// The screen once any of `needles` is on it.
    pub async fn wait_for_any(&self, needles: &[&str]) -> Result<String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.tmux(&["capture-pane", "-p", "-t", "t"]).await?;
            if needles.iter().any(|needle| screen.contains(needle)) {
                return Ok(screen);
            }
            ensure!(
                Instant::now() < deadline,
                "never saw {needles:?}; screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Until the session's command has ended (`what` says which step should end it).
    pub async fn until_ended(&self, what: &str) -> Result<()> {
        let deadline = Instant::now() + DEADLINE;
        while self.tmux(&["has-session", "-t", "t"]).await.is_ok() {
            ensure!(Instant::now() < deadline, "the session outlived {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // The server is gone already when its last session ended.
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
