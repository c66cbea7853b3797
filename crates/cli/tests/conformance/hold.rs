//! rexec's `process/start.holdOutput` (codex 0.169.0 does not have it): output the client
//! has not acknowledged is never evicted; once it fills its 8 MiB retention the server stops
//! reading the child, which blocks on its pipe. Only `process/ack {processId, seq}`
//! acknowledges (a `process/read` does not); exit and close follow the output however long
//! it is held, across a detach too; a session's expiry ends the hold, so its killed
//! processes still close. Without `holdOutput` a process is evicted as before.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

use crate::client::{Client, Incoming};
use crate::harness::{Ctx, EVENT_TIMEOUT, b64, check_error, poll_until, sh};
use crate::server::ServerOptions;

/// The server's retention cap, a held process's, and the most it reads from a pipe at once.
const RETAINED_BYTES: usize = 1024 * 1024;
const HELD_BYTES: usize = 8 * 1024 * 1024;
const READ_CHUNK: usize = 64 * 1024;
/// Numbers the child prints with `seq`: 18 088 896 bytes, over twice the held cap.
const LINES: u32 = 2_400_000;
/// How long a held process must stay silent to count as stalled. Only a server that does
/// not hold can fail this (it keeps sending); a correct one sends nothing, however slow.
const QUIET: Duration = Duration::from_millis(500);
/// A whole scenario's output moves in a few seconds; this is the backstop.
const FLOOD_TIMEOUT: Duration = Duration::from_secs(40);

fn expected_output() -> Vec<u8> {
    let mut bytes = Vec::new();
    for n in 1..=LINES {
        bytes.extend_from_slice(format!("{n}\n").as_bytes());
    }
    bytes
}

/// `seq` is the process itself (`exec`), so all of its output precedes its exit. Run as a
/// child of `sh`, a `seq` killed while blocked on the held pipe could still write as it
/// dies, after `sh`'s exit: a descendant's output, which may follow the exit.
fn held_start(process_id: &str) -> Value {
    let mut params = sh(process_id, &format!("exec seq 1 {LINES}"));
    params["holdOutput"] = json!(true);
    params
}

/// One process's pushed events, in arrival order.
#[derive(Default)]
struct Pushed {
    /// (method, seq) of every event.
    order: Vec<(String, u64)>,
    output: Vec<u8>,
    exit_code: Option<i64>,
    closed: bool,
}

impl Pushed {
    fn last_seq(&self) -> u64 {
        self.order.last().map_or(0, |(_, seq)| *seq)
    }

    fn take(&mut self, event: &Value) -> Result<()> {
        let method = event["method"].as_str().unwrap_or_default().to_string();
        let params = &event["params"];
        let seq = params["seq"]
            .as_u64()
            .with_context(|| format!("event without seq: {event}"))?;
        match method.as_str() {
            "process/output" => self.output.extend(b64(&params["chunk"])?),
            "process/exited" => self.exit_code = params["exitCode"].as_i64(),
            "process/closed" => self.closed = true,
            other => bail!("unexpected notification {other}: {event}"),
        }
        self.order.push((method, seq));
        Ok(())
    }

    /// Collects events until `done` holds; fails at the deadline.
    async fn until(
        &mut self,
        client: &mut Client,
        id: &str,
        what: &str,
        mut done: impl FnMut(&Pushed) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + FLOOD_TIMEOUT;
        while !done(self) {
            let Some(event) = client.next_process_notification(id, deadline).await? else {
                bail!(
                    "{id}: {what} not within {FLOOD_TIMEOUT:?}; {} bytes so far, exit {:?}",
                    self.output.len(),
                    self.exit_code
                );
            };
            self.take(&event)?;
        }
        Ok(())
    }

    /// Collects until the output passes `bytes`, then requires silence for [`QUIET`]:
    /// the server read the last chunk it had room for and stopped.
    async fn stalls_after(&mut self, client: &mut Client, id: &str, bytes: usize) -> Result<()> {
        self.until(client, id, &format!("{bytes} bytes of output"), |p| {
            p.output.len() > bytes || p.closed
        })
        .await?;
        ensure!(
            !self.closed && self.exit_code.is_none(),
            "{id} finished ({} bytes): its output was not held",
            self.output.len()
        );
        if let Some(event) = client
            .next_process_notification(id, Instant::now() + QUIET)
            .await?
        {
            bail!(
                "{id} kept sending after {} unacknowledged bytes: {}",
                self.output.len(),
                short(&event)
            );
        }
        Ok(())
    }

    /// Seqs 1..=n in arrival order, one exit, the close last, and exactly `seq`'s bytes.
    fn check_complete(&self, exit_code: i64) -> Result<()> {
        let seqs: Vec<u64> = self.order.iter().map(|(_, seq)| *seq).collect();
        ensure!(
            seqs == (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "seqs not 1..=n in order: {seqs:?}"
        );
        let methods: Vec<&str> = self.order.iter().map(|(m, _)| m.as_str()).collect();
        ensure!(
            methods.ends_with(&["process/exited", "process/closed"])
                && methods.iter().filter(|m| **m != "process/output").count() == 2,
            "exit and close are not the last two events, after all output: {:?}",
            &methods[methods.len().saturating_sub(3)..]
        );
        ensure!(
            self.exit_code == Some(exit_code),
            "exit code {:?}",
            self.exit_code
        );
        Ok(())
    }
}

fn short(event: &Value) -> String {
    let mut shown = event.clone();
    if let Some(chunk) = shown["params"].get_mut("chunk") {
        *chunk = json!(format!(
            "{} base64 chars",
            chunk.as_str().map_or(0, str::len)
        ));
    }
    shown.to_string()
}

/// What `process/read {afterSeq: 0}` says (a read from 0 acknowledges nothing).
struct Retention {
    next_seq: u64,
    first_seq: Option<u64>,
    bytes: usize,
    evicted_chunks: u64,
    evicted_bytes: u64,
    exited: bool,
}

async fn retention(client: &mut Client, id: &str) -> Result<Retention> {
    let read = client.read(id, Some(0), None, 0).await?;
    let chunks = read["chunks"].as_array().context("read without chunks")?;
    let mut bytes = 0;
    for chunk in chunks {
        bytes += b64(&chunk["chunk"])?.len();
    }
    Ok(Retention {
        next_seq: read["nextSeq"].as_u64().context("nextSeq")?,
        first_seq: chunks.first().and_then(|c| c["seq"].as_u64()),
        bytes,
        evicted_chunks: read["evictedChunks"].as_u64().context("evictedChunks")?,
        evicted_bytes: read["evictedBytes"].as_u64().context("evictedBytes")?,
        exited: read["exited"].as_bool().context("exited")?,
    })
}

/// The first stall: the whole retention is unacknowledged output, nothing was evicted, and
/// the child is blocked, not finished.
async fn first_stall(client: &mut Client, id: &str, pushed: &mut Pushed) -> Result<()> {
    pushed
        .stalls_after(client, id, HELD_BYTES - READ_CHUNK)
        .await?;
    ensure!(
        pushed.output.len() <= HELD_BYTES,
        "{} bytes pushed unacknowledged, past the {HELD_BYTES} cap",
        pushed.output.len()
    );
    let held = retention(client, id).await?;
    ensure!(
        !held.exited,
        "the child exited although its output was held"
    );
    ensure!(
        (held.evicted_chunks, held.evicted_bytes) == (0, 0),
        "held output was evicted: {} chunks, {} bytes",
        held.evicted_chunks,
        held.evicted_bytes
    );
    ensure!(
        held.bytes == pushed.output.len() && held.next_seq == pushed.last_seq() + 1,
        "retention ({} bytes, next seq {}) is not what was pushed ({} bytes, last seq {})",
        held.bytes,
        held.next_seq,
        pushed.output.len(),
        pushed.last_seq()
    );
    Ok(())
}

async fn ack(client: &mut Client, id: &str, seq: Value) -> Result<()> {
    client
        .notify("process/ack", json!({"processId": id, "seq": seq}))
        .await
}

/// Acknowledges every event as it arrives, until the close.
async fn ack_through_close(client: &mut Client, id: &str, pushed: &mut Pushed) -> Result<()> {
    let deadline = Instant::now() + FLOOD_TIMEOUT;
    ack(client, id, json!(pushed.last_seq())).await?;
    while !pushed.closed {
        let Some(event) = client.next_process_notification(id, deadline).await? else {
            bail!("{id} not closed within {FLOOD_TIMEOUT:?} while acknowledged");
        };
        pushed.take(&event)?;
        ack(client, id, json!(pushed.last_seq())).await?;
    }
    Ok(())
}

async fn held_output_blocks_the_child_until_acknowledged(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client.start(held_start("held")).await?;
    let mut pushed = Pushed::default();
    first_stall(&mut client, "held", &mut pushed).await?;
    let first = pushed.output.len();

    // A read from the last seq releases nothing: the client may be ahead of a subscriber.
    client
        .read("held", Some(pushed.last_seq()), None, 0)
        .await?;
    if let Some(event) = client
        .next_process_notification("held", Instant::now() + QUIET)
        .await?
    {
        bail!("a process/read released held output: {}", short(&event));
    }
    // An acknowledgement of the last seq does: another retention's worth moves, then the
    // output is held again (only acknowledged chunks may have been evicted).
    ack(&mut client, "held", json!(pushed.last_seq())).await?;
    pushed
        .stalls_after(&mut client, "held", first + HELD_BYTES - READ_CHUNK)
        .await?;
    let held = retention(&mut client, "held").await?;
    ensure!(
        !held.exited && held.evicted_bytes <= first as u64,
        "after one acknowledgement: exited {}, {} bytes evicted of {first} acknowledged",
        held.exited,
        held.evicted_bytes
    );

    ack_through_close(&mut client, "held", &mut pushed).await?;
    pushed.check_complete(0)?;
    ensure!(
        pushed.output == expected_output(),
        "output differs from `seq 1 {LINES}`: {} bytes, expected {}",
        pushed.output.len(),
        expected_output().len()
    );
    // Evicted chunks are all acknowledged ones: older than every retained chunk, and
    // together with the retained ones exactly what the child wrote.
    let end = retention(&mut client, "held").await?;
    ensure!(
        end.evicted_bytes as usize + end.bytes == pushed.output.len()
            && end.first_seq.is_some_and(|seq| seq > end.evicted_chunks),
        "evicted {} chunks / {} bytes + retained {} bytes from seq {:?}, {} written",
        end.evicted_chunks,
        end.evicted_bytes,
        end.bytes,
        end.first_seq,
        pushed.output.len()
    );
    Ok(())
}
conformance_test!(rexec_only("process/start.holdOutput") held_output_blocks_the_child_until_acknowledged => rexec_held_output_blocks_the_child_until_acknowledged, codex_held_output_blocks_the_child_until_acknowledged);

async fn output_not_held_is_evicted_as_before(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client.start(sh("free", &format!("seq 1 {LINES}"))).await?;
    let mut pushed = Pushed::default();
    pushed
        .until(&mut client, "free", "the first output", |p| {
            !p.output.is_empty()
        })
        .await?;
    // An acknowledgement for a process that does not hold is harmless.
    ack(&mut client, "free", json!(pushed.last_seq())).await?;
    pushed
        .until(&mut client, "free", "the close", |p| p.closed)
        .await?;
    pushed.check_complete(0)?;
    ensure!(pushed.output == expected_output(), "pushed output differs");
    let end = retention(&mut client, "free").await?;
    ensure!(
        end.evicted_chunks > 0 && end.evicted_bytes as usize + end.bytes == pushed.output.len(),
        "expected eviction without holdOutput: {} chunks / {} bytes evicted, {} retained",
        end.evicted_chunks,
        end.evicted_bytes,
        end.bytes
    );
    ensure!(end.bytes <= RETAINED_BYTES, "{} bytes retained", end.bytes);
    Ok(())
}
conformance_test!(rexec_only("process/start.holdOutput, process/read.evictionCounters") output_not_held_is_evicted_as_before => rexec_output_not_held_is_evicted_as_before, codex_output_not_held_is_evicted_as_before);

async fn malformed_acks_are_ignored_and_a_late_seq_is_clamped(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client.start(held_start("held")).await?;
    let mut pushed = Pushed::default();
    first_stall(&mut client, "held", &mut pushed).await?;
    let before = retention(&mut client, "held").await?;

    let garbage = [
        json!({"method": "process/ack"}),
        json!({"method": "process/ack", "params": "everything"}),
        json!({"method": "process/ack", "params": [1, 2]}),
        json!({"method": "process/ack", "params": {"processId": 5, "seq": 1_000_000}}),
        json!({"method": "process/ack", "params": {"processId": "held"}}),
        json!({"method": "process/ack", "params": {"processId": "held", "seq": -1}}),
        json!({"method": "process/ack", "params": {"processId": "held", "seq": "all"}}),
        json!({"method": "process/ack", "params": {"processId": "held", "seq": 1.5e9}}),
        json!({"method": "process/ack", "params": {"processId": "nobody", "seq": 1_000_000}}),
    ];
    client.send_burst(&garbage).await?;
    // Nothing answers a notification: the next frame is the probe's response.
    let probe = client
        .send_request("process/terminate", json!({"processId": "no-such-process"}))
        .await?;
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let frame = match client.recv_until(deadline).await? {
        Some(Incoming::Json(frame)) => frame,
        Some(Incoming::Closed(why)) => {
            bail!("a malformed process/ack closed the connection: {why}")
        }
        None => bail!("no answer to the probe within {EVENT_TIMEOUT:?}"),
    };
    ensure!(
        frame["id"] == probe && frame["result"] == json!({"running": false}),
        "a malformed process/ack was answered, or output moved: {}",
        short(&frame)
    );
    if let Some(event) = client
        .next_process_notification("held", Instant::now() + QUIET)
        .await?
    {
        bail!("a malformed process/ack released output: {}", short(&event));
    }
    let after = retention(&mut client, "held").await?;
    ensure!(
        (
            after.next_seq,
            after.bytes,
            after.evicted_bytes,
            after.exited
        ) == (before.next_seq, before.bytes, 0, false),
        "a malformed process/ack changed the process"
    );

    // A seq past everything sent acknowledges what was sent, and no more: output moves,
    // then is held again.
    let first = pushed.output.len();
    ack(&mut client, "held", json!(u64::MAX)).await?;
    pushed
        .stalls_after(&mut client, "held", first + HELD_BYTES - READ_CHUNK)
        .await?;

    // Killed while output is held, the process still reports all of it, then the exit
    // and the close, once acknowledged.
    ensure!(client.terminate("held").await?, "terminate: not running");
    ack_through_close(&mut client, "held", &mut pushed).await?;
    pushed.check_complete(128 + 9)?;
    let expected = expected_output();
    ensure!(
        expected.starts_with(&pushed.output),
        "output of the killed process is not a prefix of `seq`'s ({} bytes)",
        pushed.output.len()
    );
    Ok(())
}
conformance_test!(rexec_only("process/ack") malformed_acks_are_ignored_and_a_late_seq_is_clamped => rexec_malformed_acks_are_ignored_and_a_late_seq_is_clamped, codex_malformed_acks_are_ignored_and_a_late_seq_is_clamped);

async fn held_output_stays_held_across_a_detach(ctx: Ctx) -> Result<()> {
    let server = ctx
        .server_with(&ServerOptions {
            session_ttl_ms: Some(20_000),
            ..ServerOptions::default()
        })
        .await?;
    let mut first = Client::connect(&server).await?;
    let init = first.initialize().await?;
    let session = init["sessionId"].as_str().context("sessionId")?.to_owned();
    first.start(held_start("held")).await?;
    let mut pushed = Pushed::default();
    first_stall(&mut first, "held", &mut pushed).await?;
    first.close().await;

    let mut second = Client::connect(&server).await?;
    second
        .initialize_with(json!({"clientName": "conformance", "resumeSessionId": session}))
        .await?
        .map_err(|e| anyhow::anyhow!("resume failed: {e}"))?;
    if let Some(event) = second
        .next_process_notification("held", Instant::now() + QUIET)
        .await?
    {
        bail!(
            "output moved while detached and unacknowledged: {}",
            short(&event)
        );
    }
    let held = retention(&mut second, "held").await?;
    ensure!(
        !held.exited && held.evicted_bytes == 0 && held.next_seq == pushed.last_seq() + 1,
        "the detach released held output: next seq {}, {} bytes evicted, exited {}",
        held.next_seq,
        held.evicted_bytes,
        held.exited
    );

    // The repair path: reads from the last seq, each followed by an acknowledgement.
    let mut after = pushed.last_seq();
    let mut output = pushed.output;
    let deadline = Instant::now() + FLOOD_TIMEOUT;
    loop {
        ensure!(
            Instant::now() < deadline,
            "not closed within {FLOOD_TIMEOUT:?}"
        );
        let read = second.read("held", Some(after), None, 1_000).await?;
        let chunks = read["chunks"].as_array().context("chunks")?;
        let acknowledged = output.len() as u64;
        for chunk in chunks {
            let seq = chunk["seq"].as_u64().context("seq")?;
            ensure!(seq == after + 1, "read skipped from {after} to {seq}");
            output.extend(b64(&chunk["chunk"])?);
            after = seq;
        }
        ack(&mut second, "held", json!(after)).await?;
        let evicted = read["evictedBytes"].as_u64().context("evictedBytes")?;
        ensure!(
            evicted <= acknowledged,
            "{evicted} bytes evicted, only {acknowledged} acknowledged"
        );
        if read["closed"] == true {
            ensure!(read["exitCode"] == 0, "exit code {}", read["exitCode"]);
            break;
        }
        if chunks.is_empty() {
            // Only the exit is left between the output and the close.
            after = read["nextSeq"].as_u64().context("nextSeq")? - 1;
        }
    }
    ensure!(
        output == expected_output(),
        "output read after the resume differs ({} bytes)",
        output.len()
    );
    Ok(())
}
conformance_test!(rexec_only("process/start.holdOutput, session resume") held_output_stays_held_across_a_detach => rexec_held_output_stays_held_across_a_detach, codex_held_output_stays_held_across_a_detach);

fn open_descriptors(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .count())
}

/// Expiry kills the processes of a detached session and ends their hold: each pump drains
/// what the killed child left in its pipes and closes, giving its descriptors back,
/// instead of waiting forever for an acknowledgement nobody will send.
async fn expiry_ends_the_hold(ctx: Ctx) -> Result<()> {
    const PROCESSES: usize = 8;
    let server = ctx
        .server_with(&ServerOptions {
            session_ttl_ms: Some(300),
            ..ServerOptions::default()
        })
        .await?;
    let pid = server.pid()?;
    let mut client = Client::connect(&server).await?;
    let init = client.initialize().await?;
    let session = init["sessionId"].as_str().context("sessionId")?.to_owned();
    let before = open_descriptors(pid)?;
    for n in 0..PROCESSES {
        let id = format!("held{n}");
        client.start(held_start(&id)).await?;
        let mut pushed = Pushed::default();
        pushed
            .until(&mut client, &id, "a full retention", |p| {
                p.output.len() > HELD_BYTES - READ_CHUNK
            })
            .await?;
    }
    let holding = open_descriptors(pid)?;
    ensure!(
        holding >= before + 2 * PROCESSES,
        "{PROCESSES} held processes hold {holding} descriptors (was {before}): not a pipe each?"
    );
    client.close().await;

    poll_until(
        "the expired session's held processes give their descriptors back",
        EVENT_TIMEOUT,
        || open_descriptors(pid).is_ok_and(|now| now <= before),
    )
    .await?;
    let mut late = Client::connect(&server).await?;
    let error = late
        .expect_error(
            "initialize",
            json!({"clientName": "late", "resumeSessionId": session}),
        )
        .await?;
    check_error(&error, -32600, &format!("unknown session id {session}"))?;
    Ok(())
}
conformance_test!(rexec_only("process/start.holdOutput, --session-ttl-ms") expiry_ends_the_hold => rexec_expiry_ends_the_hold, codex_expiry_ends_the_hold);
