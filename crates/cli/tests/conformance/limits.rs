//! Resource limits a hostile or slow client must not break: frames over
//! `--max-frame-bytes`, messages over the 262 144 JSON-value budget, and a client that
//! stops reading while its process writes 100 MB (server memory stays bounded; nothing is
//! lost once it reads again), and descriptors held by processes that already closed.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

use crate::client::{Client, Incoming, RPC_TIMEOUT};
use crate::harness::{Ctx, sh};
use crate::server::ServerOptions;

/// Waits for an error answering request `id` (or the id -1 of an unparsable frame), or
/// for the connection to close. Returns the error object, `None` if it closed.
async fn refusal(client: &mut Client, id: i64) -> Result<Option<Value>> {
    let deadline = Instant::now() + RPC_TIMEOUT;
    loop {
        match client.recv_until(deadline).await? {
            Some(Incoming::Json(frame)) => {
                if frame["id"] == id || frame["id"] == -1 {
                    ensure!(
                        frame.get("error").is_some(),
                        "oversized request succeeded: {frame}"
                    );
                    return Ok(Some(frame));
                }
                client.dispatch(frame);
            }
            Some(Incoming::Closed(_)) => return Ok(None),
            None => bail!("the oversized frame was neither answered nor refused"),
        }
    }
}

async fn oversized_frame_refused(ctx: Ctx) -> Result<()> {
    let options = ServerOptions {
        max_frame_bytes: Some(1_048_576),
        ..Default::default()
    };
    let server = ctx.server_with(&options).await?;
    let mut client = Client::connect(&server).await?;
    client.initialize().await?;
    let id = client.next_request_id();
    let huge = "x".repeat(2 * 1_048_576);
    let mut params = sh("huge", "true");
    params["env"]["HUGE"] = json!(huge);
    let sent = client
        .send_json(&json!({"id": id, "method": "process/start", "params": params}))
        .await;
    // A server may reset the connection while the frame is still being sent.
    if sent.is_ok() && refusal(&mut client, id).await?.is_some() {
        client
            .ping()
            .await
            .context("connection after a refused oversized frame")?;
    }
    let mut other = Client::connect(&server).await?;
    other.initialize().await?;
    other
        .ping()
        .await
        .context("a second connection after the oversized frame")
}
conformance_test!(rexec_only("--max-frame-bytes") oversized_frame_refused);

async fn json_value_budget(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let id = client.next_request_id();
    let zeros = vec![0u8; 300_000];
    let frame =
        json!({"id": id, "method": "process/read", "params": {"processId": "x", "pad": zeros}});
    client.send_json(&frame).await?;
    let error = refusal(&mut client, id)
        .await?
        .context("the server closed the connection instead of answering with an error")?;
    // codex 0.169.0: id -1, -32600 "... exceeds the limit of 262144 JSON values ...".
    ensure!(error["error"]["code"] == -32600, "expected -32600: {error}");
    client
        .ping()
        .await
        .context("connection after the over-budget message")
}
conformance_test!(json_value_budget);

fn vm_rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("no VmRSS line")?;
    Ok(kib * 1024)
}

/// Bytes a base64 text decodes to, without decoding it.
fn decoded_len(text: &str) -> u64 {
    let padding = text.bytes().rev().take_while(|b| *b == b'=').count();
    (text.len() / 4 * 3 - padding) as u64
}

async fn slow_reader_bounded_memory(ctx: Ctx) -> Result<()> {
    const TOTAL: u64 = 100_000_000;
    const HEADROOM: u64 = 64 * 1024 * 1024;
    let (server, mut client) = ctx.server_and_client().await?;
    let pid = server.pid()?;
    let baseline = vm_rss_bytes(pid)?;
    client
        .start(sh("flood", &format!("head -c {TOTAL} /dev/zero")))
        .await?;

    // Stop reading for 2 s while the process writes as fast as it can.
    let mut peak = baseline;
    let pause_end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < pause_end {
        peak = peak.max(vm_rss_bytes(pid)?);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        peak < baseline + HEADROOM,
        "server RSS grew from {} MiB to {} MiB while the client was not reading",
        baseline >> 20,
        peak >> 20
    );

    // Resume: every byte arrives, in seq order, then exited and closed.
    let (mut bytes, mut last_seq, mut exit_code) = (0u64, 0u64, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = client
            .next_process_notification("flood", deadline)
            .await?
            .with_context(|| format!("stalled after {bytes} bytes"))?;
        let seq = n["params"]["seq"]
            .as_u64()
            .with_context(|| format!("no seq: {n}"))?;
        ensure!(seq > last_seq, "seq {seq} after {last_seq}");
        last_seq = seq;
        match n["method"].as_str() {
            Some("process/output") => {
                bytes += decoded_len(n["params"]["chunk"].as_str().context("chunk")?);
            }
            Some("process/exited") => exit_code = n["params"]["exitCode"].as_i64(),
            Some("process/closed") => break,
            _ => bail!("unexpected notification {n}"),
        }
    }
    ensure!(bytes == TOTAL, "received {bytes} of {TOTAL} bytes");
    ensure!(exit_code == Some(0), "exit code {exit_code:?}");
    Ok(())
}
conformance_test!(rexec_only("notifications in seq order; codex 0.169.0 reorders them under load") slow_reader_bounded_memory);

/// Descriptors of the server process, from /proc.
fn open_descriptors(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .count())
}

/// A closed process holds no pipe or pidfd while it stays readable for the retention
/// time: every descriptor the server keeps is copied into each child it spawns and closed
/// again at its exec, so descriptors held for retention make every later spawn slower.
async fn closed_processes_hold_no_descriptors(ctx: Ctx) -> Result<()> {
    let (server, mut client) = ctx.server_and_client().await?;
    let pid = server.pid()?;
    let before = open_descriptors(pid)?;
    const PROCESSES: usize = 40;
    for n in 0..PROCESSES {
        let id = format!("fd{n}");
        client.start(sh(&id, "echo out; echo err >&2")).await?;
        client
            .events_until_closed(&id, crate::harness::EVENT_TIMEOUT)
            .await?;
    }
    // Still readable (retention), but their pipes are gone.
    let read = client
        .read("fd0", Some(0), None, 0)
        .await
        .context("a closed process stays readable")?;
    ensure!(read["closed"] == true, "fd0 read {read}");
    let after = open_descriptors(pid)?;
    ensure!(
        after < before + PROCESSES / 2,
        "{PROCESSES} closed processes left the server with {after} descriptors (was {before})"
    );
    Ok(())
}
conformance_test!(rexec_only("descriptors released when a process closes") closed_processes_hold_no_descriptors);
