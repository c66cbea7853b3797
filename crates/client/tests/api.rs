//! The public API against a real server: the lazy connect (one per client, shared by
//! concurrent first calls, retried after a failure), the inherited environment, the
//! timeout, kill-on-drop and `detach`, output callbacks, `EventStream` as a `Stream`, a
//! lossless `run`, and `Unsupported` from a server without rexec's extensions.

mod support;

use futures_util::StreamExt as _;
use rexec_client::{
    Client, ClientError, Endpoint, OutputStream, ProcessEvent, ProcessSpec, extensions,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Peer, TestServer, lines, output_of, sh, within};
use tokio::net::TcpListener;

fn client(url: &str) -> Client {
    Client::new(Endpoint::WebSocket(url.to_owned()), support::options())
}

/// `Client::new` does no I/O; the call that needs the server connects and gets the
/// connect error; the next call connects again, and this time it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lazy_connect_is_reported_and_the_next_call_tries_again() {
    // A port with nothing listening on it (yet).
    let addr = {
        let probe = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        probe.local_addr().expect("addr")
    };
    let client = client(&format!("ws://{addr}"));
    assert_eq!(
        client.session_id(),
        "",
        "no session before the first connect"
    );
    let err = within("refused connect", client.run(sh("echo hi")))
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");

    let listener = TcpListener::bind(addr).await.expect("rebind the same port");
    let server = rexec_server::Server::new(rexec_server::ServerConfig::default());
    let serving = tokio::spawn(rexec_server::serve_websocket(
        Arc::clone(&server),
        listener,
        std::future::pending::<()>(),
    ));
    let done = within("run after the server came up", client.run(sh("echo hi")))
        .await
        .expect("the second call connects");
    assert_eq!(done.stdout, b"hi\n");
    assert!(done.success());
    assert!(!client.session_id().is_empty());
    assert_eq!(client.stats().requests("initialize"), 2, "one per attempt");
    client.close().await;
    server.kill_all_processes();
    serving.abort();
}

/// Concurrent first calls share one connect; each gets its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_share_one_connect() {
    let server = TestServer::start().await;
    let client = client(&server.url);
    let runs = (0..4).map(|i| client.run(sh(&format!("echo {i}"))));
    let (runs, metadata) = within(
        "concurrent first calls",
        futures_util::future::join(
            futures_util::future::join_all(runs),
            client.metadata(std::path::Path::new("/")),
        ),
    )
    .await;
    for (i, done) in runs.into_iter().enumerate() {
        assert_eq!(done.expect("run").stdout, format!("{i}\n").into_bytes());
    }
    assert!(metadata.expect("metadata").is_directory);
    let stats = client.stats();
    assert_eq!(stats.requests("initialize"), 1, "{stats:?}");
    assert_eq!(stats.requests("process/start"), 4, "{stats:?}");
    client.close().await;
}

/// By default a process gets the server's core environment with `env` on top;
/// `clean_env` gives it exactly `env`. The same against codex (upstream `envPolicy`).
async fn the_environment_is_inherited_by_default(peer: Peer) {
    let client = client(peer.url());
    let spec = ProcessSpec::new(["/usr/bin/env"]).env("FOO", "bar");
    let done = within("inherited", client.run(spec.clone()))
        .await
        .expect("run");
    let out = String::from_utf8_lossy(&done.stdout).into_owned();
    let has = |prefix: &str| out.lines().any(|line| line.starts_with(prefix));
    assert!(
        has("HOME=/") && has("PATH="),
        "core variables inherited: {out}"
    );
    assert!(has("FOO=bar"), "env applies on top: {out}");

    let done = within("clean", client.run(spec.clean_env()))
        .await
        .expect("run clean");
    assert_eq!(
        String::from_utf8_lossy(&done.stdout),
        "FOO=bar\n",
        "nothing inherited"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_is_inherited_by_default_on_rexec() {
    the_environment_is_inherited_by_default(Peer::rexec().await).await;
}

rexec_testkit::codex_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_environment_is_inherited_by_default_on_codex() {
        the_environment_is_inherited_by_default(
            Peer::codex("the_environment_is_inherited_by_default_on_codex").await,
        )
        .await;
    }
}

// A server without rexec's extensions: what needs one fails with `Unsupported`, naming
// it, and nothing is started.
rexec_testkit::codex_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_extension_is_unsupported_not_a_protocol_error() {
        let peer = Peer::codex("a_missing_extension_is_unsupported_not_a_protocol_error").await;
        let client = client(peer.url());
        let err = within("stdin up front", client.run(sh("cat").stdin(&b"x"[..])))
            .await
            .expect_err("codex cannot close stdin");
        assert!(
            matches!(&err, ClientError::Unsupported { extension } if extension == extensions::WRITE_CLOSE_STDIN),
            "{err:?}"
        );
        assert_eq!(client.stats().requests("process/start"), 0);
        let process = within("start", client.start(sh("sleep 5").tty(true)))
            .await
            .expect("start");
        let err = process.resize(24, 80).await.expect_err("no resize");
        assert!(
            matches!(&err, ClientError::Unsupported { extension } if extension == extensions::PROCESS_RESIZE),
            "{err:?}"
        );
        process.terminate().await.expect("terminate");
        client.close().await;
    }
}

/// `.timeout(d)`: the client terminates the process at the deadline even when nobody
/// waits (here only an event stream watches), and the completion says `timed_out`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_terminates_the_process_and_says_so() {
    let server = TestServer::start().await;
    let client = client(&server.url);
    let spec = sh("echo started; exec sleep 30").timeout(Duration::from_millis(300));
    let process = within("start", client.start(spec)).await.expect("start");
    let events = within(
        "events end at the deadline",
        process.events().collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(output_of(&events), b"started\n");
    let Some(ProcessEvent::Exited { code, .. }) = events.iter().rev().nth(1).cloned() else {
        panic!("no exit before close: {events:?}");
    };
    assert!(code > 128, "killed by a signal: {code}");
    let done = process.wait().await.expect("wait");
    assert!(done.timed_out);
    assert!(!done.success());
    assert!(
        done.timings.total < Duration::from_secs(10),
        "{:?}",
        done.timings
    );

    let quick = within(
        "quick run",
        client.run(sh("exit 0").timeout(Duration::from_secs(20))),
    )
    .await
    .expect("run");
    assert!(!quick.timed_out && quick.success());
    let failed = within("exit 3", client.run(sh("exit 3")))
        .await
        .expect("run");
    assert!(!failed.success());
    client.close().await;
}

/// Dropping the last handle of a running process terminates it; `detach` keeps it
/// running. `Client::process` finds either again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_kills_unless_detached() {
    let server = TestServer::start().await;
    let client = client(&server.url);
    let doomed = within(
        "start",
        client.start(sh("exec sleep 30").process_id("doomed")),
    )
    .await
    .expect("start");
    let watcher = doomed.events();
    drop(doomed);
    let events = within("the watcher keeps it alive", async {
        tokio::time::timeout(Duration::from_millis(300), watcher.collect::<Vec<_>>()).await
    })
    .await;
    assert!(events.is_err(), "still running while a stream follows it");
    // The stream went with the timeout: the last handle is gone now.
    let done = within("killed on drop", client.process("doomed").wait())
        .await
        .expect("wait");
    assert!(done.exit_code > 128, "killed: {}", done.exit_code);

    // A handle from `Client::process` counts as one of the same process.
    let first = within(
        "start",
        client.start(sh("sleep 0.5; echo alive").process_id("shared")),
    )
    .await
    .expect("start");
    let second = client.process("shared");
    drop(first);
    let done = within("the other handle", second.wait())
        .await
        .expect("wait");
    assert_eq!((done.exit_code, done.stdout), (0, b"alive\n".to_vec()));

    let kept = within(
        "start",
        client.start(sh("sleep 0.5; echo survived").process_id("kept")),
    )
    .await
    .expect("start");
    kept.detach();
    drop(kept);
    let done = within("detached", client.process("kept").wait())
        .await
        .expect("wait");
    assert_eq!(done.exit_code, 0);
    assert_eq!(done.stdout, b"survived\n");
    client.close().await;
}

/// `.on_output`: every chunk, in order, all of it before `run` returns — more than the
/// completion's budget keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_callbacks_see_every_chunk_in_order_before_run_returns() {
    let server = TestServer::start().await;
    let client = client(&server.url);
    let seen = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let sink = Arc::clone(&seen);
    let n = 60_000; // 2.7 MB
    let script = format!(
        "{}for my $n (1..{n}) {{ print line($n) }} print STDERR \"end\"",
        support::PERL_LINE
    );
    let spec = support::perl(&script)
        .output_budget(4096)
        .on_output(move |stream, bytes| {
            let mut seen = sink.lock().expect("lock");
            match stream {
                OutputStream::Stderr => seen.1.extend_from_slice(bytes),
                _ => seen.0.extend_from_slice(bytes),
            }
        });
    assert_eq!(spec, spec.clone(), "a spec with a callback still compares");
    let done = within("run", client.run(spec)).await.expect("run");
    let (stdout, stderr) = std::mem::take(&mut *seen.lock().expect("lock"));
    assert_eq!(support::digest(&stdout), support::digest(&lines(1, n)));
    assert_eq!(stderr, b"end");
    assert!(
        done.omitted_bytes > 0,
        "the completion kept only its budget"
    );
    client.close().await;
}

/// `EventStream` is a `futures::Stream`, and a lossless `run` (nobody subscribes) does not
/// hold the connection back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_streams_and_a_lossless_run_does_not_stall() {
    let server = TestServer::start().await;
    let client = client(&server.url);
    let n = 2000;
    let script = format!(
        "{}for my $n (1..{n}) {{ print line($n) }}",
        support::PERL_LINE
    );
    let process = within("start", client.start(support::perl(&script)))
        .await
        .expect("start");
    let events: Vec<ProcessEvent> = within("stream", process.events().collect()).await;
    support::assert_gap_free(&events);
    assert_eq!(output_of(&events), lines(1, n));
    let filtered = process
        .events()
        .filter_map(
            |event| async move { matches!(event, ProcessEvent::Exited { .. }).then_some(event) },
        )
        .count();
    assert_eq!(within("replayed", filtered).await, 1);

    // 8 MiB through a lossless process nobody subscribes to.
    let big = sh("head -c 8388608 /dev/zero")
        .lossless(true)
        .output_budget(0);
    let done = within("lossless run", client.run(big)).await.expect("run");
    assert!(done.success());
    assert_eq!(done.omitted_bytes, 8 << 20);
    client.close().await;
}
