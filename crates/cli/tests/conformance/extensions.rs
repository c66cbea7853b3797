//! rexec's protocol extensions (codex 0.169.0 has none of them): the `rexec.extensions`
//! list in the initialize result, `process/resize`, `process/write` with `closeStdin`,
//! eviction counters on `process/read`, and per-process notification order.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

use crate::client::{Client, Incoming, RPC_TIMEOUT};
use crate::harness::{Ctx, EVENT_TIMEOUT, b64, encode, sh, start_params};

async fn advertises_extensions(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    let mut client = Client::connect(&server).await?;
    let init = client.initialize().await?;
    let names: Vec<&str> = init["rexec"]["extensions"]
        .as_array()
        .with_context(|| format!("no rexec.extensions in the initialize result: {init}"))?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ensure!(
        names.contains(&"process/resize"),
        "process/resize not advertised: {names:?}"
    );
    for name in rexec_protocol::extensions::ALL {
        ensure!(names.contains(name), "{name} not advertised: {names:?}");
    }
    ensure!(
        init["rexec"]["version"].is_string(),
        "no rexec.version: {init}"
    );
    ensure!(
        init["sessionId"].is_string(),
        "extensions displaced sessionId: {init}"
    );
    Ok(())
}
conformance_test!(rexec_only("rexec.extensions in initialize") advertises_extensions => rexec_advertises_extensions, codex_advertises_extensions);

async fn resize_pty(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let mut params = sh("rs", "stty size; read line; stty size");
    params["tty"] = json!(true);
    client.start(params).await?;
    client
        .wait_output_containing("rs", "24 80", EVENT_TIMEOUT)
        .await?;
    client
        .call(
            "process/resize",
            json!({"processId": "rs", "rows": 40, "cols": 100}),
        )
        .await?;
    let status = client.write("rs", b"\n", "w1").await?;
    ensure!(status == "accepted", "write status {status}");
    let events = client.events_until_closed("rs", EVENT_TIMEOUT).await?;
    let text = events.output_text("pty")?;
    ensure!(text.contains("40 100"), "stty size after resize: {text:?}");
    Ok(())
}
conformance_test!(rexec_only("process/resize") resize_pty => rexec_resize_pty, codex_resize_pty);

async fn write_close_stdin(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let mut params = start_params("cat", &["cat"]);
    params["pipeStdin"] = json!(true);
    client.start(params).await?;
    let write =
        json!({"processId": "cat", "chunk": encode(b"bye\n"), "writeId": "w1", "closeStdin": true});
    let result = client.call("process/write", write).await?;
    ensure!(result["status"] == "accepted", "write result {result}");
    let events = client.events_until_closed("cat", EVENT_TIMEOUT).await?;
    ensure!(
        events.output("stdout")? == b"bye\n",
        "cat output {events:?}"
    );
    ensure!(
        events.exit_code()? == 0,
        "cat did not see EOF and exit cleanly: {events:?}"
    );
    Ok(())
}
conformance_test!(rexec_only("process/write closeStdin") write_close_stdin => rexec_write_close_stdin, codex_write_close_stdin);

async fn eviction_counters(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client.start(sh("ev", "head -c 3000000 /dev/zero")).await?;
    client
        .events_until_closed("ev", Duration::from_secs(20))
        .await?;
    let read = client.read("ev", Some(0), None, 0).await?;
    let chunks = read["chunks"].as_array().context("chunks")?;
    let evicted_chunks = read["evictedChunks"]
        .as_u64()
        .with_context(|| format!("no evictedChunks: {}", summary(&read)))?;
    let evicted_bytes = read["evictedBytes"]
        .as_u64()
        .with_context(|| format!("no evictedBytes: {}", summary(&read)))?;
    ensure!(
        evicted_chunks > 0 && evicted_bytes > 0,
        "nothing reported evicted: {}",
        summary(&read)
    );
    let mut retained = 0u64;
    for chunk in chunks {
        retained += b64(&chunk["chunk"])?.len() as u64;
    }
    ensure!(
        evicted_bytes + retained == 3_000_000,
        "evictedBytes {evicted_bytes} + retained {retained} != 3000000 written"
    );
    let first_seq = chunks
        .first()
        .and_then(|c| c["seq"].as_u64())
        .context("no retained chunk")?;
    // Every evicted chunk is older than every retained one (the exit may take one seq).
    ensure!(
        (evicted_chunks + 1..=evicted_chunks + 2).contains(&first_seq),
        "first retained seq {first_seq}, evictedChunks {evicted_chunks}"
    );
    Ok(())
}
conformance_test!(rexec_only("evictedChunks/evictedBytes on process/read") eviction_counters => rexec_eviction_counters, codex_eviction_counters);

fn summary(read: &Value) -> String {
    let mut shown = read.clone();
    if let Some(chunks) = shown.get_mut("chunks") {
        *chunks = json!(format!("{} chunks", chunks.as_array().map_or(0, Vec::len)));
    }
    shown.to_string()
}

async fn ordered_notifications(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let script = "i=0; while [ $i -lt 300 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done";
    let ids = ["o1", "o2", "o3", "o4"];
    let mut requests = Vec::new();
    let mut request_ids = HashMap::new();
    for id in ids {
        let request_id = client.next_request_id();
        request_ids.insert(json!(request_id).to_string(), id);
        requests
            .push(json!({"id": request_id, "method": "process/start", "params": sh(id, script)}));
    }
    client.send_burst(&requests).await?;

    // Read raw frames: nothing of a process before its start response; seqs 1, 2, 3, ...
    let mut answered = HashSet::new();
    let mut next_seq: HashMap<&str, u64> = ids.iter().map(|id| (*id, 1)).collect();
    let mut closed = HashSet::new();
    let deadline = Instant::now() + RPC_TIMEOUT;
    while closed.len() < ids.len() {
        let frame = match client.recv_until(deadline).await? {
            Some(Incoming::Json(frame)) => frame,
            Some(Incoming::Closed(why)) => bail!("connection closed: {why}"),
            None => bail!("processes not all closed in time; closed {closed:?}"),
        };
        if let Some(process) = frame
            .get("id")
            .and_then(|id| request_ids.get(&id.to_string()))
        {
            ensure!(
                frame.get("result").is_some(),
                "start of {process} failed: {frame}"
            );
            answered.insert(*process);
            continue;
        }
        let Some(process) = ids
            .iter()
            .copied()
            .find(|id| frame["params"]["processId"] == *id)
        else {
            continue;
        };
        ensure!(
            answered.contains(process),
            "{process} notification before its start response: {frame}"
        );
        let expected = next_seq[process];
        ensure!(
            frame["params"]["seq"] == expected,
            "{process}: expected seq {expected}, got {frame}"
        );
        next_seq.insert(process, expected + 1);
        if frame["method"] == "process/closed" {
            closed.insert(process);
        }
    }
    Ok(())
}
conformance_test!(rexec_only("notifications in seq order after the start response") ordered_notifications => rexec_ordered_notifications, codex_ordered_notifications);
