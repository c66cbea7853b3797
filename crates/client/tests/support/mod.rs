//! Test support shared by the client's integration tests: an in-process rexec server on
//! loopback, the peers a test runs against (codex from `rexec-testkit`), and small helpers
//! for specs, patterned output and deadlines; for the chaos soak, an event-stream checker
//! against known output and descriptor/task leak checks. The fault-injecting proxy and the
//! seeded PRNG are the kit's, under their old paths.
#![allow(dead_code)]

pub mod expect;
pub mod leaks;

// Each test binary compiles this module; not every one uses both.
use rexec_testkit::codex;
#[allow(unused_imports)]
pub use rexec_testkit::{proxy, rng};

use rexec_client::{Client, ClientOptions, Endpoint, ProcessEvent, ProcessSpec};
use rexec_server::{Server, ServerConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The longest any single wait in these tests may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);
pub const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A rexec server running in this process on `ws://127.0.0.1:PORT`.
pub struct TestServer {
    pub url: String,
    pub server: Arc<Server>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with_config(ServerConfig::default()).await
    }

    pub async fn with_config(config: ServerConfig) -> Self {
        let server = Server::new(config);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(rexec_server::serve_websocket(
            Arc::clone(&server),
            listener,
            async {
                let _ = rx.await;
            },
        ));
        Self {
            url: format!("ws://{addr}"),
            server,
            shutdown: Some(tx),
            task,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.kill_all_processes();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

/// The server a test runs against.
pub enum Peer {
    Rexec(TestServer),
    Codex(codex::CodexServer),
}

impl Peer {
    pub async fn rexec() -> Self {
        Self::Rexec(TestServer::start().await)
    }

    /// codex exec-server (`REXEC_CODEX_BIN` or the installed 0.169.0); panics naming what
    /// is missing. Tests that use it are `codex_test!`s, ignored when the kit found none.
    pub async fn codex(test: &str) -> Self {
        let bin = codex::require_codex_bin(test);
        Self::Codex(codex::CodexServer::start(&bin).await)
    }

    pub fn url(&self) -> &str {
        match self {
            Self::Rexec(server) => &server.url,
            Self::Codex(server) => &server.url,
        }
    }
}

pub fn options() -> ClientOptions {
    ClientOptions {
        client_name: "rexec-client-tests".to_owned(),
        ..ClientOptions::default()
    }
}

pub async fn connect(url: &str) -> Client {
    connect_with(url, options()).await
}

pub async fn connect_with(url: &str, options: ClientOptions) -> Client {
    Client::connect(Endpoint::WebSocket(url.to_owned()), options)
        .await
        .unwrap_or_else(|err| panic!("connect to {url}: {err}"))
}

/// `sh -c script` with a PATH.
pub fn sh(script: &str) -> ProcessSpec {
    ProcessSpec::new(["sh", "-c", script]).env("PATH", PATH)
}

/// `perl -e script` with a PATH.
pub fn perl(script: &str) -> ProcessSpec {
    ProcessSpec::new(["perl", "-e", script]).env("PATH", PATH)
}

/// The patterned line number `n` (1-based) that [`PERL_LINE`] prints: 46 bytes.
pub fn line(n: u64) -> String {
    format!("{n:08} abcdefghijklmnopqrstuvwxyz0123456789\n")
}

/// Perl that defines `line($n)` exactly like [`line`].
pub const PERL_LINE: &str =
    r#"$|=1; sub line { sprintf("%08d abcdefghijklmnopqrstuvwxyz0123456789\n", $_[0]) } "#;

/// Lines `first..=last` concatenated.
pub fn lines(first: u64, last: u64) -> Vec<u8> {
    (first..=last).flat_map(|n| line(n).into_bytes()).collect()
}

/// FNV-1a, to name large outputs in failure messages.
pub fn digest(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{} bytes, fnv1a {hash:016x}", bytes.len())
}

pub fn in_deadline() -> Instant {
    Instant::now() + DEADLINE
}

/// Await `future`, failing the test if it takes longer than [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {DEADLINE:?}"))
}

/// Every event of a stream until it ends.
pub async fn collect(mut events: rexec_client::EventStream) -> Vec<ProcessEvent> {
    within("collecting events", async {
        let mut all = Vec::new();
        while let Some(event) = events.next().await {
            all.push(event);
        }
        all
    })
    .await
}

/// Check a stream's seqs: contiguous from 1, each covered once, `Closed` last.
pub fn assert_gap_free(events: &[ProcessEvent]) {
    let mut next = 1;
    for event in events {
        let Some((first, last)) = event.seq_range() else {
            panic!("unexpected unsequenced event {event:?}");
        };
        assert_eq!(first, next, "event {event:?} after seq {}", next - 1);
        next = last + 1;
    }
    assert!(
        matches!(events.last(), Some(ProcessEvent::Closed { .. })),
        "stream must end with Closed"
    );
}

/// Output bytes of a stream, in order.
pub fn output_of(events: &[ProcessEvent]) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            ProcessEvent::Output { bytes, .. } => Some(bytes.as_ref()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect()
}
