//! `process/read`: long-poll wake-ups (output, exit, close) and timeout, the `maxBytes`
//! first-chunk rule and `nextSeq`, waiting for close after an observed exit, late output
//! after exit, unknown process, and retention eviction of old output (1 MiB).

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

use crate::harness::{Ctx, EVENT_TIMEOUT, b64, check_error, sh};

/// Promptness bound for a woken long-poll (generous: shared 2-core machine).
const WAKE_BOUND: Duration = Duration::from_millis(2500);

fn chunks(read: &Value) -> Result<&Vec<Value>> {
    read["chunks"]
        .as_array()
        .with_context(|| format!("read without chunks: {read}"))
}

fn chunk_len(chunk: &Value) -> Result<u64> {
    Ok(b64(&chunk["chunk"])?.len() as u64)
}

async fn read_wakes_on_output(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client
        .start(sh("w", "sleep 0.4; echo woke; exec sleep 30"))
        .await?;
    let started = Instant::now();
    let read = client.read("w", Some(0), None, 5000).await?;
    let elapsed = started.elapsed();
    let got = chunks(&read)?;
    ensure!(!got.is_empty(), "long-poll returned without output: {read}");
    ensure!(b64(&got[0]["chunk"])? == b"woke\n", "read {read}");
    ensure!(
        elapsed < WAKE_BOUND,
        "long-poll returned after {elapsed:?}, not when output appeared"
    );
    ensure!(
        read["exited"] == false && read["closed"] == false,
        "read {read}"
    );
    client.terminate("w").await?;
    Ok(())
}
conformance_test!(read_wakes_on_output);

async fn read_wakes_on_exit(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client.start(sh("x", "sleep 0.4; exit 4")).await?;
    let started = Instant::now();
    let read = client.read("x", Some(0), None, 5000).await?;
    let elapsed = started.elapsed();
    ensure!(
        read["exited"] == true && read["exitCode"] == 4,
        "read {read}"
    );
    ensure!(chunks(&read)?.is_empty(), "no output expected: {read}");
    ensure!(
        elapsed < WAKE_BOUND,
        "long-poll returned after {elapsed:?}, not at exit"
    );
    Ok(())
}
conformance_test!(read_wakes_on_exit);

async fn read_times_out_empty(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client.start(sh("idle", "exec sleep 30")).await?;
    let started = Instant::now();
    let read = client.read("idle", Some(0), None, 300).await?;
    let elapsed = started.elapsed();
    ensure!(
        chunks(&read)?.is_empty(),
        "idle process returned output: {read}"
    );
    ensure!(
        read["exited"] == false && read["closed"] == false,
        "read {read}"
    );
    ensure!(
        read["nextSeq"] == 1,
        "nothing happened yet, nextSeq should be 1: {read}"
    );
    ensure!(
        elapsed >= Duration::from_millis(250),
        "returned after {elapsed:?}, before waitMs"
    );
    ensure!(
        elapsed < WAKE_BOUND,
        "returned after {elapsed:?}, long after waitMs 300"
    );
    client.terminate("idle").await?;
    Ok(())
}
conformance_test!(read_times_out_empty);

async fn read_waits_for_close_after_exit(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    // The background sleep keeps stdout open for a while after the shell exits.
    client.start(sh("bg", "sleep 0.8 & exit 0")).await?;
    let exited = client.next_event("bg", EVENT_TIMEOUT).await?;
    ensure!(exited.is("exited"), "first event {exited:?}");
    let first = client.read("bg", Some(0), None, 0).await?;
    ensure!(
        first["exited"] == true && first["closed"] == false,
        "read after exit {first}"
    );
    let next_seq = first["nextSeq"].as_u64().context("nextSeq")?;
    // The caller has seen the exit (afterSeq = nextSeq - 1): the read waits for close.
    let started = Instant::now();
    let second = client.read("bg", Some(next_seq - 1), None, 5000).await?;
    ensure!(
        second["closed"] == true,
        "read after the observed exit returned after {:?} without close: {second}",
        started.elapsed()
    );
    ensure!(
        started.elapsed() < Duration::from_secs(4),
        "close wake-up was late"
    );
    Ok(())
}
conformance_test!(read_waits_for_close_after_exit);

async fn late_output_after_exit(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client
        .start(sh("late", "(sleep 0.3; echo late) & exit 0"))
        .await?;
    let events = client.events_until_closed("late", EVENT_TIMEOUT).await?;
    events.check_sequence(ctx.target)?;
    let methods: Vec<&str> = events.0.iter().map(|e| e.method.as_str()).collect();
    ensure!(
        methods == ["process/exited", "process/output", "process/closed"],
        "expected exited, late output, closed: {events:?}"
    );
    ensure!(
        events.output("stdout")? == b"late\n",
        "late output {events:?}"
    );
    ensure!(events.exit_code()? == 0, "exit {events:?}");
    // The retained view agrees: the late chunk has seq 2 and nextSeq is past closed.
    let read = client.read("late", Some(0), None, 0).await?;
    let got = chunks(&read)?;
    ensure!(
        got.len() == 1 && got[0]["seq"] == 2,
        "retained chunks {read}"
    );
    ensure!(
        read["nextSeq"] == 4 && read["closed"] == true,
        "read {read}"
    );
    Ok(())
}
conformance_test!(late_output_after_exit);

async fn max_bytes_and_next_seq(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    // Each line waits for one of ours, so each is a chunk of its own.
    let script = "echo one; read x; echo two-two; read x; echo three-three-three";
    let mut params = sh("mb", script);
    params["pipeStdin"] = Value::Bool(true);
    client.start(params).await?;
    for write_id in ["w1", "w2"] {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        let output = client.next_process_notification("mb", deadline).await?;
        ensure!(
            output
                .as_ref()
                .is_some_and(|n| n["method"] == "process/output"),
            "expected a line of output: {output:?}"
        );
        let status = client.write("mb", b"\n", write_id).await?;
        ensure!(status == "accepted", "write status {status}");
    }
    let events = client.events_until_closed("mb", EVENT_TIMEOUT).await?;
    let closed_seq = events
        .0
        .last()
        .and_then(|e| e.seq())
        .context("closed seq")?;
    let all = client.read("mb", Some(0), None, 0).await?;
    let all_chunks = chunks(&all)?.clone();
    ensure!(
        all_chunks.len() == 3,
        "expected three separate output chunks: {all}"
    );
    // maxBytes omitted: nextSeq is the process's next seq (past exited and closed).
    ensure!(
        all["nextSeq"] == closed_seq + 1,
        "nextSeq without maxBytes: {all}"
    );
    let (len0, len1) = (chunk_len(&all_chunks[0])?, chunk_len(&all_chunks[1])?);
    let seq = |i: usize| all_chunks[i]["seq"].as_u64().unwrap_or(0);

    // A first chunk larger than maxBytes is still returned whole; nextSeq follows it.
    let one = client.read("mb", Some(0), Some(1), 0).await?;
    ensure!(
        chunks(&one)?.len() == 1 && chunks(&one)?[0] == all_chunks[0],
        "maxBytes 1: {one}"
    );
    ensure!(one["nextSeq"] == seq(0) + 1, "nextSeq with maxBytes: {one}");
    // Exactly two chunks' worth: both; one byte less: only the first.
    let two = client.read("mb", Some(0), Some(len0 + len1), 0).await?;
    ensure!(
        chunks(&two)?.as_slice() == &all_chunks[..2],
        "maxBytes {}: {two}",
        len0 + len1
    );
    ensure!(two["nextSeq"] == seq(1) + 1, "nextSeq {two}");
    let short = client.read("mb", Some(0), Some(len0 + len1 - 1), 0).await?;
    ensure!(
        chunks(&short)?.as_slice() == &all_chunks[..1],
        "maxBytes {}: {short}",
        len0 + len1 - 1
    );
    // Continuing from nextSeq - 1 gives the rest.
    let rest = client.read("mb", Some(seq(1)), Some(1_000_000), 0).await?;
    ensure!(chunks(&rest)?.as_slice() == &all_chunks[2..], "rest {rest}");
    // maxBytes given but no chunk left: nextSeq is the process's next seq.
    let none = client.read("mb", Some(seq(2)), Some(10), 0).await?;
    ensure!(
        chunks(&none)?.is_empty() && none["nextSeq"] == closed_seq + 1,
        "past the end {none}"
    );
    Ok(())
}
conformance_test!(max_bytes_and_next_seq);

async fn read_unknown_process(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let error = client
        .expect_error(
            "process/read",
            serde_json::json!({"processId": "ghost", "afterSeq": 0}),
        )
        .await?;
    check_error(&error, -32600, "unknown process id ghost")?;
    client.ping().await
}
conformance_test!(read_unknown_process);

async fn retention_evicts_old_output(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client.start(sh("big", "head -c 3000000 /dev/zero")).await?;
    let events = client
        .events_until_closed("big", Duration::from_secs(20))
        .await?;
    let pushed = events.output("stdout")?.len();
    ensure!(
        pushed == 3_000_000,
        "pushed {pushed} bytes, expected all 3000000"
    );
    let last_output_seq = events
        .0
        .iter()
        .filter(|e| e.is("output"))
        .filter_map(|e| e.seq())
        .max()
        .context("no output")?;
    let read = client.read("big", Some(0), None, 0).await?;
    let got = chunks(&read)?;
    let first_seq = got
        .first()
        .and_then(|c| c["seq"].as_u64())
        .context("no retained chunk")?;
    ensure!(
        first_seq > 1,
        "the oldest output was not evicted (first seq {first_seq})"
    );
    // Retained seqs ascend without holes, except the one the exit event may take when
    // the exit is observed before the pipe is drained.
    let (mut retained, mut previous, mut holes) = (0, first_seq - 1, 0);
    for chunk in got {
        let seq = chunk["seq"].as_u64().context("chunk seq")?;
        ensure!(
            seq > previous,
            "retained seqs not ascending: {seq} after {previous}"
        );
        holes += seq - previous - 1;
        previous = seq;
        retained += chunk_len(chunk)?;
    }
    ensure!(
        holes <= 1,
        "retained output has {holes} missing seqs in the middle"
    );
    ensure!(
        got.last().and_then(|c| c["seq"].as_u64()) == Some(last_output_seq),
        "the newest output is not retained"
    );
    ensure!(
        (900_000..=1_048_576).contains(&retained),
        "retained {retained} bytes, expected about the last 1 MiB"
    );
    Ok(())
}
conformance_test!(retention_evicts_old_output);

/// A long-poll read in flight does not hold up other requests on the same connection.
async fn long_read_does_not_block_start(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client.start(sh("idle", "exec sleep 30")).await?;
    let read_id = client
        .send_request(
            "process/read",
            serde_json::json!({"processId": "idle", "afterSeq": 0, "waitMs": 20_000}),
        )
        .await?;
    let started = Instant::now();
    client.start(sh("quick", "echo quick")).await?;
    let events = client.events_until_closed("quick", EVENT_TIMEOUT).await?;
    ensure!(events.output_text("stdout")? == "quick\n", "{events:?}");
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "a start behind a 20 s read took {:?}",
        started.elapsed()
    );
    ensure!(client.terminate("idle").await?, "idle was not running");
    let read = client
        .wait_response(&serde_json::json!(read_id), Instant::now() + EVENT_TIMEOUT)
        .await?
        .map_err(|e| anyhow::anyhow!("long read failed: {e}"))?;
    ensure!(
        read["exited"] == true,
        "the read should wake on the exit: {read}"
    );
    Ok(())
}
conformance_test!(rexec_only("concurrent requests; codex 0.169.0 handles one request at a time by default") long_read_does_not_block_start);
