//! Repair rules, pinned by counting `process/read` requests on the wire through the
//! fault-injecting proxy: a complete in-order stream costs 0 reads; a gap, a receiver lag or
//! a legacy exit exactly 1 per incident; duplicates are dropped; what the server evicted
//! becomes a `Gap` with the exact byte count.

mod support;

use rexec_client::ProcessEvent;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use support::proxy::{Frame, Proxy, Verdict};
use support::{
    PERL_LINE, Peer, TestServer, assert_gap_free, collect, connect, lines, output_of, perl, sh,
    within,
};
use tokio::sync::watch;

const THREE_LINES: &str = "echo one; sleep 0.05; echo two; sleep 0.05; echo three; exit 3";

async fn setup(rule: impl FnMut(&Frame<'_>) -> Verdict + Send + 'static) -> (TestServer, Proxy) {
    let server = TestServer::start().await;
    let proxy = Proxy::start(&server.url).await;
    proxy.set_rule(rule);
    (server, proxy)
}

fn drop_output_seq_2(f: &Frame<'_>) -> Verdict {
    if f.is("process/output") && f.seq() == Some(2) {
        Verdict::Drop
    } else {
        Verdict::Pass
    }
}

fn strip_sandbox_denied(f: &Frame<'_>) -> Verdict {
    if f.is("process/exited") {
        let mut value = f.value.clone();
        if let Some(params) = value["params"].as_object_mut() {
            params.remove("sandboxDenied");
        }
        Verdict::Replace(value)
    } else {
        Verdict::Pass
    }
}

/// The initialize result without `process/orderedNotifications`: the client then treats
/// the server like codex, whose notifications may arrive out of order.
fn unordered_server(frame: &Frame<'_>) -> Option<Verdict> {
    if frame.answers != Some("initialize") {
        return None;
    }
    let mut value = frame.value.clone();
    if let Some(Value::Array(extensions)) = value["result"]["rexec"].get_mut("extensions") {
        extensions.retain(|e| e != "process/orderedNotifications");
    }
    Some(Verdict::Replace(value))
}

/// Run THREE_LINES and check what every repair path must produce.
async fn run_three_lines(proxy: &Proxy) -> Vec<ProcessEvent> {
    let client = connect(&proxy.url).await;
    let process = client.start(sh(THREE_LINES)).await.expect("start");
    let events = process.events();
    let done = within("wait", process.wait()).await.expect("completion");
    assert_eq!(done.stdout, b"one\ntwo\nthree\n");
    assert_eq!(done.exit_code, 3);
    assert!(!done.sandbox_denied);
    assert!(done.gaps.is_empty());
    let events = collect(events).await;
    assert_gap_free(&events);
    assert_eq!(output_of(&events), b"one\ntwo\nthree\n");
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_notification_costs_exactly_one_read() {
    let (_server, proxy) = setup(drop_output_seq_2).await;
    run_three_lines(&proxy).await;
    assert_eq!(proxy.count("process/read"), 1);
    let read = &proxy.requests("process/read")[0]["params"];
    assert_eq!(
        (read["afterSeq"].as_u64(), read["waitMs"].as_u64()),
        (Some(1), Some(0))
    );
}

rexec_testkit::codex_test! {
    /// codex exec-server does not promise ordered notifications: the gap is repaired after
    /// the reorder grace, still with one read, and its read (no eviction counters) fills it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_notification_costs_exactly_one_read_against_codex() {
        let test = "a_dropped_notification_costs_exactly_one_read_against_codex";
        let peer = Peer::codex(test).await;
        let proxy = Proxy::start(peer.url()).await;
        proxy.set_rule(drop_output_seq_2);
        run_three_lines(&proxy).await;
        assert_eq!(proxy.count("process/read"), 1);
    }
}

rexec_testkit::codex_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_legacy_exit_costs_exactly_one_read_against_codex() {
        let test = "a_legacy_exit_costs_exactly_one_read_against_codex";
        let peer = Peer::codex(test).await;
        let proxy = Proxy::start(peer.url()).await;
        proxy.set_rule(strip_sandbox_denied);
        run_three_lines(&proxy).await;
        assert_eq!(proxy.count("process/read"), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_notifications_are_dropped_without_reads() {
    let (_server, proxy) = setup(|f| {
        if f.method.is_some() {
            Verdict::Duplicate
        } else {
            Verdict::Pass
        }
    })
    .await;
    run_three_lines(&proxy).await;
    assert_eq!(proxy.count("process/read"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordering_on_an_unordered_server_heals_without_a_read() {
    let (_server, proxy) = setup(|f| {
        unordered_server(f).unwrap_or(if f.is("process/output") && f.seq() == Some(1) {
            Verdict::HoldForNext
        } else {
            Verdict::Pass
        })
    })
    .await;
    run_three_lines(&proxy).await;
    assert_eq!(proxy.count("process/read"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordering_on_an_ordered_server_is_a_gap_and_costs_one_read() {
    let (_server, proxy) = setup(|f| {
        if f.is("process/output") && f.seq() == Some(1) {
            Verdict::HoldForNext
        } else {
            Verdict::Pass
        }
    })
    .await;
    run_three_lines(&proxy).await;
    assert_eq!(proxy.count("process/read"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_close_is_waited_for_without_reads() {
    let (_server, proxy) = setup(|f| {
        if f.is("process/closed") {
            Verdict::Delay(Duration::from_millis(150))
        } else {
            Verdict::Pass
        }
    })
    .await;
    run_three_lines(&proxy).await;
    assert_eq!(proxy.count("process/read"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_exit_without_sandbox_denied_costs_exactly_one_read() {
    let (_server, proxy) = setup(strip_sandbox_denied).await;
    let events = run_three_lines(&proxy).await;
    assert!(events.iter().any(|e| matches!(
        e,
        ProcessEvent::Exited {
            code: 3,
            sandbox_denied: false,
            ..
        }
    )));
    assert_eq!(proxy.count("process/read"), 1);
}

/// 500 lines, ~2 ms apart: well over the 256 events a subscriber can replay.
fn many_events() -> rexec_client::ProcessSpec {
    perl(&format!(
        "{PERL_LINE} for my $i (1..500) {{ print line($i); select(undef, undef, undef, 0.002) }}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_or_late_subscriber_repairs_with_exactly_one_read_each() {
    let (_server, proxy) = setup(|_| Verdict::Pass).await;
    let client = connect(&proxy.url).await;
    let process = client.start(many_events()).await.expect("start");
    let lagging = process.events(); // not polled until the process is done
    let done = within("wait", process.wait()).await.expect("completion");
    assert_eq!(done.stdout, lines(1, 500));
    let notified = proxy.stats().notifications["process/output"];
    assert!(
        notified > 300,
        "precondition: only {notified} output events"
    );
    assert_eq!(
        proxy.count("process/read"),
        0,
        "the process's own log needs no repair"
    );

    let events = collect(lagging).await;
    assert_gap_free(&events);
    assert_eq!(output_of(&events), lines(1, 500));
    assert_eq!(proxy.count("process/read"), 1, "one read for the lag");

    let late = collect(process.events()).await;
    assert_gap_free(&late);
    assert_eq!(output_of(&late), lines(1, 500));
    assert_eq!(
        proxy.count("process/read"),
        2,
        "one read for the late subscriber"
    );
    for read in proxy.requests("process/read") {
        assert_eq!(read["params"]["afterSeq"].as_u64(), Some(0));
        assert_eq!(read["params"]["waitMs"].as_u64(), Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_reorder_buffer_sheds_and_repairs_without_loss() {
    // seq 2 is lost and the read's answer is held back until 300 more events have arrived:
    // the reorder buffer (256 events) sheds its oldest, and one more read covers them.
    let (gate, gate_rx) = watch::channel(false);
    let held_reads = AtomicU64::new(0);
    let overtaking = AtomicU64::new(0);
    let (_server, proxy) = setup(move |f| {
        if f.is("process/output") && f.seq() == Some(2) {
            return Verdict::Drop;
        }
        if f.answers == Some("process/read") && held_reads.fetch_add(1, Ordering::SeqCst) == 0 {
            return Verdict::Gate(gate_rx.clone());
        }
        let waiting = held_reads.load(Ordering::SeqCst) == 1;
        if waiting && (f.is("process/closed") || overtaking.fetch_add(1, Ordering::SeqCst) == 300) {
            gate.send_replace(true);
        }
        Verdict::Pass
    })
    .await;
    let client = connect(&proxy.url).await;
    let script = format!(
        "{PERL_LINE} for my $i (1..800) {{ print line($i); select(undef, undef, undef, 0.002) }}"
    );
    let done = within("run", client.run(perl(&script)))
        .await
        .expect("completion");
    assert_eq!(done.stdout, lines(1, 800));
    assert!(done.gaps.is_empty());
    let outputs = proxy.stats().notifications["process/output"];
    assert!(outputs > 400, "precondition: only {outputs} output events");
    assert_eq!(proxy.count("process/read"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_eviction_becomes_one_gap_with_the_exact_byte_count() {
    const A: u64 = 1_500; // delivered
    const B: u64 = 70_000; // ~3.1 MiB dropped by the proxy: the server retains only 1 MiB
    const C: u64 = 70_100; // delivered after the drop: reveals the gap
    let dropping = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicU64::new(0));
    let (drop_flag, drop_count) = (Arc::clone(&dropping), Arc::clone(&dropped));
    let (_server, proxy) = setup(move |f| {
        if f.is("process/output") && drop_flag.load(Ordering::SeqCst) {
            drop_count.fetch_add(f.chunk_len() as u64, Ordering::SeqCst);
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    })
    .await;
    let client = connect(&proxy.url).await;
    let script = format!(
        "{PERL_LINE} print line($_) for 1..{A}; <STDIN>; print line($_) for {}..{B}; \
         <STDIN>; print line($_) for {}..{C};",
        A + 1,
        B + 1
    );
    let spec = perl(&script).pipe_stdin(true).output_budget(16 << 20);
    let process = client.start(spec).await.expect("start");
    let (a, b, c) = (lines(1, A), lines(A + 1, B), lines(B + 1, C));

    let a_len = a.len() as u64;
    proxy.wait_for("part A", |s| s.output_bytes >= a_len).await;
    dropping.store(true, Ordering::SeqCst);
    process.write(b"go\n").await.expect("write");
    let ab_len = a_len + b.len() as u64;
    proxy.wait_for("part B", |s| s.output_bytes >= ab_len).await;
    dropping.store(false, Ordering::SeqCst);
    process.write(b"go\n").await.expect("write");

    let done = within("wait", process.wait()).await.expect("completion");
    assert_eq!(done.exit_code, 0);
    assert_eq!(dropped.load(Ordering::SeqCst), b.len() as u64);
    assert_eq!(done.gaps.len(), 1, "gaps: {:?}", done.gaps);
    let lost = done.gaps[0].bytes_lost as usize;
    println!(
        "gap {:?}, dropped {} bytes of part B",
        done.gaps[0],
        b.len()
    );
    assert!(
        lost >= b.len() - (1 << 20),
        "the server retains at most 1 MiB"
    );
    let expected = [&a[..], &b[lost..], &c[..]].concat();
    assert!(
        done.stdout == expected,
        "delivered {} but expected {}",
        support::digest(&done.stdout),
        support::digest(&expected)
    );
    assert_eq!(done.omitted_bytes, 0);
    assert_eq!(proxy.count("process/read"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_task_that_runs_late_loses_nothing_to_a_flood_behind_a_delayed_event() {
    // The first output is held back until the process has closed; the ~3 MiB behind it
    // reaches the client while the task that called `start` is not being polled. The
    // process counts as started when the start answer arrives, so the reorder buffer (1 MiB)
    // sheds and repairs instead of failing the process.
    const LAST: u64 = 70_000;
    let (gate, gate_rx) = watch::channel(false);
    let (_server, proxy) = setup(move |f| {
        if f.is("process/output") && f.seq() == Some(1) {
            return Verdict::Gate(gate_rx.clone());
        }
        if f.is("process/closed") {
            gate.send_replace(true);
        }
        Verdict::Pass
    })
    .await;
    let client = connect(&proxy.url).await;
    let script = format!("{PERL_LINE} print line($_) for 1..{LAST};");
    let start = client.start(perl(&script).output_budget(16 << 20));
    let mut start = std::pin::pin!(start);
    // One poll sends the request; then the task looks away until the flood is through.
    std::future::poll_fn(|cx| {
        assert!(
            start.as_mut().poll(cx).is_pending(),
            "started before any answer"
        );
        std::task::Poll::Ready(())
    })
    .await;
    let all = lines(1, LAST);
    let flood = all.len() as u64;
    proxy
        .wait_for("the flood and close", |s| {
            s.output_bytes >= flood && s.notifications.get("process/closed") == Some(&1)
        })
        .await;
    let process = within("start", start).await.expect("start");
    let done = within("wait", process.wait()).await.expect("completion");

    assert_eq!(done.exit_code, 0);
    let lost: u64 = done.gaps.iter().map(|g| g.bytes_lost).sum();
    assert_eq!(
        done.stdout.len() as u64 + lost,
        flood,
        "gaps: {:?}",
        done.gaps
    );
    // Whatever retention could not cover is a gap; the rest is the output, in order.
    let mut rest = all.iter();
    assert!(
        done.stdout.iter().all(|b| rest.any(|a| a == b)),
        "delivered {} is not the output minus its gaps {:?}",
        support::digest(&done.stdout),
        done.gaps
    );
    println!("gaps after the late start: {:?}", done.gaps);
    assert!(
        proxy.count("process/read") >= 1,
        "the gap was repaired by a read"
    );
}
