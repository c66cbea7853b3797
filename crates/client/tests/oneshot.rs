//! The happy path costs no extra round trip: a one-shot command completes from pushed
//! events with zero `process/read` requests on the wire — against rexec, and against codex
//! exec-server 0.169.0 when `REXEC_CODEX_BIN` is set.

mod support;

use rexec_testkit::codex::{CodexServer, require_codex_bin};
use std::time::Duration;
use support::proxy::Proxy;
use support::{TestServer, connect, sh};

const RUNS: usize = 20;

async fn one_shots_without_reads(label: &str, upstream: &str) {
    let proxy = Proxy::start(upstream).await;
    let client = connect(&proxy.url).await;
    let mut totals: Vec<Duration> = Vec::new();
    for _ in 0..RUNS {
        let done = support::within(
            "one-shot run",
            client.run(sh("echo out; echo err >&2; exit 3")),
        )
        .await
        .expect("run");
        assert_eq!(done.exit_code, 3);
        assert!(!done.sandbox_denied);
        assert_eq!(done.stdout, b"out\n");
        assert_eq!(done.stderr, b"err\n");
        assert!(done.gaps.is_empty());
        assert_eq!(done.omitted_bytes, 0);
        totals.push(done.timings.total);
    }
    let true_runs = 10;
    for _ in 0..true_runs {
        let done = client
            .run(rexec_client::ProcessSpec::new(["/usr/bin/true"]))
            .await
            .expect("run true");
        assert_eq!(done.exit_code, 0);
        totals.push(done.timings.total);
    }
    totals.sort();
    let reads = proxy.count("process/read");
    println!(
        "{label}: {} one-shot runs, process/read requests on the wire: {reads}, \
         total p50 {:?}, max {:?}",
        totals.len(),
        totals[totals.len() / 2],
        totals[totals.len() - 1]
    );
    assert_eq!(proxy.count("process/start"), RUNS + true_runs);
    assert_eq!(reads, 0, "a complete in-order stream needs no process/read");
    // The client's own count agrees with the wire.
    let stats = client.stats();
    assert_eq!(stats.requests("process/read"), 0);
    assert_eq!(
        stats.requests("process/start") as usize,
        proxy.count("process/start")
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_against_rexec_makes_no_reads() {
    let server = TestServer::start().await;
    one_shots_without_reads("rexec", &server.url).await;
}

rexec_testkit::codex_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_shot_against_codex_makes_no_reads() {
        let bin = require_codex_bin("one_shot_against_codex_makes_no_reads");
        let server = CodexServer::start(&bin).await;
        one_shots_without_reads("codex 0.169.0", &server.url).await;
    }
}
