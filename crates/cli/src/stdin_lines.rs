//! Our stdin, a line at a time, read on demand by a background task: what `rexec run
//! --shell` types into a command that waits for input, and what `rexec shell --attach`
//! reads at its prompt.

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

pub struct StdinLines {
    lines: mpsc::Receiver<String>,
}

impl StdinLines {
    /// Start reading (at most one line ahead of what was taken).
    pub fn spawn() -> Self {
        let (sender, lines) = mpsc::channel(1);
        tokio::spawn(async move {
            let mut stdin = BufReader::new(tokio::io::stdin());
            let mut line = Vec::new();
            loop {
                line.clear();
                match stdin.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).into_owned();
                        if sender.send(text).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Self { lines }
    }

    /// The next line with its newline (the last one may have none); `None` at the end.
    pub async fn next(&mut self) -> Option<String> {
        self.lines.recv().await
    }
}
