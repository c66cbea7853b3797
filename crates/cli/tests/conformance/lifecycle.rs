//! The server's own lifecycle under stress: SIGTERM shuts it down and takes every child with
//! it, and a storm of malformed, truncated and mistyped frames neither crashes it nor stops
//! it from serving other clients.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::time::Duration;

use crate::client::{Client, Incoming};
use crate::harness::{Ctx, EVENT_TIMEOUT, poll_until, sh};
use crate::server::ServerOptions;
use crate::session::{process_gone, session_id, start_sleeper};

async fn sigterm_kills_children(ctx: Ctx) -> Result<()> {
    let mut server = ctx.server().await?;
    let mut client = Client::connect(&server).await?;
    client.initialize().await?;
    let pid = start_sleeper(&mut client, "sleeper").await?;
    server.terminate(Duration::from_secs(10)).await?;
    poll_until(
        "the child died with its server",
        Duration::from_secs(5),
        || process_gone(pid),
    )
    .await
}
conformance_test!(sigterm_kills_children);

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Valid requests to mutate. Only `/bin/true` is ever started, so a mutation that still
/// parses cannot run anything surprising.
fn templates() -> Vec<Value> {
    let start = json!({"processId": "g", "argv": ["/bin/true"], "cwd": "file:///tmp",
        "env": {}, "tty": false, "pipeStdin": false, "arg0": null});
    [
        ("process/start", start),
        (
            "process/read",
            json!({"processId": "g", "afterSeq": 0, "maxBytes": 10, "waitMs": 0}),
        ),
        (
            "process/write",
            json!({"processId": "g", "chunk": "aGkK", "writeId": "w"}),
        ),
        (
            "process/signal",
            json!({"processId": "g", "signal": "interrupt"}),
        ),
        ("process/terminate", json!({"processId": "g"})),
        ("environment/info", json!({})),
    ]
    .into_iter()
    .enumerate()
    .map(|(id, (method, params))| json!({"id": 1000 + id, "method": method, "params": params}))
    .collect()
}

/// Replace one value somewhere in `value` with a value of another type.
fn retype(value: &mut Value, noise: &mut Noise) {
    let replacements = [
        json!(null),
        json!(-1),
        json!(1e308),
        json!("x"),
        json!([]),
        json!({}),
        json!(true),
        json!(u64::MAX),
    ];
    match value {
        Value::Object(map) if !map.is_empty() && noise.below(3) > 0 => {
            let key = map
                .keys()
                .nth(noise.below(map.len()))
                .cloned()
                .unwrap_or_default();
            if let Some(inner) = map.get_mut(&key) {
                retype(inner, noise);
            }
        }
        Value::Array(items) if !items.is_empty() && noise.below(3) > 0 => {
            let index = noise.below(items.len());
            retype(&mut items[index], noise);
        }
        other => *other = replacements[noise.below(replacements.len())].clone(),
    }
}

fn mutate(template: &Value, noise: &mut Noise) -> Vec<u8> {
    let text = template.to_string().into_bytes();
    match noise.below(4) {
        0 => text[..noise.below(text.len())].to_vec(),
        1 => {
            let mut bytes = text;
            let index = noise.below(bytes.len());
            bytes[index] = (noise.next() & 0xff) as u8;
            bytes
        }
        2 => {
            let mut value = template.clone();
            retype(&mut value, noise);
            value.to_string().into_bytes()
        }
        _ => (0..noise.below(64))
            .map(|_| (noise.next() & 0xff) as u8)
            .collect(),
    }
}

async fn malformed_frame_storm(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    let mut bystander = Client::connect(&server).await?;
    bystander.initialize().await?;
    let templates = templates();
    let mut noise = Noise(0x5eed_cafe_f00d_d00d);
    let mut client = Client::connect(&server).await?;
    client.initialize().await?;
    let mut reconnects = 0;
    for round in 0..400 {
        let frame = mutate(&templates[noise.below(templates.len())], &mut noise);
        let sent = if round % 2 == 0 {
            client.send_raw_binary(frame).await
        } else {
            client
                .send_raw_text(String::from_utf8_lossy(&frame).into_owned())
                .await
        };
        // Drain whatever came back; a mutation that looks like a client *response* or a
        // stray notification legitimately makes the server close this connection.
        let drained = drain(&mut client).await;
        if sent.is_err() || drained.is_err() {
            reconnects += 1;
            client = Client::connect(&server).await?;
            client.initialize().await?;
        }
    }
    client
        .ping()
        .await
        .context("the storm's own connection after the storm")?;
    bystander
        .ping()
        .await
        .context("a bystander connection after the storm")?;
    let mut fresh = Client::connect(&server).await?;
    fresh.initialize().await?;
    fresh.start(sh("after", "echo alive")).await?;
    let events = fresh.events_until_closed("after", EVENT_TIMEOUT).await?;
    ensure!(
        events.output_text("stdout")? == "alive\n",
        "a process after the storm"
    );
    eprintln!("malformed_frame_storm: {reconnects} reconnects over 400 frames");
    Ok(())
}
conformance_test!(malformed_frame_storm);

/// Read replies until the connection is quiet for a moment. Err if it closed.
async fn drain(client: &mut Client) -> Result<()> {
    loop {
        let quiet = tokio::time::Instant::now() + Duration::from_millis(5);
        match client.recv_until(quiet).await? {
            Some(Incoming::Json(frame)) => client.dispatch(frame),
            Some(Incoming::Closed(reason)) => anyhow::bail!("closed: {reason}"),
            None => return Ok(()),
        }
    }
}

/// A client that vanishes without closing its socket (it stops answering pings) must not
/// keep its session hostage: the server drops it after a silent ping interval, and a new
/// connection resumes the session well inside the upstream client's 25 s window.
async fn silent_peer_is_dropped_and_its_session_resumable(ctx: Ctx) -> Result<()> {
    let options = ServerOptions {
        ping_interval_ms: Some(200),
        ..Default::default()
    };
    let server = ctx.server_with(&options).await?;
    let mut vanished = Client::connect(&server).await?;
    let session = session_id(&vanished.initialize().await?)?;
    vanished
        .start(sh("survivor", "echo before; sleep 1; echo after"))
        .await?;
    // From here on `vanished` is never read again: no pongs, but the TCP connection stays up.
    let started = tokio::time::Instant::now();
    let mut resumed = loop {
        let mut client = Client::connect(&server).await?;
        match client
            .initialize_with(json!({"clientName": "resumer", "resumeSessionId": session}))
            .await?
        {
            Ok(_) => break client,
            Err(error) if error.code == -32010 => {
                ensure!(
                    started.elapsed() < Duration::from_secs(5),
                    "still attached to the silent peer after 5 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => anyhow::bail!("resume failed: {error:?}"),
        }
    };
    resumed.notify("initialized", json!({})).await?;
    let read = resumed
        .call(
            "process/read",
            json!({"processId": "survivor", "afterSeq": 0, "waitMs": 5000}),
        )
        .await?;
    ensure!(
        read["chunks"].as_array().is_some_and(|c| !c.is_empty()),
        "read: {read}"
    );
    drop(vanished);
    Ok(())
}
conformance_test!(rexec_only("--ping-interval-ms") silent_peer_is_dropped_and_its_session_resumable);
