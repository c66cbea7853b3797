//! Disconnects: the client resumes its session over a new connection, repairs each live
//! process with one read, retries writes with their writeId, fails pending calls at once,
//! and fails the processes (never hangs) when the session cannot be resumed in time.

mod support;

use rexec_client::{ClientError, ClientOptions, ProcessEvent};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::proxy::{Fault, Proxy, Verdict};
use support::{PERL_LINE, TestServer, collect, connect, connect_with, lines, perl, sh, within};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_during_10_mb_of_output_loses_and_repeats_nothing() {
    // 10 MB of numbered lines, paced (~48 KiB per 10 ms) so that what the process writes
    // while the client is away stays well inside the server's 1 MiB retention.
    const LINES: u64 = 220_000; // 46 bytes each
    let server = TestServer::start().await;
    let proxy = Proxy::start(&server.url).await;
    let client = connect(&proxy.url).await;
    let script = format!(
        "{PERL_LINE} for my $i (1..{LINES}) {{ print line($i); \
         select(undef, undef, undef, 0.01) if $i % 1000 == 0 }}"
    );
    let process = client
        .start(perl(&script).output_budget(16 << 20))
        .await
        .expect("start");
    proxy
        .wait_for("2 MB of output", |s| s.output_bytes >= 2_000_000)
        .await;
    let cut_at = Instant::now();
    proxy.cut_all();
    proxy
        .wait_for("the resume's repair read", |s| {
            s.results.get("process/read") == Some(&1)
        })
        .await;
    let outage = cut_at.elapsed();
    let done = within("wait", process.wait()).await.expect("completion");
    println!("cut to repair read: {outage:?}; {:?}", done.timings);
    let expected = lines(1, LINES);
    assert!(expected.len() > 10_000_000);
    assert!(
        done.stdout == expected,
        "delivered {} but the process wrote {}",
        support::digest(&done.stdout),
        support::digest(&expected)
    );
    assert!(done.gaps.is_empty(), "gaps: {:?}", done.gaps);
    // One resume (an attempt refused with -32010 while the server notices the cut may
    // precede it, its pipelined read refused with it), one repair read per live process.
    let initializes = proxy.count("initialize");
    assert_eq!(proxy.results("initialize"), 2);
    assert_eq!(
        proxy.results("process/read"),
        1,
        "one repair read per live process"
    );
    assert!(proxy.count("process/read") < initializes);
    for read in proxy.requests("process/read") {
        assert_eq!(read["params"]["waitMs"].as_u64(), Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_was_lost_is_retried_with_the_same_write_id() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(&server.url).await;
    let cut_once = AtomicBool::new(true);
    proxy.set_rule(move |f| {
        if f.answers == Some("process/write") && cut_once.swap(false, Ordering::SeqCst) {
            Verdict::Cut
        } else {
            Verdict::Pass
        }
    });
    let client = connect(&proxy.url).await;
    let process = client
        .start(sh("cat").pipe_stdin(true))
        .await
        .expect("start");
    let status = within("write", process.write(b"hello\n"))
        .await
        .expect("write");
    assert_eq!(status, rexec_client::WriteStatus::Accepted);
    process.close_stdin().await.expect("close stdin");
    let done = within("wait", process.wait()).await.expect("completion");
    assert_eq!(done.stdout, b"hello\n", "written exactly once");
    let writes = proxy.requests("process/write");
    assert_eq!(writes.len(), 3, "write, its retry, close_stdin");
    assert_eq!(
        writes[0]["params"]["writeId"],
        writes[1]["params"]["writeId"]
    );
    assert_ne!(
        writes[1]["params"]["writeId"],
        writes[2]["params"]["writeId"]
    );
    assert_eq!(proxy.results("initialize"), 2);
}

/// The client's writer can hit the end of a connection (a reset) while its reader is still
/// busy with frames received before it: here a lossless subscriber that is not polled holds
/// the reader back for as long as the test likes (the proxy plays a server without
/// `process/start.holdOutput`, so the client, not the server, keeps the subscriber
/// lossless). A write must then resume the session instead of failing (or waiting on the
/// dead connection), and be applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_the_writer_died_resumes_while_the_reader_is_busy() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(&server.url).await;
    hide_hold_output(&proxy);
    let client = connect(&proxy.url).await;
    let cat = client
        .start(sh("cat").pipe_stdin(true))
        .await
        .expect("start cat");
    // Far more than the replay history (1 MiB), so the reader is held back at its limit.
    let flood = client
        .start(
            perl(&format!(
                "{PERL_LINE} for my $i (1..200000) {{ print line($i) }}"
            ))
            .lossless(true),
        )
        .await
        .expect("start flood");
    let held = flood.events();
    let mut watch = flood.events();
    // Once the history is full (256 events or 1 MiB less one chunk's allowance), the reader
    // holds back before reading the next frame: it cannot see the reset.
    within("the replay history to fill", async {
        let (mut events, mut bytes) = (0, 0);
        while events < 256 && bytes < 960 * 1024 {
            match watch.next().await {
                Some(ProcessEvent::Output { bytes: chunk, .. }) => bytes += chunk.len(),
                Some(_) => {}
                None => panic!("the flood ended before filling the history"),
            }
            events += 1;
        }
    })
    .await;
    drop(watch);
    let live = proxy.live_connections();
    assert_eq!(live.len(), 1);
    assert!(proxy.inject(live[0], Fault::ResetClient));
    proxy.wait_for("the reset", |s| s.client_resets == 1).await;
    let write = tokio::spawn({
        let cat = cat.clone();
        async move { cat.write(b"once\n").await }
    });
    // The dead writer alone must start the resume: the reader is still held back.
    tokio::time::timeout(
        Duration::from_secs(10),
        proxy.wait_for("the resume", |s| s.results.get("initialize") == Some(&2)),
    )
    .await
    .expect("no resume while the reader was busy: the dead writer went unnoticed");
    drop(held);
    let status = within("write", write)
        .await
        .expect("write task")
        .expect("write");
    assert_eq!(status, rexec_client::WriteStatus::Accepted);
    cat.close_stdin().await.expect("close stdin");
    let done = within("cat", cat.wait()).await.expect("cat completes");
    assert_eq!(done.stdout, b"once\n", "written exactly once");
    flood.terminate().await.expect("terminate the flood");
    within("flood", flood.wait())
        .await
        .expect("the flood completes");
}

/// Make the proxied server look like one without `process/start.holdOutput`: the
/// extension is gone from `initialize`'s answer and `holdOutput` from every start.
fn hide_hold_output(proxy: &Proxy) {
    proxy.rewrite_requests(|request| {
        if request["method"] == "process/start"
            && let Some(params) = request["params"].as_object_mut()
        {
            params.remove("holdOutput");
        }
    });
    proxy.set_rule(|frame| {
        if frame.answers != Some("initialize") {
            return Verdict::Pass;
        }
        let mut answer = frame.value.clone();
        if let Some(names) = answer["result"]["rexec"]["extensions"].as_array_mut() {
            names.retain(|name| name != rexec_client::extensions::START_HOLD_OUTPUT);
        }
        Verdict::Replace(answer)
    });
}

/// `ProcessSpec::stdin`'s write is a write like any other: when the answer to it is lost
/// in a cut (the start's answer got through), it is sent again with its writeId after the
/// resume, and the child reads its input once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_whose_stdin_write_answer_was_lost_still_gets_its_input_once() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(&server.url).await;
    let cut_once = AtomicBool::new(true);
    proxy.set_rule(move |f| {
        if f.answers == Some("process/write") && cut_once.swap(false, Ordering::SeqCst) {
            Verdict::Cut
        } else {
            Verdict::Pass
        }
    });
    let client = connect(&proxy.url).await;
    let input = lines(1, 100);
    let done = within("run", client.run(sh("cat").stdin(input.clone())))
        .await
        .expect("run with stdin across a cut");
    assert!(
        done.stdout == input,
        "stdout {:?}",
        support::digest(&done.stdout)
    );
    assert_eq!(done.exit_code, 0);
    let writes = proxy.requests("process/write");
    assert_eq!(writes.len(), 2, "the write and its resend: {writes:?}");
    assert_eq!(
        writes[0]["params"]["writeId"],
        writes[1]["params"]["writeId"]
    );
    assert_eq!(proxy.results("initialize"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_call_fails_fast_and_the_process_is_still_followed() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(&server.url).await;
    proxy.set_rule(|f| {
        if f.answers == Some("process/signal") {
            Verdict::Cut
        } else {
            Verdict::Pass
        }
    });
    let client = connect(&proxy.url).await;
    let process = client
        .start(sh(
            "trap 'echo caught; exit 7' INT; echo ready; while :; do sleep 0.05; done",
        ))
        .await
        .expect("start");
    let mut events = process.events();
    within("ready", async {
        while let Some(event) = events.next().await {
            if matches!(&event, ProcessEvent::Output { bytes, .. } if bytes.as_ref() == b"ready\n")
            {
                return;
            }
        }
        panic!("stream ended before ready");
    })
    .await;
    let started = Instant::now();
    let err = process.interrupt().await.expect_err("the answer was lost");
    assert!(matches!(err, ClientError::Disconnected(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "must fail fast");
    // The signal did reach the server; the process's end arrives over the resumed session.
    let done = within("wait", process.wait()).await.expect("completion");
    assert_eq!(done.exit_code, 7);
    assert_eq!(done.stdout, b"ready\ncaught\n");
    // The end may also have arrived just before the cut (the trap can outrun the signal's
    // answer on a busy machine); the session is resumed either way.
    proxy
        .wait_for("the resume", |s| {
            s.results.get("initialize").copied().unwrap_or(0) == 2
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_still_attached_is_retried_until_the_server_lets_go() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(&server.url).await;
    let cut_once = AtomicBool::new(true);
    proxy.set_rule(move |f| {
        if f.is("process/output") && cut_once.swap(false, Ordering::SeqCst) {
            // The server keeps its side for 350 ms: resumes meanwhile get -32010.
            Verdict::CutClientSide(Duration::from_millis(350))
        } else {
            Verdict::Pass
        }
    });
    let client = connect(&proxy.url).await;
    let done = within("run", client.run(sh("echo a; sleep 0.6; echo b")))
        .await
        .expect("completion");
    assert_eq!(done.stdout, b"a\nb\n");
    let initializes = proxy.count("initialize");
    assert!(
        initializes >= 3,
        "{initializes} initialize requests: -32010 was not retried"
    );
    // Each attempt pipelines its repair read behind initialize; a refused attempt's read
    // may die with its connection before it reaches the wire.
    let reads = proxy.count("process/read");
    assert!((1..initializes).contains(&reads), "{reads} reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_fail_when_the_session_cannot_be_resumed_in_time() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(&server.url).await;
    let options = ClientOptions {
        resume_window: Duration::from_millis(800),
        ..support::options()
    };
    let client = connect_with(&proxy.url, options).await;
    let process = client.start(sh("sleep 30")).await.expect("start");
    let events = process.events();
    proxy.refuse(true);
    proxy.cut_all();
    let started = Instant::now();
    let err = within("wait", process.wait())
        .await
        .expect_err("cannot complete");
    assert!(matches!(err, ClientError::Disconnected(_)), "{err:?}");
    assert!(
        err.to_string().contains("could not resume session"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let events = collect(events).await;
    assert!(matches!(events.last(), Some(ProcessEvent::Failed { .. })));
    let again = client.start(sh("true")).await.expect_err("link is down");
    assert!(matches!(again, ClientError::Disconnected(_)), "{again:?}");
}
