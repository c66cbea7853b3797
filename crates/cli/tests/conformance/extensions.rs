//! rexec's protocol extensions (codex 0.169.0 has none of them): the `rexec.extensions`
//! list in the initialize result, `process/resize`, `process/write` with `closeStdin`,
//! eviction counters on `process/read`, per-process notification order, and binary output
//! frames (granted per connection; output stays JSON unless granted, on either server), and
//! `process/start` without `cwd`.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

use crate::client::{Client, Incoming, RPC_TIMEOUT, RawIncoming};
use crate::harness::{Ctx, EVENT_TIMEOUT, Event, Events, b64, encode, sh, start_params};
use crate::server::Server;

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
conformance_test!(rexec_only("rexec.extensions in initialize") advertises_extensions);

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
conformance_test!(rexec_only("process/resize") resize_pty);

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
conformance_test!(rexec_only("process/write closeStdin") write_close_stdin);

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
conformance_test!(rexec_only("evictedChunks/evictedBytes on process/read") eviction_counters);

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
conformance_test!(rexec_only("notifications in seq order after the start response") ordered_notifications);

// ----- process/output.binary -----

/// `seq first last`, as bytes.
fn numbers(first: u64, last: u64) -> Vec<u8> {
    (first..=last)
        .flat_map(|n| format!("{n}\n").into_bytes())
        .collect()
}

/// A binary output frame, decoded by hand from the documented layout
/// `[format=1][stream][seq u64 BE][len u16 BE][processId][payload]`, as the
/// `process/output` event it stands for.
fn binary_output_event(bytes: &[u8]) -> Result<Event> {
    ensure!(bytes.len() >= 12, "binary frame of {} bytes", bytes.len());
    ensure!(bytes[0] == 1, "binary frame format byte {}", bytes[0]);
    let stream = match bytes[1] {
        0 => "stdout",
        1 => "stderr",
        2 => "pty",
        other => bail!("binary frame stream code {other}"),
    };
    let seq = u64::from_be_bytes(bytes[2..10].try_into()?);
    let id_len = usize::from(u16::from_be_bytes([bytes[10], bytes[11]]));
    ensure!(
        bytes.len() >= 12 + id_len,
        "binary frame cut in its processId"
    );
    let process_id = std::str::from_utf8(&bytes[12..12 + id_len])?;
    let chunk = encode(&bytes[12 + id_len..]);
    let params = json!({"processId": process_id, "seq": seq, "stream": stream, "chunk": chunk});
    Ok(Event {
        method: "process/output".into(),
        params,
    })
}

/// What one process pushed, read frame by frame, with how its output travelled.
#[derive(Default)]
struct Pushed {
    events: Events,
    binary_frames: usize,
    json_outputs: usize,
    responses: Vec<Value>,
}

impl Pushed {
    fn stdout(&self) -> Vec<u8> {
        self.events.output("stdout").unwrap_or_default()
    }

    fn summary(&self) -> String {
        format!(
            "{} binary frames, {} JSON outputs, stdout {} bytes, seqs {:?}, responses {:?}",
            self.binary_frames,
            self.json_outputs,
            self.stdout().len(),
            self.events.seqs(),
            self.responses
        )
    }

    /// Reads raw frames until `done` holds: events of `process_id`, and responses.
    async fn read_until(
        &mut self,
        client: &mut Client,
        process_id: &str,
        done: impl Fn(&Pushed) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        while !done(self) {
            let (event, binary) = match client.recv_raw_until(deadline).await? {
                None => bail!(
                    "{process_id} not done in {EVENT_TIMEOUT:?}: {}",
                    self.summary()
                ),
                Some(RawIncoming::Closed(why)) => bail!("connection closed: {why}"),
                Some(RawIncoming::Binary(bytes)) => (binary_output_event(&bytes)?, true),
                Some(RawIncoming::Json(value)) if value.get("id").is_some() => {
                    self.responses.push(value);
                    continue;
                }
                Some(RawIncoming::Json(value)) => {
                    let method = value["method"].as_str().unwrap_or_default().to_owned();
                    let params = value["params"].clone();
                    (Event { method, params }, false)
                }
            };
            ensure!(
                event.params["processId"] == process_id,
                "unexpected {event:?}"
            );
            match (event.is("output"), binary) {
                (true, true) => self.binary_frames += 1,
                (true, false) => self.json_outputs += 1,
                _ => {}
            }
            self.events.0.push(event);
        }
        Ok(())
    }
}

fn binary_request(client_name: &str, binary: bool) -> Value {
    json!({"clientName": client_name, "rexec": {"binaryOutput": binary}})
}

async fn binary_output_granted(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    let mut client = Client::connect(&server).await?;
    let init = client
        .initialize_with(binary_request("rexec-conformance", true))
        .await?
        .map_err(|e| anyhow::anyhow!("initialize failed: {e}"))?;
    ensure!(init["rexec"]["binaryOutput"] == true, "not granted: {init}");
    let script = "seq 1 50000; echo done >&2";
    client
        .send_request("process/start", sh("bo", script))
        .await?;
    let mut pushed = Pushed::default();
    // Nothing of the process may precede its start response.
    pushed
        .read_until(&mut client, "bo", |p| !p.responses.is_empty())
        .await?;
    ensure!(
        pushed.events.0.is_empty() && pushed.responses[0].get("result").is_some(),
        "start: {}",
        pushed.summary()
    );
    pushed
        .read_until(&mut client, "bo", |p| {
            p.events.0.last().is_some_and(|e| e.is("closed"))
        })
        .await?;
    let summary = pushed.summary();
    ensure!(
        pushed.json_outputs == 0 && pushed.binary_frames >= 2,
        "{summary}"
    );
    ensure!(
        pushed.stdout() == numbers(1, 50_000),
        "stdout differs: {summary}"
    );
    ensure!(pushed.events.output("stderr")? == b"done\n", "{summary}");
    // Seqs 1..=n across both forms; exited and closed (JSON) come last.
    pushed.events.check_sequence(ctx.target)?;
    ensure!(pushed.events.exit_code()? == 0, "{summary}");

    // process/read, the repair path, stays JSON and returns the same bytes.
    let read = client.read("bo", Some(0), None, 0).await?;
    let mut retained = Vec::new();
    for chunk in read["chunks"].as_array().context("chunks")? {
        if chunk["stream"] == "stdout" {
            retained.extend(b64(&chunk["chunk"])?);
        }
    }
    ensure!(retained == numbers(1, 50_000), "process/read differs");
    Ok(())
}
conformance_test!(rexec_only("process/output.binary") binary_output_granted);

async fn json_output_unless_granted(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    // Not asking, declining, and asking (which an upstream server ignores).
    let plain = json!({"clientName": "plain"});
    for params in [
        plain,
        binary_request("no", false),
        binary_request("yes", true),
    ] {
        let mut client = Client::connect(&server).await?;
        let init = client
            .initialize_with(params.clone())
            .await?
            .map_err(|e| anyhow::anyhow!("initialize with {params} failed: {e}"))?;
        let granted = init["rexec"]["binaryOutput"] == true;
        let asked = params["rexec"]["binaryOutput"] == true;
        ensure!(asked || !granted, "granted without asking: {init}");
        // Not awaited here: an upstream server may push output before the start response,
        // and read_until must see every frame.
        client
            .send_request("process/start", sh("jo", "seq 1 50000"))
            .await?;
        let mut pushed = Pushed::default();
        pushed
            .read_until(&mut client, "jo", |p| {
                p.events.0.last().is_some_and(|e| e.is("closed"))
            })
            .await?;
        let summary = pushed.summary();
        ensure!(pushed.stdout() == numbers(1, 50_000), "{params}: {summary}");
        let unexpected = if granted {
            pushed.json_outputs
        } else {
            pushed.binary_frames
        };
        ensure!(unexpected == 0, "{params} (granted: {granted}): {summary}");
        client.close().await;
    }
    Ok(())
}
conformance_test!(json_output_unless_granted);

/// `initialize {resumeSessionId}`, retried while the server still has the old connection.
async fn resume_with(server: &Server, session: &str, binary: bool) -> Result<(Client, Value)> {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let mut client = Client::connect(server).await?;
        let mut params = binary_request("resumer", binary);
        params["resumeSessionId"] = json!(session);
        match client.initialize_with(params).await? {
            Ok(init) => return Ok((client, init)),
            Err(error) if error.code == -32010 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => bail!("resume failed: {error}"),
        }
    }
}

async fn binary_output_is_per_connection(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    let mut client = Client::connect(&server).await?;
    let init = client
        .initialize_with(binary_request("first", true))
        .await?
        .map_err(|e| anyhow::anyhow!("initialize failed: {e}"))?;
    let session = init["sessionId"].as_str().context("sessionId")?.to_owned();
    // Each phase's output waits for a line on stdin, so all of it reaches the connection
    // attached in that phase: binary, then JSON after a resume without asking, then binary.
    let mut params = sh("pc", "seq 1 100; read a; seq 101 200; read b; seq 201 300");
    params["pipeStdin"] = json!(true);
    client.send_request("process/start", params).await?;
    let mut all = Events::default();
    for (phase, binary) in [true, false, true].into_iter().enumerate() {
        if phase > 0 {
            client.close().await;
            let (resumed, init) = resume_with(&server, &session, binary).await?;
            ensure!(
                init["rexec"]["binaryOutput"] == binary,
                "phase {phase}: {init}"
            );
            client = resumed;
            let write =
                json!({"processId": "pc", "chunk": encode(b"\n"), "writeId": format!("w{phase}")});
            client.send_request("process/write", write).await?;
        }
        let first = 100 * phase as u64 + 1;
        let expected = numbers(first, first + 99);
        let mut pushed = Pushed::default();
        pushed
            .read_until(&mut client, "pc", |p| {
                p.stdout().len() >= expected.len()
                    && (phase < 2 || p.events.0.last().is_some_and(|e| e.is("closed")))
            })
            .await?;
        let summary = pushed.summary();
        ensure!(pushed.stdout() == expected, "phase {phase}: {summary}");
        let unexpected = if binary {
            pushed.json_outputs
        } else {
            pushed.binary_frames
        };
        ensure!(unexpected == 0, "phase {phase}, binary {binary}: {summary}");
        all.0.extend(pushed.events.0);
    }
    all.check_sequence(ctx.target)
}
conformance_test!(rexec_only("process/output.binary") binary_output_is_per_connection);

// ----- process/start.defaultCwd -----

/// rexec runs a start without `cwd` in its own working directory (the `environmentInfo.cwd`
/// it reported); codex 0.169.0 refuses it with -32602, which is what a client relies on to
/// send the start again with a cwd.
async fn start_without_cwd(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    let mut client = Client::connect(&server).await?;
    let init = client.initialize().await?;
    let mut params = sh("nocwd", "pwd");
    params
        .as_object_mut()
        .context("start params are an object")?
        .remove("cwd");
    if ctx.target == crate::server::Target::Codex {
        let error = client.expect_error("process/start", params).await?;
        ensure!(error.code == -32602, "codex refused with {error}");
        return client.ping().await;
    }
    let cwd = init["environmentInfo"]["cwd"]
        .as_str()
        .context("no environmentInfo.cwd")?
        .strip_prefix("file://")
        .context("cwd is a file URI")?
        .to_owned();
    client.start(params).await?;
    let events = client.events_until_closed("nocwd", EVENT_TIMEOUT).await?;
    ensure!(
        events.output_text("stdout")? == format!("{cwd}\n"),
        "pwd printed {:?}, the server's cwd is {cwd}",
        events.output_text("stdout")
    );
    Ok(())
}
conformance_test!(start_without_cwd);

/// `holdOutput: true` on `process/start`: an upstream server ignores the field, rexec holds
/// the output for an acknowledgement; on both, a short command's output and close arrive.
async fn hold_output_field_is_harmless(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let mut params = start_params("held", &["sh", "-c", "printf held-output"]);
    params["holdOutput"] = json!(true);
    client.start(params).await?;
    let events = client.events_until_closed("held", EVENT_TIMEOUT).await?;
    ensure!(events.exit_code()? == 0, "{events:?}");
    ensure!(events.output_text("stdout")? == "held-output", "{events:?}");
    Ok(())
}
conformance_test!(hold_output_field_is_harmless);
