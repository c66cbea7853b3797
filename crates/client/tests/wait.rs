//! `Process::wait_for` against a real server: the builder's conditions reach the server
//! and its answer comes back as a `WaitOutcome`; builder misuse and a server without
//! `process/waitFor` fail before anything is sent; and how soon a regex wait answers after
//! the matching output was written (printed, not asserted tightly).

mod support;

use rexec_client::{ClientError, OutputStream, WaitCondition, WaitFired, extensions};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{Peer, TestServer, connect, perl, sh, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_server_is_waited_on_until_it_listens() {
    let server = TestServer::start().await;
    let client = connect(&server.url).await;
    assert!(client.supports(extensions::PROCESS_WAIT_FOR));
    let process = within(
        "start",
        client.start(sh(
            "echo 'listening soon'; sleep 0.2; echo 'listening on :8080' >&2; sleep 30",
        )),
    )
    .await
    .expect("start");
    let ready = within(
        "wait_for",
        process.wait_for(
            WaitCondition::new()
                .matches(r"listening on :\d+")
                .on_stream(OutputStream::Stderr)
                .exit()
                .timeout(Duration::from_secs(20)),
        ),
    )
    .await
    .expect("wait_for");
    assert_eq!(ready.fired, WaitFired::Matched, "{ready:?}");
    assert_eq!(ready.condition, Some(0));
    assert_eq!(ready.matched.as_deref(), Some(&b"listening on :8080"[..]));
    assert_eq!(
        (ready.stream, ready.offset),
        (Some(OutputStream::Stderr), 0)
    );
    assert_eq!(ready.exit_code, None, "still running");

    let quiet = within(
        "wait_for idle",
        process.wait_for(
            WaitCondition::new()
                .bytes(1000)
                .idle(Duration::from_millis(200))
                .timeout(Duration::from_secs(20)),
        ),
    )
    .await
    .expect("wait_for");
    assert_eq!(quiet.fired, WaitFired::Idle, "{quiet:?}");
    assert_eq!(quiet.offset, 34, "all output so far: 15 + 19 bytes");

    let nothing = within(
        "wait_for timeout",
        process.wait_for(
            WaitCondition::new()
                .matches("never")
                .after_seq(ready.seq)
                .timeout(Duration::from_millis(200)),
        ),
    )
    .await
    .expect("wait_for");
    assert!(nothing.timed_out(), "{nothing:?}");

    process.terminate().await.expect("terminate");
    let closed = within(
        "wait_for closed",
        process.wait_for(WaitCondition::new().closed()),
    )
    .await
    .expect("wait_for");
    assert_eq!(closed.fired, WaitFired::Closed);
    assert_eq!(closed.exit_code, Some(137), "SIGKILL");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_condition_the_builder_cannot_refine_is_invalid_input() {
    let server = TestServer::start().await;
    let client = connect(&server.url).await;
    let process = within("start", client.start(sh("sleep 30")))
        .await
        .expect("start");
    for condition in [
        WaitCondition::new(),
        WaitCondition::new().exit().on_stream(OutputStream::Stdout),
        WaitCondition::new().bytes(3).window(10),
    ] {
        let err = process
            .wait_for(condition.clone())
            .await
            .expect_err("refused");
        assert!(
            matches!(err, ClientError::InvalidInput(_)),
            "{condition:?}: {err:?}"
        );
    }
    let err = process
        .wait_for(WaitCondition::new().matches("("))
        .await
        .expect_err("a bad regex");
    assert!(
        matches!(&err, ClientError::Rpc(e) if e.message.contains("invalid regex")),
        "{err:?}"
    );
    assert_eq!(
        client.stats().requests("process/waitFor"),
        1,
        "only the regex was sent"
    );
    process.terminate().await.expect("terminate");
    client.close().await;
}

rexec_testkit::codex_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wait_for_is_unsupported_on_codex() {
        let peer = Peer::codex("wait_for_is_unsupported_on_codex").await;
        let client = connect(peer.url()).await;
        let process = within("start", client.start(sh("sleep 5"))).await.expect("start");
        let err = process.wait_for(WaitCondition::new().exit()).await.expect_err("codex");
        assert!(
            matches!(&err, ClientError::Unsupported { extension } if extension == extensions::PROCESS_WAIT_FOR),
            "{err:?}"
        );
        assert_eq!(client.stats().requests("process/waitFor"), 0);
        process.terminate().await.expect("terminate");
        client.close().await;
    }
}

/// The child stamps each line with the wall clock just before writing it; the wait's
/// answer is timed on arrival. This spans the whole path: pipe, pump, wake-up, regex,
/// the answer over loopback WebSocket and its decoding. Run with `--nocapture` to see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_wait_latency_is_printed() {
    const LINES: usize = 40;
    let server = TestServer::start().await;
    let client = connect(&server.url).await;
    let script = format!(
        "use Time::HiRes qw(time sleep); $|=1; \
         for (1..{LINES}) {{ sleep 0.03; printf(\"at %.6f ready\\n\", time) }} sleep 30"
    );
    let process = within("start", client.start(perl(&script)))
        .await
        .expect("start");
    let mut after_seq = 0;
    let mut latencies = Vec::new();
    for _ in 0..LINES {
        let ready = within(
            "wait_for",
            process.wait_for(
                WaitCondition::new()
                    .matches(r"at (\d+\.\d+) ready")
                    .after_seq(after_seq)
                    .timeout(Duration::from_secs(10)),
            ),
        )
        .await
        .expect("wait_for");
        let arrived = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        assert_eq!(ready.fired, WaitFired::Matched, "{ready:?}");
        let text = String::from_utf8(ready.matched.clone().expect("matched")).expect("utf-8");
        let written: f64 = text
            .trim_start_matches("at ")
            .trim_end_matches(" ready")
            .parse()
            .expect("a timestamp");
        latencies.push(Duration::from_secs_f64((arrived - written).max(0.0)));
        after_seq = ready.seq;
    }
    process.terminate().await.expect("terminate");
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "regex wait, output written -> answer received ({} lines): p50 {:?}, p90 {:?}, max {:?}",
        latencies.len(),
        at(0.5),
        at(0.9),
        at(1.0)
    );
    assert!(at(0.5) < Duration::from_secs(1), "a wait answers promptly");
    client.close().await;
}
