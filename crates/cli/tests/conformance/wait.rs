//! rexec's `process/waitFor` (codex 0.169.0 does not have it): one request answered once a
//! condition holds on a process's log — exit, close, a regex match (one stream or any,
//! across chunk boundaries, over bytes), idle, N more bytes — or its timeout, with the seq
//! and offset it fired at. Waits start from the first retained output, run beside the
//! session's other requests, end with the process's close and with their connection, and
//! are bounded per session.

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

use crate::client::Client;
use crate::harness::{Ctx, EVENT_TIMEOUT, Event, b64, check_error, sh};

const WHY: &str = "process/waitFor";
/// Waits per session (the server's bound).
const MAX_WAITS: usize = 16;

fn wait_params(process_id: &str, conditions: Value) -> Value {
    json!({"processId": process_id, "conditions": conditions, "timeoutMs": 20_000})
}

async fn answer(client: &mut Client, id: i64) -> Result<Value> {
    client
        .wait_response(&json!(id), Instant::now() + 2 * EVENT_TIMEOUT)
        .await?
        .map_err(|error| anyhow!("process/waitFor failed: {error}"))
}

async fn wait_for(client: &mut Client, params: Value) -> Result<Value> {
    let id = client.send_request("process/waitFor", params).await?;
    answer(client, id).await
}

/// Pushed events of `process_id` until one satisfies `done`; returns them all.
async fn events_until(
    client: &mut Client,
    process_id: &str,
    mut done: impl FnMut(&Event) -> bool,
) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    loop {
        let event = client.next_event(process_id, EVENT_TIMEOUT).await?;
        let last = done(&event);
        events.push(event);
        if last {
            return Ok(events);
        }
    }
}

fn output_containing(event: &Event, needle: &str) -> bool {
    event.is("output")
        && b64(&event.params["chunk"])
            .is_ok_and(|bytes| String::from_utf8_lossy(&bytes).contains(needle))
}

fn seq_of(event: &Event) -> Result<u64> {
    event
        .seq()
        .with_context(|| format!("event without seq: {event:?}"))
}

fn fired(answer: &Value) -> &str {
    answer["fired"].as_str().unwrap_or_default()
}

fn match_text(answer: &Value) -> Result<String> {
    Ok(String::from_utf8(b64(&answer["matchText"])?)?)
}

async fn waits_for_exit_with_its_code(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client.start(sh("w", "sleep 0.2; exit 3")).await?;
    let got = wait_for(&mut client, wait_params("w", json!([{"type": "exit"}]))).await?;
    let events = client.events_until_closed("w", EVENT_TIMEOUT).await?;
    let exit_seq = seq_of(events.exited()?)?;
    ensure!(
        fired(&got) == "exited" && got["condition"] == 0 && got["exitCode"] == 3,
        "{got}"
    );
    ensure!(
        got["seq"] == exit_seq,
        "fired at {got}, exit was seq {exit_seq}"
    );
    Ok(())
}
conformance_test!(rexec_only("process/waitFor") waits_for_exit_with_its_code);

/// A background child keeps stdout open past the exit: `closed` waits for it, `exit`
/// does not.
async fn closed_waits_for_the_streams_exit_does_not(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client
        .start(sh("w", "(sleep 0.4; echo late) & exit 0"))
        .await?;
    let exit_wait = client
        .send_request(
            "process/waitFor",
            wait_params("w", json!([{"type": "exit"}])),
        )
        .await?;
    let closed_wait = client
        .send_request(
            "process/waitFor",
            wait_params("w", json!([{"type": "closed"}])),
        )
        .await?;
    let exited = answer(&mut client, exit_wait).await?;
    let events = client.events_until_closed("w", EVENT_TIMEOUT).await?;
    let closed = answer(&mut client, closed_wait).await?;
    let late_seq = events
        .0
        .iter()
        .find(|e| output_containing(e, "late"))
        .map(seq_of)
        .context("no late output")??;
    ensure!(
        fired(&exited) == "exited" && exited["exitCode"] == 0,
        "{exited}"
    );
    ensure!(
        exited["seq"].as_u64() < Some(late_seq),
        "exit fired at {exited}, before the late output at {late_seq}"
    );
    ensure!(
        fired(&closed) == "closed" && closed["condition"] == 0,
        "{closed}"
    );
    ensure!(
        closed["seq"].as_u64() > Some(late_seq) && closed["offset"] == 5,
        "closed fired at {closed}, after 5 bytes of output ending at seq {late_seq}"
    );
    Ok(())
}
conformance_test!(rexec_only("process/waitFor") closed_waits_for_the_streams_exit_does_not);

/// "lis", a pause, "tening": the match spans two chunks and fires at the second.
async fn a_match_split_across_chunks_fires_at_its_last_chunk(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client
        .start(sh(
            "w",
            "printf 'boot lis'; sleep 0.3; printf 'tening\\n'; sleep 30",
        ))
        .await?;
    let wait = client
        .send_request(
            "process/waitFor",
            wait_params(
                "w",
                json!([{"type": "exit"}, {"type": "match", "regex": "listening"}]),
            ),
        )
        .await?;
    let events = events_until(&mut client, "w", |e| output_containing(e, "tening")).await?;
    let got = answer(&mut client, wait).await?;
    ensure!(
        events.len() == 2 && output_containing(&events[0], "lis"),
        "the output was not split as the test needs: {events:?}"
    );
    ensure!(fired(&got) == "matched" && got["condition"] == 1, "{got}");
    ensure!(
        match_text(&got)? == "listening" && got["matchLen"] == 9,
        "{got}"
    );
    ensure!(
        got["seq"] == seq_of(&events[1])? && got["offset"] == 5 && got["stream"] == "stdout",
        "fired at {got}; the match starts at byte 5, ends in {:?}",
        events[1]
    );
    ensure!(
        got.get("exitCode").is_none(),
        "the process still runs: {got}"
    );
    client.terminate("w").await?;
    Ok(())
}
conformance_test!(rexec_only("process/waitFor") a_match_split_across_chunks_fires_at_its_last_chunk);

async fn a_match_on_stderr_ignores_stdout(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client
        .start(sh(
            "w",
            "echo ready; sleep 0.2; echo 'x ready' >&2; sleep 30",
        ))
        .await?;
    let got = wait_for(
        &mut client,
        wait_params(
            "w",
            json!([{"type": "match", "regex": "ready", "stream": "stderr"}]),
        ),
    )
    .await?;
    let events = events_until(&mut client, "w", |e| {
        e.is("output") && e.params["stream"] == "stderr"
    })
    .await?;
    let stderr_seq = seq_of(events.last().context("no events")?)?;
    ensure!(
        fired(&got) == "matched" && got["stream"] == "stderr" && got["seq"] == stderr_seq,
        "fired at {got}; stderr said ready at seq {stderr_seq}, after stdout did"
    );
    ensure!(got["offset"] == 2, "the offset counts stderr only: {got}");
    client.terminate("w").await?;
    Ok(())
}
conformance_test!(rexec_only("process/waitFor") a_match_on_stderr_ignores_stdout);

async fn binary_output_matches_as_bytes(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client
        .start(sh("w", "printf 'x\\377\\000ok\\n'; sleep 30"))
        .await?;
    let got = wait_for(
        &mut client,
        wait_params(
            "w",
            json!([{"type": "match", "regex": "(?-u)\\xff\\x00ok"}]),
        ),
    )
    .await?;
    ensure!(fired(&got) == "matched" && got["offset"] == 1, "{got}");
    let text = b64(&got["matchText"])?;
    ensure!(text == b"\xff\x00ok", "matched {text:?}");
    client.terminate("w").await?;
    Ok(())
}
conformance_test!(rexec_only("process/waitFor") binary_output_matches_as_bytes);

/// Ten lines 50 ms apart, then silence: `idle 600ms` fires only after the last line.
async fn idle_fires_after_the_last_output(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client
        .start(sh(
            "w",
            "for i in 1 2 3 4 5 6 7 8 9 10; do echo $i; sleep 0.05; done; sleep 30",
        ))
        .await?;
    let wait = client
        .send_request(
            "process/waitFor",
            wait_params("w", json!([{"type": "idle", "ms": 600}])),
        )
        .await?;
    let events = events_until(&mut client, "w", |e| output_containing(e, "10\n")).await?;
    let last_output = Instant::now();
    let got = answer(&mut client, wait).await?;
    let quiet = last_output.elapsed();
    let last_seq = seq_of(events.last().context("no events")?)?;
    ensure!(fired(&got) == "idle" && got["condition"] == 0, "{got}");
    ensure!(
        got["seq"] == last_seq && got["offset"] == 21,
        "fired at {got}; the last line (byte 21) was seq {last_seq}"
    );
    ensure!(
        quiet >= Duration::from_millis(550),
        "fired {quiet:?} after the last output, before the 600 ms of quiet"
    );
    client.terminate("w").await?;
    Ok(())
}
conformance_test!(rexec_only("process/waitFor") idle_fires_after_the_last_output);

async fn bytes_fires_once_enough_output_came(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client
        .start(sh("w", "printf 12345; sleep 0.3; printf 67890; sleep 30"))
        .await?;
    let got = wait_for(
        &mut client,
        wait_params("w", json!([{"type": "bytes", "count": 7}])),
    )
    .await?;
    let events = events_until(&mut client, "w", |e| output_containing(e, "678")).await?;
    let second = seq_of(events.last().context("no events")?)?;
    ensure!(
        fired(&got) == "bytes" && got["seq"] == second && got["offset"] == 7,
        "fired at {got}; byte 7 came in seq {second}"
    );
    client.terminate("w").await?;
    Ok(())
}
conformance_test!(rexec_only("process/waitFor") bytes_fires_once_enough_output_came);

async fn a_wait_times_out(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client.start(sh("w", "echo hi; sleep 30")).await?;
    events_until(&mut client, "w", |e| output_containing(e, "hi")).await?;
    let asked = Instant::now();
    let got = wait_for(
        &mut client,
        json!({"processId": "w", "timeoutMs": 300,
               "conditions": [{"type": "match", "regex": "never"}, {"type": "exit"}]}),
    )
    .await?;
    let took = asked.elapsed();
    ensure!(
        fired(&got) == "timedOut" && got.get("condition").is_none(),
        "{got}"
    );
    ensure!(
        got["seq"] == 1 && got["offset"] == 3,
        "the last event seen: {got}"
    );
    ensure!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "timed out after {took:?}"
    );
    client.terminate("w").await?;
    Ok(())
}
conformance_test!(rexec_only("process/waitFor") a_wait_times_out);

/// A wait sent after the line was printed still sees it (afterSeq 0 is the first
/// retained output); `afterSeq` past it finds the next one.
async fn after_seq_chooses_where_the_wait_starts(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client
        .start(sh("w", "echo ready; sleep 0.3; echo ready; sleep 30"))
        .await?;
    events_until(&mut client, "w", |e| output_containing(e, "ready")).await?;
    let ready = json!([{"type": "match", "regex": "ready"}]);
    let first = wait_for(&mut client, wait_params("w", ready.clone())).await?;
    ensure!(
        fired(&first) == "matched" && first["seq"] == 1 && first["offset"] == 0,
        "{first}"
    );
    let mut params = wait_params("w", ready);
    params["afterSeq"] = first["seq"].clone();
    let second = wait_for(&mut client, params).await?;
    ensure!(
        fired(&second) == "matched" && second["seq"] == 2 && second["offset"] == 6,
        "{second}"
    );
    ensure!(
        second.get("missedOutput").is_none(),
        "nothing was evicted: {second}"
    );
    client.terminate("w").await?;
    Ok(())
}
conformance_test!(rexec_only("process/waitFor") after_seq_chooses_where_the_wait_starts);

/// 2 MB of output evicts the start: the wait says so, and offsets still count it.
async fn a_wait_says_when_output_was_evicted(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client
        .start(sh(
            "w",
            "head -c 2000000 /dev/zero | tr '\\0' a; echo; echo done; sleep 30",
        ))
        .await?;
    events_until(&mut client, "w", |e| output_containing(e, "done")).await?;
    let got = wait_for(
        &mut client,
        wait_params("w", json!([{"type": "match", "regex": "done"}])),
    )
    .await?;
    ensure!(
        fired(&got) == "matched" && got["missedOutput"] == true && got["offset"] == 2_000_001,
        "{got}"
    );
    client.terminate("w").await?;
    Ok(())
}
conformance_test!(rexec_only("process/waitFor") a_wait_says_when_output_was_evicted);

async fn an_unknown_process_is_refused_as_read_refuses_it(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let wait = client
        .expect_error(
            "process/waitFor",
            wait_params("nope", json!([{"type": "exit"}])),
        )
        .await?;
    let read = client
        .expect_error("process/read", json!({"processId": "nope", "afterSeq": 0}))
        .await?;
    ensure!(
        wait.code == read.code && wait.message == read.message,
        "waitFor: {wait}; read: {read}"
    );
    Ok(())
}
conformance_test!(rexec_only("process/waitFor") an_unknown_process_is_refused_as_read_refuses_it);

async fn bad_conditions_are_refused_and_change_nothing(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client.start(sh("w", "echo up; sleep 30")).await?;
    let cases = [
        (
            json!([{"type": "match", "regex": "("}]),
            "conditions[0]: invalid regex",
        ),
        (
            json!([{"type": "exit"}, {"type": "match", "regex": "a", "windowBytes": 2_000_000}]),
            "conditions[1]: windowBytes 2000000 is out of range",
        ),
        (json!([]), "at least one condition"),
        (
            json!([{"type": "idle", "ms": 0}]),
            "idle ms 0 is out of range",
        ),
        (json!([{"type": "soon"}]), "soon"),
    ];
    for (conditions, needle) in cases {
        let error = client
            .expect_error("process/waitFor", wait_params("w", conditions.clone()))
            .await?;
        check_error(&error, -32602, needle).with_context(|| format!("{conditions}"))?;
    }
    let mut long = wait_params("w", json!([{"type": "exit"}]));
    long["timeoutMs"] = json!(25 * 60 * 60 * 1000);
    let error = client.expect_error("process/waitFor", long).await?;
    check_error(&error, -32602, "timeoutMs 90000000 is over the limit")?;
    let got = wait_for(
        &mut client,
        wait_params("w", json!([{"type": "match", "regex": "up"}])),
    )
    .await?;
    ensure!(
        fired(&got) == "matched",
        "a valid wait after the refusals: {got}"
    );
    client.terminate("w").await?;
    Ok(())
}
conformance_test!(rexec_only("process/waitFor") bad_conditions_are_refused_and_change_nothing);

/// While a wait is pending, a start and a long-poll read of another process on the same
/// connection are answered; terminating the waited process ends the wait with `closed`.
async fn a_wait_blocks_nothing_and_ends_with_its_process(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client.start(sh("slow", "sleep 30")).await?;
    let wait = client
        .send_request(
            "process/waitFor",
            wait_params("slow", json!([{"type": "match", "regex": "never"}])),
        )
        .await?;
    client.start(sh("quick", "sleep 0.1; echo hi")).await?;
    let read = client.read("quick", Some(0), None, 5_000).await?;
    let chunk = read["chunks"][0]["chunk"].clone();
    ensure!(
        b64(&chunk)? == b"hi\n",
        "read while a wait is pending: {read}"
    );
    ensure!(client.terminate("slow").await?, "slow was running");
    let got = answer(&mut client, wait).await?;
    ensure!(
        fired(&got) == "closed" && got.get("condition").is_none() && got["exitCode"] == 137,
        "the terminated process's wait: {got}"
    );
    Ok(())
}
conformance_test!(rexec_only("process/waitFor") a_wait_blocks_nothing_and_ends_with_its_process);

/// A session has 16 wait places; a closed connection's waits give theirs back, so the
/// resumed session can wait 16 times again.
async fn waits_are_bounded_per_session_and_end_with_their_connection(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    let mut first = Client::connect(&server).await?;
    let init = first.initialize().await?;
    let session = init["sessionId"]
        .as_str()
        .context("no sessionId")?
        .to_owned();
    first.start(sh("w", "sleep 30")).await?;
    let never = || wait_params("w", json!([{"type": "match", "regex": "never"}]));
    for _ in 0..MAX_WAITS {
        first.send_request("process/waitFor", never()).await?;
    }
    let error = first.expect_error("process/waitFor", never()).await?;
    check_error(
        &error,
        -32011,
        "too many process/waitFor requests in flight in this session",
    )?;
    first.close().await;

    let deadline = Instant::now() + EVENT_TIMEOUT;
    let mut second = loop {
        let mut client = Client::connect(&server).await?;
        let resume = json!({"clientName": WHY, "resumeSessionId": session});
        match client.initialize_with(resume).await? {
            Ok(_) => break client,
            Err(error) if error.code == -32010 && Instant::now() < deadline => {
                // Still attached: the server has not seen the close yet.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => bail!("resume failed: {error}"),
        }
    };
    let mut quick = Vec::new();
    for _ in 0..MAX_WAITS {
        let mut params = never();
        params["timeoutMs"] = json!(200);
        quick.push(second.send_request("process/waitFor", params).await?);
    }
    for id in quick {
        let got = answer(&mut second, id).await?;
        ensure!(fired(&got) == "timedOut", "{got}");
    }
    second.terminate("w").await?;
    Ok(())
}
conformance_test!(
    rexec_only("process/waitFor") waits_are_bounded_per_session_and_end_with_their_connection
);
