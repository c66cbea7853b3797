//! A busy client keeps being served, a hostile one is shed: requests past the in-flight
//! limit, a peer that stops reading, sockets that never finish their upgrade, more
//! connections than allowed, frames that would exceed the inbound memory budget, and
//! client-supplied values quoted back in error texts. rexec's own limits (see README,
//! "Limits"), so rexec only.

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::client::{Client, Incoming, RPC_TIMEOUT};
use crate::harness::{Ctx, encode, poll_until, sh};
use crate::server::{ServerOptions, lock};

/// Long polls parked at once per connection (`MAX_IN_FLIGHT_READS`).
const IN_FLIGHT: usize = 128;
/// Stdin bytes held by waiting writes per connection (`MAX_IN_FLIGHT_WRITE_BYTES`).
const WRITE_BYTES: usize = 16 * 1024 * 1024;
/// -32011: a per-connection limit on concurrent work is reached.
const BUSY: i64 = -32011;

/// Reads (and so answers pings) until `deadline`, keeping whatever arrives.
async fn listen_until(client: &mut Client, deadline: Instant) -> Result<()> {
    while let Some(frame) = client.recv_until(deadline).await? {
        match frame {
            Incoming::Json(value) => client.dispatch(value),
            Incoming::Closed(why) => bail!("the server closed a busy, healthy connection: {why}"),
        }
    }
    Ok(())
}

/// 128 parked long polls and one more: the extra read is answered -32011 at once, a
/// terminate of another process is answered promptly, the connection outlives several
/// ping intervals, and every parked poll is answered when its process ends.
async fn busy_connection_is_served_and_kept(ctx: Ctx) -> Result<()> {
    let ping = Duration::from_millis(300);
    let options = ServerOptions {
        ping_interval_ms: Some(ping.as_millis() as u64),
        ..Default::default()
    };
    let server = ctx.server_with(&options).await?;
    let mut client = Client::connect(&server).await?;
    client.initialize().await?;
    client
        .call("process/start", sh("parked", "sleep 60"))
        .await?;
    client
        .call("process/start", sh("victim", "sleep 60"))
        .await?;
    let read = json!({"processId": "parked", "afterSeq": 0, "waitMs": 60_000});
    let mut parked = Vec::new();
    for _ in 0..IN_FLIGHT {
        parked.push(client.send_request("process/read", read.clone()).await?);
    }
    let started = Instant::now();
    let extra = client
        .request_within("process/read", read.clone(), Duration::from_secs(5))
        .await
        .context("the request past the in-flight limit was not answered at once")?;
    match extra {
        Err(error) if error.code == BUSY => ensure!(
            error.message.contains("process/read") && error.message.contains("128"),
            "the busy error should say what is full and the limit: {error}"
        ),
        other => bail!("expected -32011 for the read past the limit, got {other:?}"),
    }
    let terminated = client
        .request_within(
            "process/terminate",
            json!({"processId": "victim"}),
            Duration::from_secs(3),
        )
        .await
        .context("terminate waited behind the parked long polls")?;
    ensure!(terminated.is_ok(), "terminate failed: {terminated:?}");
    ensure!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?} to answer behind parked polls",
        started.elapsed()
    );
    // Several ping intervals with every long poll still parked: the connection stays up.
    listen_until(&mut client, Instant::now() + ping * 6).await?;
    client
        .call("environment/info", json!({}))
        .await
        .context("a request after six ping intervals")?;
    client
        .call("process/terminate", json!({"processId": "parked"}))
        .await?;
    for id in parked {
        client
            .wait_response(&json!(id), Instant::now() + RPC_TIMEOUT)
            .await
            .with_context(|| format!("parked read {id} was never answered"))?
            .map_err(|error| anyhow::anyhow!("parked read {id} failed: {error}"))?;
    }
    Ok(())
}

conformance_test!(rexec_only("in-flight limit answered with -32011") busy_connection_is_served_and_kept);

/// Writes to a child that never reads its stdin wait, holding their bytes: once they hold
/// the byte bound, one more write is answered -32011 at once, a terminate is still served,
/// and every waiting write is answered when the process ends.
async fn stalled_writes_are_bounded_by_bytes(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    let mut client = Client::connect(&server).await?;
    client.initialize().await?;
    let mut params = sh("deaf", "sleep 60");
    params["pipeStdin"] = json!(true);
    client.call("process/start", params).await?;
    let block = encode(&vec![b'x'; 1024 * 1024]);
    let write = |n: usize| json!({"processId": "deaf", "chunk": block, "writeId": format!("w{n}")});
    let mut waiting = Vec::new();
    // One block fills the process's stdin queue (1 MiB); the rest wait, holding their bytes.
    for n in 0..=WRITE_BYTES / (1024 * 1024) {
        waiting.push(client.send_request("process/write", write(n)).await?);
    }
    let extra = client
        .request_within("process/write", write(usize::MAX), Duration::from_secs(5))
        .await
        .context("the write past the byte bound was not answered at once")?;
    match extra {
        Err(error) if error.code == BUSY => ensure!(
            error.message.contains("process/write bytes") && error.message.contains("16777216"),
            "the busy error should say what is full and the limit: {error}"
        ),
        other => bail!("expected -32011 for the write past the byte bound, got {other:?}"),
    }
    let terminated = client
        .request_within(
            "process/terminate",
            json!({"processId": "deaf"}),
            Duration::from_secs(3),
        )
        .await
        .context("terminate waited behind the stalled writes")?;
    ensure!(terminated.is_ok(), "terminate failed: {terminated:?}");
    // The child is gone, so each write is answered either way; what matters is that it is.
    for id in waiting {
        let _accepted_or_failed = client
            .wait_response(&json!(id), Instant::now() + RPC_TIMEOUT)
            .await
            .with_context(|| format!("stalled write {id} was never answered"))?;
    }
    Ok(())
}

conformance_test!(rexec_only("write byte bound answered with -32011") stalled_writes_are_bounded_by_bytes);

/// A client that floods its connection and never reads is dropped within two ping
/// intervals of the server's writes stalling: its session can be resumed elsewhere, and
/// the output is there to read.
async fn stalled_reader_is_dropped(ctx: Ctx) -> Result<()> {
    let ping = Duration::from_millis(300);
    let options = ServerOptions {
        ping_interval_ms: Some(ping.as_millis() as u64),
        ..Default::default()
    };
    let server = ctx.server_with(&options).await?;
    let mut stalled = Client::connect(&server).await?;
    let init = stalled.initialize().await?;
    let session = init["sessionId"].as_str().context("sessionId")?.to_owned();
    stalled
        .call("process/start", sh("flood", "head -c 500000000 /dev/zero"))
        .await?;
    // `stalled` is never read again: its socket buffers fill and the server's writes stop.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    let mut other = loop {
        let mut other = Client::connect(&server).await?;
        let resumed = other
            .initialize_with(json!({"clientName": "other", "resumeSessionId": session}))
            .await?;
        match resumed {
            Ok(_) => break other,
            Err(error) if error.code == -32010 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => bail!(
                "the stalled connection still held its session after {:?}: {error}",
                started.elapsed()
            ),
        }
    };
    let took = started.elapsed();
    ensure!(
        took < ping * 2 + Duration::from_secs(2),
        "resume took {took:?}; the peer should be dropped within two ping intervals"
    );
    let read = other
        .call(
            "process/read",
            json!({"processId": "flood", "afterSeq": 0, "waitMs": 0}),
        )
        .await?;
    ensure!(
        read["chunks"].as_array().is_some_and(|c| !c.is_empty()),
        "the retained output should be readable after the resume: {read}"
    );
    other
        .call("process/terminate", json!({"processId": "flood"}))
        .await?;
    drop(stalled);
    Ok(())
}

conformance_test!(rexec_only("dead-peer detection on a blocked writer") stalled_reader_is_dropped);

/// Opens a TCP connection that sends half an upgrade request and then nothing.
async fn half_open(addr: std::net::SocketAddr) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n").as_bytes())
        .await?;
    Ok(stream)
}

/// A thousand half-open sockets held against a server limited to 256 descriptors: an
/// authorized client still connects and runs a command, and the server says what it shed.
async fn half_open_flood_does_not_lock_out_clients(ctx: Ctx) -> Result<()> {
    let options = ServerOptions {
        token: Some("flood-token".into()),
        descriptor_limit: Some(256),
        ..Default::default()
    };
    let server = ctx.server_with(&options).await?;
    let mut held = Vec::new();
    for _ in 0..1000 {
        match half_open(server.addr).await {
            Ok(stream) => held.push(stream),
            // Refused or reset by the server: it is shedding, as it should.
            Err(_) => continue,
        }
    }
    let mut client = tokio::time::timeout(Duration::from_secs(10), Client::connect(&server))
        .await
        .context("an authorized client could not connect during the flood")??;
    client.initialize().await?;
    client.start(sh("hello", "echo hello")).await?;
    let events = client
        .events_until_closed("hello", Duration::from_secs(10))
        .await?;
    ensure!(events.output_text("stdout")? == "hello\n");
    let log = server.log();
    poll_until(
        "a warning about shed connections",
        Duration::from_secs(5),
        || {
            lock(&log)
                .render()
                .contains("had not finished their upgrade request")
        },
    )
    .await?;
    drop(held);
    Ok(())
}

conformance_test!(rexec_only("admission limits before authentication") half_open_flood_does_not_lock_out_clients);

/// A socket that does not finish its upgrade request within `--handshake-timeout-ms` is
/// closed by the server.
async fn slow_handshake_is_closed(ctx: Ctx) -> Result<()> {
    let options = ServerOptions {
        handshake_timeout_ms: Some(300),
        ..Default::default()
    };
    let server = ctx.server_with(&options).await?;
    let mut stream = half_open(server.addr).await?;
    let started = Instant::now();
    // Read to the end: end of stream or a reset, either way the server let go of the
    // socket (an answer that left it open would time out here).
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .context("the server kept a half-sent upgrade open past its handshake timeout")?;
    ensure!(
        started.elapsed() >= Duration::from_millis(250),
        "closed after {:?}, before the timeout",
        started.elapsed()
    );
    let mut client = Client::connect(&server).await?;
    client.initialize().await?;
    Ok(())
}

conformance_test!(rexec_only("--handshake-timeout-ms") slow_handshake_is_closed);

/// `--max-connections 2`: a third connection is refused with 503 while two are open, and
/// gets in once one of them has gone.
async fn connection_cap_refuses_then_admits(ctx: Ctx) -> Result<()> {
    let options = ServerOptions {
        max_connections: Some(2),
        ..Default::default()
    };
    let server = ctx.server_with(&options).await?;
    let mut first = Client::connect(&server).await?;
    first.initialize().await?;
    let mut second = Client::connect(&server).await?;
    second.initialize().await?;
    let refused = Client::connect(&server).await;
    let error = match refused {
        Ok(_) => bail!("a third connection was admitted past --max-connections 2"),
        Err(error) => format!("{error:#}"),
    };
    ensure!(
        error.contains("503") || error.contains("reset") || error.contains("closed"),
        "the refusal should be a 503 or a closed socket: {error}"
    );
    first.close().await;
    let mut third = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while third.is_none() {
        match Client::connect(&server).await {
            Ok(client) => third = Some(client),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(error) => bail!("no place freed after a connection closed: {error:#}"),
        }
    }
    let mut third = third.context("connected")?;
    third.initialize().await?;
    second.call("environment/info", json!({})).await?;
    let log = server.log();
    poll_until(
        "a warning about the connection limit",
        Duration::from_secs(5),
        || lock(&log).render().contains("connection limit (2)"),
    )
    .await?;
    Ok(())
}

conformance_test!(rexec_only("--max-connections") connection_cap_refuses_then_admits);

/// Peak resident memory of process `pid` (VmHWM), in bytes.
fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmHWM value")?
        .parse()?;
    Ok(kib * 1024)
}

/// A `process/read` of about `bytes`: its params padded with a field the server skips
/// without keeping. It fails (unknown process) with a short answer.
fn huge_read(bytes: usize) -> String {
    let padding = "x".repeat(bytes);
    format!(
        r#"{{"id":1000,"method":"process/read","params":{{"processId":"none","padding":"{padding}"}}}}"#
    )
}

/// Sends `request` on each client at the same moment and waits for every answer.
async fn send_together(clients: Vec<Client>, request: std::sync::Arc<String>) -> Result<()> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(clients.len()));
    let mut tasks = Vec::new();
    for mut client in clients {
        let (barrier, request) = (barrier.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            client.send_raw_text(request.as_str()).await?;
            client
                .wait_response(&json!(1000), Instant::now() + Duration::from_secs(60))
                .await?
                .err()
                .context("the padded read of an unknown process should fail")?;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Under `--max-inbound-bytes 64 MiB`, three 60 MiB requests sent at once are taken one
/// at a time: the server's peak memory grows by less than half of one over what one alone
/// cost (received at once, they add 60 to 100 MiB).
async fn inbound_memory_is_bounded(ctx: Ctx) -> Result<()> {
    const FRAME: usize = 60 * 1024 * 1024;
    let options = ServerOptions {
        max_inbound_bytes: Some(64 * 1024 * 1024),
        ..Default::default()
    };
    let server = ctx.server_with(&options).await?;
    let pid = server.pid()?;
    let request = std::sync::Arc::new(huge_read(FRAME));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut client = Client::connect(&server).await?;
        client.initialize().await?;
        clients.push(client);
    }
    let together = clients.split_off(1);
    send_together(clients, request.clone()).await?;
    let after_one = peak_rss(pid)?;
    send_together(together, request).await?;
    let grew = peak_rss(pid)?.saturating_sub(after_one);
    ensure!(
        grew < FRAME as u64 / 2,
        "three 60 MiB requests at once grew the peak by {} MiB over one alone",
        grew >> 20
    );
    Ok(())
}

conformance_test!(rexec_only("--max-inbound-bytes") inbound_memory_is_bounded);

/// A huge client-supplied value is quoted back only as a short prefix.
async fn errors_quote_short_prefixes(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let huge = "p".repeat(4 * 1024 * 1024);
    let error = client
        .expect_error("process/read", json!({"processId": huge, "afterSeq": 0}))
        .await?;
    ensure!(
        error.message.len() <= 1024,
        "the error quoted {} bytes back",
        error.message.len()
    );
    ensure!(
        error.message.contains("pppp"),
        "a prefix is still quoted: {error}"
    );
    let error = client
        .expect_error("process/read", json!({"processId": "x", "afterSeq": huge}))
        .await?;
    ensure!(
        error.message.len() <= 1024,
        "a decode error quoted {} bytes back",
        error.message.len()
    );
    Ok(())
}

conformance_test!(rexec_only("short quotes in error texts") errors_quote_short_prefixes);
