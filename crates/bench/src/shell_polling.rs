//! The prompt-marker-plus-polling arms of `rexec bench shell`: a shell driven the way agent
//! runtimes drive one over a byte stream, rebuilt against the same server with the raw
//! wire client (`wire`). OpenHands types into a tmux pane and captures it every 0.5 s until
//! its JSON `PS1` shows up; SWE-ReX sets a marker prompt and reads `$?` after it. Here: bash
//! on a PTY (`process/start {tty: true}`, no startup files) whose `PS1` prints a marker
//! with a per-shell nonce and `$?`; each command is typed with `process/write`, and its end
//! is found by sleeping the poll interval, then `process/read`ing the output after the last
//! seq seen, until the marker appears. Pushed `process/output` notifications are ignored,
//! as a poller has none.

use anyhow::{Context, Result, anyhow, bail};
use rexec_protocol::ByteChunk;
use rexec_protocol::method;
use rexec_protocol::process::ReadResult;
use serde_json::json;
use std::time::Duration;

use crate::oneshot::CWD;
use crate::wire::Connection;

/// How long a shell may take to print its first prompt.
const FIRST_PROMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// One polled shell on its own connection.
pub struct PollingShell {
    conn: Connection,
    process_id: String,
    interval: Duration,
    marker: String,
    after_seq: u64,
    /// Output not yet matched against the marker.
    pending: Vec<u8>,
    writes: u64,
}

impl PollingShell {
    /// Start bash on a PTY at `url` and wait (polling) for its first prompt.
    pub async fn start(url: &str, process_id: String, interval: Duration) -> Result<Self> {
        let (conn, _) = Connection::connect_initialized(url, "rexec-bench-poll").await?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        let nonce = format!("{:x}{:x}", std::process::id(), now.subsec_nanos());
        let marker = format!("__PS1_{nonce}_");
        let mut shell = Self {
            conn,
            process_id,
            interval,
            marker,
            after_seq: 0,
            pending: Vec::new(),
            writes: 0,
        };
        let cwd = format!("file://{CWD}");
        shell
            .conn
            .call(
                method::PROCESS_START,
                json!({
                    "processId": shell.process_id,
                    "argv": ["bash", "--noprofile", "--norc", "-i"],
                    "cwd": cwd,
                    "env": {
                        "PS1": format!("{}$?__", shell.marker),
                        "PS2": "",
                        "TERM": "dumb",
                        "INPUTRC": "/dev/null",
                    },
                    "tty": true,
                    "pipeStdin": false,
                    "arg0": null,
                }),
            )
            .await
            .context("starting the polled bash")?;
        tokio::time::timeout(FIRST_PROMPT_TIMEOUT, shell.poll_for_marker())
            .await
            .map_err(|_| anyhow!("the polled bash printed no prompt"))??;
        Ok(shell)
    }

    /// Type `command` and poll until the next prompt; its `$?`.
    pub async fn run(&mut self, command: &str) -> Result<i32> {
        self.writes += 1;
        let chunk = serde_json::to_value(ByteChunk(format!("{command}\n").into_bytes()))?;
        self.conn
            .call(
                method::PROCESS_WRITE,
                json!({
                    "processId": self.process_id,
                    "chunk": chunk,
                    "writeId": format!("w{}", self.writes),
                }),
            )
            .await?;
        self.poll_for_marker().await
    }

    /// Sleep, read what is new, look for the marker; again until it is there.
    async fn poll_for_marker(&mut self) -> Result<i32> {
        loop {
            tokio::time::sleep(self.interval).await;
            let result = self
                .conn
                .call(
                    method::PROCESS_READ,
                    json!({"processId": self.process_id, "afterSeq": self.after_seq}),
                )
                .await?;
            let read: ReadResult =
                serde_json::from_value(result).context("decoding process/read")?;
            for chunk in read.chunks {
                self.after_seq = self.after_seq.max(chunk.seq);
                self.pending.extend_from_slice(&chunk.chunk.0);
            }
            if let Some(code) = self.take_marker() {
                return Ok(code);
            }
            if read.exited || read.closed {
                bail!("the polled bash ended");
            }
        }
    }

    fn take_marker(&mut self) -> Option<i32> {
        take_marker(&mut self.pending, &self.marker)
    }

    pub async fn close(mut self) {
        let _ = self
            .conn
            .call(
                method::PROCESS_TERMINATE,
                json!({"processId": self.process_id}),
            )
            .await;
        self.conn.close().await;
    }
}

/// The `$?` of the first complete `MARKER<digits>__` in `pending`, dropping what came
/// before it and the marker itself; `None` (nothing dropped) until one is complete.
fn take_marker(pending: &mut Vec<u8>, marker: &str) -> Option<i32> {
    let marker = marker.as_bytes();
    let start = pending.windows(marker.len()).position(|w| w == marker)? + marker.len();
    let length = pending[start..].windows(2).position(|w| w == b"__")?;
    let code = std::str::from_utf8(&pending[start..start + length])
        .ok()?
        .parse()
        .ok()?;
    pending.drain(..start + length + 2);
    Some(code)
}

#[cfg(test)]
mod tests {
    use super::take_marker;

    #[test]
    fn a_marker_split_across_reads_is_found_once_complete() {
        let mut pending = b"true\r\n__PS1_ab_".to_vec();
        assert_eq!(take_marker(&mut pending, "__PS1_ab_"), None);
        pending.extend_from_slice(b"0_");
        assert_eq!(take_marker(&mut pending, "__PS1_ab_"), None);
        pending.extend_from_slice(b"_echo 1\r\n1\r\n__PS1_ab_1__");
        assert_eq!(take_marker(&mut pending, "__PS1_ab_"), Some(0));
        assert_eq!(pending, b"echo 1\r\n1\r\n__PS1_ab_1__");
        assert_eq!(take_marker(&mut pending, "__PS1_ab_"), Some(1));
        assert!(pending.is_empty());
    }
}
