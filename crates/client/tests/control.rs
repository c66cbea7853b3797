//! Completion and control: the head + tail budget, `wait_until`, stdin, signals, terminate,
//! PTY resize, streams, and many requests in flight on one connection.

mod support;

use rexec_client::{Client, EventStream, OutputStream, Process, ProcessEvent, WriteStatus};
use std::time::Duration;
use support::{PERL_LINE, TestServer, assert_gap_free, collect, connect, lines, perl, sh, within};
use tokio::time::Instant;

/// Wait until the process's output (any stream) contains `needle`.
async fn wait_for_output(process: &Process, needle: &str) {
    let mut events = process.events();
    let mut seen = Vec::new();
    within(needle, async {
        while let Some(event) = events.next().await {
            if let ProcessEvent::Output { bytes, .. } = event {
                seen.extend_from_slice(&bytes);
                if String::from_utf8_lossy(&seen).contains(needle) {
                    return;
                }
            }
        }
        panic!(
            "stream ended before {needle:?}; saw {:?}",
            String::from_utf8_lossy(&seen)
        );
    })
    .await;
}

async fn client() -> (TestServer, Client) {
    let server = TestServer::start().await;
    let client = connect(&server.url).await;
    (server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_keeps_head_and_tail_with_an_exact_omitted_count() {
    let (_server, client) = client().await;
    let script = format!("{PERL_LINE} print line($_) for 1..5000; print STDERR \"tail\\n\"");
    let done = within("run", client.run(perl(&script).output_budget(1000)))
        .await
        .expect("run");
    let all = lines(1, 5000);
    let expected = [&all[..500], &all[all.len() - 500..]].concat();
    assert_eq!(done.stdout, expected);
    assert_eq!(done.omitted_bytes, all.len() as u64 - 1000);
    assert_eq!(done.stderr, b"tail\n", "each stream has its own budget");
    assert!(done.pty.is_empty());
    assert!(done.timings.total >= done.timings.completion_wait);
    assert!(done.timings.total >= done.timings.start_rpc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_until_returns_none_and_leaves_the_process_running() {
    let (_server, client) = client().await;
    let process = client
        .start(sh("cat; echo done >&2").pipe_stdin(true))
        .await
        .expect("start");
    let deadline = Instant::now() + Duration::from_millis(100);
    let early = process.wait_until(deadline).await.expect("wait_until");
    assert!(early.is_none(), "cat is still waiting for stdin");
    assert!(Instant::now() >= deadline);
    assert_eq!(
        process.write(b"one\n").await.expect("write"),
        WriteStatus::Accepted
    );
    assert_eq!(
        process.write(b"two\n").await.expect("write"),
        WriteStatus::Accepted
    );
    assert_eq!(
        process.close_stdin().await.expect("close"),
        WriteStatus::Accepted
    );
    let done = process
        .wait_until(support::in_deadline())
        .await
        .expect("wait_until")
        .expect("finished");
    assert_eq!(done.stdout, b"one\ntwo\n");
    assert_eq!(done.stderr, b"done\n");
    assert_eq!(done.exit_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_without_a_stdin_pipe_reports_stdin_closed() {
    let (_server, client) = client().await;
    let process = client.start(sh("sleep 5")).await.expect("start");
    assert_eq!(
        process.write(b"x").await.expect("write"),
        WriteStatus::StdinClosed
    );
    assert!(process.terminate().await.expect("terminate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_reaches_the_process_group() {
    let (_server, client) = client().await;
    let process = client
        .start(sh(
            "trap 'echo caught; exit 7' INT; echo ready; while :; do sleep 0.05; done",
        ))
        .await
        .expect("start");
    wait_for_output(&process, "ready\n").await;
    process.interrupt().await.expect("interrupt");
    let done = within("wait", process.wait()).await.expect("completion");
    assert_eq!(done.exit_code, 7);
    assert_eq!(done.stdout, b"ready\ncaught\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_kills_a_running_process_once() {
    let (_server, client) = client().await;
    let process = client
        .start(sh("echo up; exec sleep 30"))
        .await
        .expect("start");
    wait_for_output(&process, "up\n").await;
    assert!(
        process.terminate().await.expect("terminate"),
        "it was running"
    );
    let done = within("wait", process.wait()).await.expect("completion");
    assert_ne!(done.exit_code, 0, "killed: {}", done.exit_code);
    assert!(!process.terminate().await.expect("terminate again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_changes_the_pty_window_size() {
    let (_server, client) = client().await;
    let spec = sh("echo ready; read line; stty size").tty(true);
    let process = client.start(spec).await.expect("start");
    wait_for_output(&process, "ready").await;
    process.resize(40, 100).await.expect("resize");
    process.write(b"\n").await.expect("write");
    let done = within("wait", process.wait()).await.expect("completion");
    let pty = String::from_utf8_lossy(&done.pty);
    assert!(pty.contains("40 100"), "pty output: {pty:?}");
    assert!(done.stdout.is_empty() && done.stderr.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_is_ordered_and_ends_after_closed() {
    let (_server, client) = client().await;
    let process = client
        .start(sh("echo out; sleep 0.02; echo err >&2; exit 5"))
        .await
        .expect("start");
    let events = collect(process.events()).await;
    assert_gap_free(&events);
    let streams: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ProcessEvent::Output { stream, .. } => Some(*stream),
            _ => None,
        })
        .collect();
    assert_eq!(streams, [OutputStream::Stdout, OutputStream::Stderr]);
    let exit = events
        .iter()
        .find(|e| matches!(e, ProcessEvent::Exited { .. }));
    assert!(matches!(
        exit,
        Some(ProcessEvent::Exited {
            code: 5,
            sandbox_denied: false,
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_in_flight_on_one_connection() {
    let (_server, client) = client().await;
    let runs = (0..24).map(|i| {
        let client = client.clone();
        async move {
            let done = client
                .run(sh(&format!("sleep 0.{}; echo {i}", i % 3)))
                .await
                .expect("run");
            assert_eq!(done.stdout, format!("{i}\n").as_bytes());
        }
    });
    within("concurrent runs", futures_util::future::join_all(runs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chosen_process_id_is_used_and_must_be_unique() {
    let (_server, client) = client().await;
    let process = client
        .start(sh("sleep 5").process_id("mine"))
        .await
        .expect("start");
    assert_eq!(process.id(), "mine");
    let err = client
        .start(sh("true").process_id("mine"))
        .await
        .expect_err("id in use");
    assert!(err.to_string().contains("mine"), "{err}");
    process.terminate().await.expect("terminate");
    within("wait", process.wait()).await.expect("completion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_is_an_rpc_error() {
    let (_server, client) = client().await;
    let err = client
        .start(rexec_client::ProcessSpec::new(["/nonexistent/program"]))
        .await
        .expect_err("no such program");
    assert!(matches!(err, rexec_client::ClientError::Rpc(_)), "{err:?}");
}

/// Every output byte of a lossless stream, failing on a gap or a failure; `between` runs
/// after each `every` bytes, between two events.
async fn read_lossless(
    events: &mut EventStream,
    every: usize,
    mut between: impl AsyncFnMut(),
) -> Vec<u8> {
    let mut stdout = Vec::new();
    let mut since = 0usize;
    while let Some(event) = events.next().await {
        match event {
            ProcessEvent::Output { bytes, .. } => {
                stdout.extend_from_slice(&bytes);
                since += bytes.len();
            }
            ProcessEvent::Gap { seqs, bytes_lost } => {
                panic!("gap {seqs:?} of {bytes_lost} bytes in a lossless stream")
            }
            ProcessEvent::Failed { reason } => panic!("failed: {reason}"),
            _ => {}
        }
        if since >= every {
            since = 0;
            between().await;
        }
    }
    stdout
}

/// A lossless subscriber that reads slowly slows the process down instead of falling behind
/// the replay history: every byte of a stream far larger than the history (and than the
/// server's 1 MiB retention) arrives, with no gap and no read. A plain subscriber on the same
/// workload would lag and see gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_lossless_subscriber_loses_nothing() {
    let (_server, client) = client().await;
    let script = format!("{PERL_LINE} print line($_) for 1..120000");
    let process = client
        .start(perl(&script).lossless(true))
        .await
        .expect("start");
    let mut events = process.events();
    let collected = within(
        "slow lossless subscriber",
        // A consumer much slower than the server (a slow pipe, a terminal): about 32 MB/s,
        // however the output is chunked.
        read_lossless(&mut events, 64 * 1024, async || {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }),
    )
    .await;
    let expected = lines(1, 120_000);
    assert!(
        expected.len() > 5_000_000,
        "precondition: a stream far over 1 MiB"
    );
    assert!(
        collected == expected,
        "delivered {} of {} bytes",
        collected.len(),
        expected.len()
    );
    let reads = client.stats().requests("process/read");
    assert_eq!(reads, 0, "repair reads for a lossless subscriber");
    let done = within("wait", process.wait()).await.expect("completion");
    assert_eq!(done.exit_code, 0);
}

/// The deadlock a reader-side hold had: a lossless consumer that awaits another request of
/// the same client between two events. With the server holding the output
/// (`process/start.holdOutput`) the connection's reader never waits for the consumer, so
/// the request is answered, and every byte of 8 MiB still arrives, with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossless_consumer_may_await_other_requests_between_events() {
    let (_server, client) = client().await;
    let script = format!("{PERL_LINE} print line($_) for 1..180000");
    let process = client
        .start(perl(&script).lossless(true))
        .await
        .expect("start");
    let mut events = process.events();
    let collected = within(
        "a lossless consumer making requests",
        read_lossless(&mut events, 256 * 1024, async || {
            let done = client
                .run(sh("true"))
                .await
                .expect("a request between events");
            assert_eq!(done.exit_code, 0);
        }),
    )
    .await;
    let expected = lines(1, 180_000);
    assert!(
        expected.len() > 8_000_000,
        "precondition: far over the hold"
    );
    assert!(
        collected == expected,
        "delivered {} of {} bytes",
        collected.len(),
        expected.len()
    );
}
