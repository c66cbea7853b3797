//! Options every client benchmark shares — which servers, over what link, in which output
//! format — and how they are spelled again on the reproduce line.

use anyhow::{Result, bail};
use serde_json::Value;
use std::time::Duration;

use crate::proxy::Link;
use crate::server::{self, ServerSpec, Source};

/// Servers under test and the link to them.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// A command that starts a server and prints its `ws://` URL as its first stdout line;
    /// `--listen ws://127.0.0.1:0` is appended unless it has its own `--listen` (for
    /// `wss://`; the client trusts the CA in `REXEC_CA_FILE`). Split with shell quoting rules; an optional
    /// `NAME=` prefix labels it. Repeatable; servers are listed in the order given, commands
    /// before URLs, and ratios are relative to the first. Default: this `rexec serve`.
    #[arg(long = "server-cmd", value_name = "[NAME=]CMD")]
    pub server_cmd: Vec<String>,
    /// An already running server, optionally labelled `NAME=ws://…`. Repeatable.
    #[arg(long, value_name = "[NAME=]URL")]
    pub url: Vec<String>,
    /// Put an in-process proxy adding this round-trip time (half each way) in front of
    /// every server. 0: plain loopback.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub rtt_ms: u64,
    /// Extra random delay per chunk through the proxy, 0..=J ms (byte order is kept).
    #[arg(long, value_name = "J", default_value_t = 0)]
    pub jitter_ms: u64,
    /// Print the results as JSON on stdout (the markdown report then goes to stderr).
    #[arg(long)]
    pub json: bool,
}

impl ServerArgs {
    /// The servers, labelled uniquely. Without any, this binary's own `serve` when it is
    /// `rexec`.
    pub fn specs(&self) -> Result<Vec<ServerSpec>> {
        let mut specs = Vec::new();
        for given in &self.server_cmd {
            specs.push(server::parse_server_cmd(given)?);
        }
        for given in &self.url {
            specs.push(server::parse_url(given)?);
        }
        if specs.is_empty() {
            let exe = std::env::current_exe().ok();
            match exe.filter(|e| e.file_name().is_some_and(|n| n == "rexec")) {
                Some(exe) => {
                    let exe = exe.to_string_lossy().into_owned();
                    let cmd = format!("rexec={} serve", shell_words::quote(&exe));
                    specs.push(server::parse_server_cmd(&cmd)?);
                }
                None => bail!("no server to measure: give --server-cmd or --url"),
            }
        }
        server::dedupe_names(&mut specs);
        Ok(specs)
    }

    /// The simulated link, when one was asked for.
    pub fn link(&self) -> Option<Link> {
        (self.rtt_ms > 0 || self.jitter_ms > 0).then(|| Link {
            rtt: Duration::from_millis(self.rtt_ms),
            jitter: Duration::from_millis(self.jitter_ms),
        })
    }

    /// The link in words, for report headers.
    pub fn link_text(&self) -> String {
        match (self.rtt_ms, self.jitter_ms) {
            (0, 0) => "loopback WebSocket".to_owned(),
            (rtt, 0) => format!("WebSocket through a proxy adding {rtt} ms RTT"),
            (rtt, j) => format!(
                "WebSocket through a proxy adding {rtt} ms RTT plus 0–{j} ms jitter per chunk"
            ),
        }
    }

    /// These options spelled out for the reproduce line.
    pub fn words(&self, specs: &[ServerSpec]) -> Vec<String> {
        let mut words = Vec::new();
        for spec in specs {
            let flag = match spec.source {
                Source::Command(_) => "--server-cmd",
                Source::Url(_) => "--url",
            };
            words.push(flag.to_owned());
            words.push(spec.given.clone());
        }
        if self.rtt_ms > 0 {
            words.extend(["--rtt-ms".to_owned(), self.rtt_ms.to_string()]);
        }
        if self.jitter_ms > 0 {
            words.extend(["--jitter-ms".to_owned(), self.jitter_ms.to_string()]);
        }
        if self.json {
            words.push("--json".to_owned());
        }
        words
    }
}

/// `--flag value` pairs as words.
pub fn pairs(options: &[(&str, String)]) -> Vec<String> {
    options
        .iter()
        .flat_map(|(flag, value)| [(*flag).to_owned(), value.clone()])
        .collect()
}

/// Prints a report: markdown on stdout, or JSON on stdout and the markdown on stderr.
pub fn emit(markdown: &str, json: &Value, as_json: bool) -> Result<()> {
    if as_json {
        eprintln!("{markdown}");
        println!("{}", serde_json::to_string_pretty(json)?);
    } else {
        println!("{markdown}");
    }
    Ok(())
}
