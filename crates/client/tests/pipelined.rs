//! Connecting in one round trip: what leaves before the server has answered anything, and
//! a lazy `Client::new` + `start` against rexec and codex (happy path, no `process/read`, a
//! start without cwd, errors of the handshake still surfacing as such).

mod support;

use rexec_client::{Client, ClientError, ClientOptions, Endpoint};
use rexec_server::{Authenticator, ServerConfig};
use support::{Peer, TestServer, sh, within};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

async fn connect_and_start(
    url: &str,
    spec: rexec_client::ProcessSpec,
    options: ClientOptions,
) -> Result<(Client, rexec_client::Process), ClientError> {
    let client = Client::new(Endpoint::WebSocket(url.to_owned()), options);
    let process = client.start(spec).await?;
    Ok((client, process))
}

/// The client frames in `bytes` after the HTTP request, unmasked; `None` while incomplete.
fn client_frames(bytes: &[u8]) -> Option<Vec<String>> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let mut rest = &bytes[end..];
    let mut frames = Vec::new();
    while rest.len() >= 2 {
        assert_eq!(rest[0], 0x81, "a final text frame");
        assert_eq!(rest[1] & 0x80, 0x80, "client frames are masked");
        let (len, header) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            126 | 127 => return None,
            n => (usize::from(n), 2),
        };
        if rest.len() < header + 4 + len {
            return None;
        }
        let mask = &rest[header..header + 4];
        let payload: Vec<u8> = rest[header + 4..header + 4 + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        frames.push(String::from_utf8(payload).expect("UTF-8 text"));
        rest = &rest[header + 4 + len..];
    }
    Some(frames)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_initialize_initialized_and_start_leave_before_any_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("addr"));
    // A peer that never answers: whatever arrives came without waiting for the server.
    let peer = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(frames) = client_frames(&bytes)
                && frames.len() >= 3
            {
                return frames;
            }
            let n = socket.read(&mut buf).await.expect("read");
            assert!(n > 0, "the client hung up after {bytes:?}");
            bytes.extend_from_slice(&buf[..n]);
        }
    });
    let client = tokio::spawn(async move {
        connect_and_start(&url, sh("true").cwd("/"), support::options()).await
    });
    let frames = within("the first flight", peer).await.expect("peer");
    let methods: Vec<String> = frames
        .iter()
        .map(|f| {
            let value: serde_json::Value = serde_json::from_str(f).expect("JSON");
            value["method"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(methods, ["initialize", "initialized", "process/start"]);
    // The peer hung up without answering: a connect error (after one classic retry).
    let err = within("the connect error", client)
        .await
        .expect("task")
        .expect_err("nobody answered");
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
}

async fn connect_and_start_runs(peer: Peer) {
    let spec = sh("echo one flight").cwd("/");
    let (client, process) = within(
        "connect and start",
        connect_and_start(peer.url(), spec, support::options()),
    )
    .await
    .expect("connect and start");
    let done = within("completion", process.wait())
        .await
        .expect("complete");
    assert_eq!(done.stdout, b"one flight\n");
    assert_eq!(done.exit_code, 0);
    let stats = client.stats();
    assert_eq!(stats.requests("initialize"), 1);
    assert_eq!(stats.requests("process/start"), 1);
    assert_eq!(stats.requests("process/read"), 0, "{stats:?}");
    // The client is an ordinary one afterwards.
    let again = within("run", client.run(sh("echo again").cwd("/")))
        .await
        .expect("run");
    assert_eq!(again.stdout, b"again\n");
    // Without a cwd: rexec takes the start as it is (its own cwd), codex refuses it and
    // the client sends it again with the cwd from the initialize result.
    let (client, process) = within(
        "connect and start without a cwd",
        connect_and_start(peer.url(), sh("pwd"), support::options()),
    )
    .await
    .expect("connect and start without a cwd");
    let done = within("completion", process.wait())
        .await
        .expect("complete");
    assert_eq!(done.exit_code, 0);
    let cwd = client
        .environment_info()
        .and_then(|info| info.cwd)
        .expect("the server reports its cwd");
    assert_eq!(
        done.stdout,
        format!("{}\n", cwd.as_path().display()).into_bytes()
    );
    let starts = client.stats().requests("process/start");
    let default_cwd = client.supports(rexec_protocol::extensions::START_DEFAULT_CWD);
    assert_eq!(starts, if default_cwd { 1 } else { 2 });
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_start_runs_on_rexec() {
    connect_and_start_runs(Peer::rexec().await).await;
}

rexec_testkit::codex_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connect_and_start_runs_on_codex() {
        connect_and_start_runs(Peer::codex("connect_and_start_runs_on_codex").await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_still_unauthorized_and_a_failed_start_an_error() {
    let server = TestServer::with_config(ServerConfig {
        auth: Authenticator::capability_token("s3cret"),
        ..ServerConfig::default()
    })
    .await;
    let err = within(
        "unauthorized",
        connect_and_start(&server.url, sh("true").cwd("/"), support::options()),
    )
    .await
    .expect_err("no token");
    assert!(matches!(err, ClientError::Unauthorized { .. }), "{err:?}");
    let options = ClientOptions {
        token: Some("s3cret".to_owned()),
        ..support::options()
    };
    let err = within(
        "bad cwd",
        connect_and_start(&server.url, sh("true").cwd("/no/such/dir"), options.clone()),
    )
    .await
    .expect_err("the start fails");
    assert!(matches!(err, ClientError::Rpc(_)), "{err:?}");
    assert!(err.to_string().contains("/no/such/dir"), "{err}");
}

/// `ProcessSpec::stdin`: the input leaves right behind the start as one write that also
/// closes stdin, so the child reads it, then EOF, with no request of its own.
async fn stdin_rides_with_the_start(peer: Peer) {
    let client = within(
        "connect",
        Client::connect(
            Endpoint::WebSocket(peer.url().to_owned()),
            support::options(),
        ),
    )
    .await
    .expect("connect");
    let input = b"line one\nline two\n".repeat(1000);
    let spec = sh("wc -l; echo eof").cwd("/").stdin(input.clone());
    let outcome = within("run with stdin", client.run(spec)).await;
    if client.supports(rexec_protocol::extensions::WRITE_CLOSE_STDIN) {
        let done = outcome.expect("run with stdin");
        assert_eq!(String::from_utf8_lossy(&done.stdout), "2000\neof\n");
        assert_eq!(done.exit_code, 0);
        let stats = client.stats();
        assert_eq!(stats.requests("process/write"), 1, "{stats:?}");
        assert_eq!(stats.requests("process/read"), 0, "{stats:?}");
        // Empty input is EOF at once.
        let done = within(
            "empty stdin",
            client.run(sh("cat; echo eof").cwd("/").stdin(Vec::new())),
        )
        .await
        .expect("run with empty stdin");
        assert_eq!(done.stdout, b"eof\n");
    } else {
        // codex 0.169 cannot close stdin: refused before anything is started.
        let err = outcome.expect_err("no closeStdin");
        assert!(err.to_string().contains("closeStdin"), "{err}");
        assert_eq!(client.stats().requests("process/start"), 0);
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_rides_with_the_start_on_rexec() {
    stdin_rides_with_the_start(Peer::rexec().await).await;
}

rexec_testkit::codex_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stdin_rides_with_the_start_on_codex() {
        stdin_rides_with_the_start(Peer::codex("stdin_rides_with_the_start_on_codex").await).await;
    }
}

/// The stdin write does not wait for the start's answer: with that answer held back by a
/// proxy, the write (closing stdin, carrying the input) still reaches the server; once the
/// answer is let through, the run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdin_write_leaves_before_the_start_is_answered() {
    use support::proxy::{Proxy, Verdict};
    let server = TestServer::start().await;
    let proxy = Proxy::start(&server.url).await;
    let (gate, gate_rx) = tokio::sync::watch::channel(false);
    proxy.set_rule(move |frame| {
        if frame.answers == Some("process/start") {
            Verdict::Gate(gate_rx.clone())
        } else {
            Verdict::Pass
        }
    });
    let client = within(
        "connect",
        Client::connect(Endpoint::WebSocket(proxy.url.clone()), support::options()),
    )
    .await
    .expect("connect");
    let run = tokio::spawn({
        let client = client.clone();
        async move { client.run(sh("cat").cwd("/").stdin(&b"held\n"[..])).await }
    });
    proxy
        .wait_for("the write, with the start unanswered", |stats| {
            stats.requests.get("process/write").is_some_and(|&n| n >= 1)
        })
        .await;
    assert!(
        !run.is_finished(),
        "the run finished without its start answer"
    );
    let writes = proxy.requests("process/write");
    assert_eq!(writes[0]["params"]["closeStdin"], true, "{writes:?}");
    gate.send_replace(true);
    let done = within("run", run).await.expect("task").expect("run");
    assert_eq!(done.stdout, b"held\n");
    client.close().await;
}
