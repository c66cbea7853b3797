//! `process/output.binary`: with `ClientOptions::binary_output` the client asks for output
//! as raw bytes in binary WebSocket frames; a server that grants it (rexec over WebSocket)
//! sends them, one that does not (codex) keeps JSON. The caller sees the same result either
//! way, and the happy path still costs no `process/read`.

mod support;

use rexec_client::{ClientOptions, Completion, ProcessEvent, ProcessSpec, Timings};
use rexec_testkit::codex::{CodexServer, require_codex_bin};
use support::proxy::Proxy;
use support::{
    PERL_LINE, TestServer, assert_gap_free, collect, connect_with, digest, lines, options, perl,
    sh, within,
};

fn binary(on: bool) -> ClientOptions {
    ClientOptions {
        binary_output: on,
        ..options()
    }
}

/// Many chunks on both pipes, bytes that are not UTF-8, and an exit code.
const MIXED: &str = "seq 1 100000; seq 1 20000 >&2; printf '\\000\\377\\200 raw\\n'; exit 7";

fn expected_mixed_stdout() -> Vec<u8> {
    let mut out: Vec<u8> = (1..=100_000)
        .flat_map(|n| format!("{n}\n").into_bytes())
        .collect();
    out.extend_from_slice(b"\x00\xff\x80 raw\n");
    out
}

/// What one run through the proxy produced: the completion (timings zeroed), the
/// subscriber's events (when subscribed), and the proxy's counts.
struct Run {
    completion: Completion,
    events: Vec<ProcessEvent>,
    granted: bool,
    binary_frames: usize,
    output_notifications: usize,
    reads: usize,
}

/// A subscriber that falls more than the client's history (256 events / 1 MiB) behind
/// repairs with a read, so only small outputs are subscribed to.
async fn run_through_proxy(server_url: &str, on: bool, spec: ProcessSpec, subscribe: bool) -> Run {
    let proxy = Proxy::start(server_url).await;
    let client = connect_with(&proxy.url, binary(on)).await;
    let granted = client.binary_output();
    let process = client.start(spec).await.expect("start");
    let events = subscribe.then(|| tokio::spawn(collect(process.events())));
    let mut completion = within("wait", process.wait()).await.expect("completion");
    completion.timings = Timings::default();
    let events = match events {
        Some(task) => task.await.expect("collector"),
        None => Vec::new(),
    };
    let stats = proxy.stats();
    client.close().await;
    let asked = &proxy.requests("initialize")[0]["params"];
    assert_eq!(
        asked["rexec"]["binaryOutput"].as_bool(),
        on.then_some(true),
        "initialize params {asked}"
    );
    Run {
        completion,
        events,
        granted,
        binary_frames: stats.binary_frames,
        output_notifications: stats
            .notifications
            .get("process/output")
            .copied()
            .unwrap_or(0),
        reads: stats.requests.get("process/read").copied().unwrap_or(0),
    }
}

fn output_of(events: &[ProcessEvent], which: rexec_client::OutputStream) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            ProcessEvent::Output { stream, bytes, .. } if *stream == which => Some(bytes.as_ref()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect()
}

async fn same_result_both_ways(spec: ProcessSpec, subscribe: bool) -> (Run, Run) {
    let server = TestServer::start().await;
    let on = run_through_proxy(&server.url, true, spec.clone(), subscribe).await;
    let off = run_through_proxy(&server.url, false, spec, subscribe).await;
    assert!(on.granted, "rexec over WebSocket grants binary output");
    assert!(!off.granted);
    assert!(
        on.binary_frames > 0,
        "no binary frame with binary output on"
    );
    assert_eq!(
        on.binary_frames, on.output_notifications,
        "every output chunk travels binary"
    );
    assert_eq!(off.binary_frames, 0, "binary frames without asking");
    assert!(off.output_notifications > 0);
    assert_eq!(
        (on.reads, off.reads),
        (0, 0),
        "the happy path makes no reads"
    );
    assert_eq!(on.completion, off.completion);
    if subscribe {
        assert_gap_free(&on.events);
        assert_gap_free(&off.events);
    }
    (on, off)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_and_json_output_complete_identically() {
    let spec = sh(MIXED).output_budget(4 << 20);
    let (on, off) = same_result_both_ways(spec, true).await;
    let expected = expected_mixed_stdout();
    assert!(
        on.completion.stdout == expected,
        "stdout {} expected {}",
        digest(&on.completion.stdout),
        digest(&expected)
    );
    assert_eq!(on.completion.exit_code, 7);
    assert_eq!(on.completion.omitted_bytes, 0);
    let stderr: Vec<u8> = (1..=20_000)
        .flat_map(|n| format!("{n}\n").into_bytes())
        .collect();
    assert_eq!(on.completion.stderr, stderr);
    use rexec_client::OutputStream::{Stderr, Stdout};
    for stream in [Stdout, Stderr] {
        assert_eq!(
            output_of(&on.events, stream),
            output_of(&off.events, stream)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_completion_is_the_same_both_ways() {
    // Head + tail with an omitted middle: the accumulator sees the same chunks.
    let script = format!("{PERL_LINE} print line($_) for 1..50000");
    let spec = perl(&script).output_budget(64 << 10);
    let (on, _off) = same_result_both_ways(spec, false).await;
    let all = lines(1, 50_000);
    assert_eq!(
        on.completion.omitted_bytes as usize + on.completion.stdout.len(),
        all.len()
    );
    assert!(all.starts_with(&on.completion.stdout[..1000]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pty_output_travels_binary_too() {
    let spec = sh("seq 1 3000; exit 2").tty(true);
    let (on, _off) = same_result_both_ways(spec, true).await;
    assert_eq!(on.completion.exit_code, 2);
    let text = String::from_utf8_lossy(&on.completion.pty).into_owned();
    assert!(text.contains("2999\r\n3000"), "pty output {text:?}");
    assert!(on.completion.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_connection_negotiates_binary_output_again() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(&server.url).await;
    let client = connect_with(&proxy.url, binary(true)).await;
    assert!(client.binary_output());
    // The first half before the cut, the second only once told (after the resume); each
    // half in one write, so few events are in flight around the resume's repair read.
    let script = format!(
        "{PERL_LINE} print join('', map {{ line($_) }} 1..10000); <STDIN>; \
         print join('', map {{ line($_) }} 10001..20000)"
    );
    let process = client
        .start(perl(&script).pipe_stdin(true).output_budget(4 << 20))
        .await
        .expect("start");
    proxy
        .wait_for("some binary output", |s| s.binary_frames >= 1)
        .await;
    proxy.cut_all();
    proxy
        .wait_for("the resume", |s| s.results.get("initialize") == Some(&2))
        .await;
    let before = proxy.stats().binary_frames;
    within("write", process.write(b"go\n"))
        .await
        .expect("write");
    let done = within("wait", process.wait()).await.expect("completion");
    assert!(
        done.stdout == lines(1, 20_000),
        "delivered {}",
        digest(&done.stdout)
    );
    assert!(done.gaps.is_empty(), "gaps: {:?}", done.gaps);
    for initialize in proxy.requests("initialize") {
        assert_eq!(initialize["params"]["rexec"]["binaryOutput"], true);
    }
    assert!(client.binary_output(), "the resumed connection granted it");
    assert!(
        proxy.stats().binary_frames > before,
        "output after the resume travels binary"
    );
    assert_eq!(proxy.results("process/read"), 1, "one repair read");
}

rexec_testkit::codex_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn codex_ignores_the_request_and_the_client_uses_json() {
        let bin = require_codex_bin("codex_ignores_the_request_and_the_client_uses_json");
        let server = CodexServer::start(&bin).await;
        let proxy = Proxy::start(&server.url).await;
        let client = connect_with(&proxy.url, binary(true)).await;
        assert!(!client.binary_output(), "codex cannot grant binary output");
        for _ in 0..10 {
            let done = within("run", client.run(sh("seq 1 20000; echo err >&2; exit 3")))
                .await
                .expect("run");
            assert_eq!(done.exit_code, 3);
            let stdout: Vec<u8> = (1..=20_000)
                .flat_map(|n| format!("{n}\n").into_bytes())
                .collect();
            assert!(done.stdout == stdout, "stdout {}", digest(&done.stdout));
            assert_eq!(done.stderr, b"err\n");
        }
        let asked = &proxy.requests("initialize")[0]["params"];
        assert_eq!(asked["rexec"]["binaryOutput"], true, "{asked}");
        assert_eq!(proxy.stats().binary_frames, 0);
        assert_eq!(proxy.count("process/read"), 0, "no reads on the happy path");
        assert_eq!(client.stats().requests("process/read"), 0);
        client.close().await;
    }
}
