//! Input to processes: `process/write` statuses (accepted, stdinClosed, unknownProcess),
//! `writeId` de-duplication, and PTY processes (stream `pty`, 24x80, line echo).

use anyhow::{Result, ensure};
use serde_json::json;

use crate::harness::{Ctx, EVENT_TIMEOUT, encode, sh, start_params};

async fn stdin_closed_without_pipe(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let script = "if read line; then echo got:$line; else echo eof; fi; exec sleep 30";
    client.start(sh("nopipe", script)).await?;
    let (text, _) = client
        .wait_output_containing("nopipe", "\n", EVENT_TIMEOUT)
        .await?;
    ensure!(
        text == "eof\n",
        "child without pipeStdin should see EOF, printed {text:?}"
    );
    let status = client.write("nopipe", b"hello\n", "w1").await?;
    ensure!(status == "stdinClosed", "write status {status}");
    ensure!(client.terminate("nopipe").await?, "nopipe was not running");
    client.events_until_closed("nopipe", EVENT_TIMEOUT).await?;
    Ok(())
}
conformance_test!(stdin_closed_without_pipe);

async fn piped_stdin_is_written(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let mut params = start_params("head", &["head", "-n1"]);
    params["pipeStdin"] = json!(true);
    client.start(params).await?;
    let status = client.write("head", b"hello pipe\n", "w1").await?;
    ensure!(status == "accepted", "write status {status}");
    let events = client.events_until_closed("head", EVENT_TIMEOUT).await?;
    ensure!(
        events.output("stdout")? == b"hello pipe\n",
        "echoed: {events:?}"
    );
    ensure!(events.exit_code()? == 0, "exit code {events:?}");
    Ok(())
}
conformance_test!(piped_stdin_is_written);

/// A write sent right behind its start, without waiting for the start's answer, finds the
/// process (what `ProcessSpec::stdin` relies on).
async fn write_pipelined_behind_start(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let mut params = start_params("pw", &["head", "-n1"]);
    params["pipeStdin"] = json!(true);
    let (start, write) = (client.next_request_id(), client.next_request_id());
    let chunk = encode(b"right behind\n");
    client
        .send_burst(&[
            json!({"id": start, "method": "process/start", "params": params}),
            json!({"id": write, "method": "process/write",
                   "params": {"processId": "pw", "chunk": chunk, "writeId": "w1"}}),
        ])
        .await?;
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    let started = client.wait_response(&json!(start), deadline).await?;
    ensure!(started.is_ok(), "start: {started:?}");
    let written = client.wait_response(&json!(write), deadline).await?;
    let status = written.map_err(|e| anyhow::anyhow!("write failed: {e}"))?;
    ensure!(status["status"] == "accepted", "write status {status}");
    let events = client.events_until_closed("pw", EVENT_TIMEOUT).await?;
    ensure!(
        events.output("stdout")? == b"right behind\n",
        "echoed: {events:?}"
    );
    Ok(())
}
conformance_test!(write_pipelined_behind_start);

async fn write_id_deduplicated(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let mut params = start_params("dedup", &["head", "-n2"]);
    params["pipeStdin"] = json!(true);
    client.start(params).await?;
    for (bytes, write_id) in [
        (b"first\n", "w-1"),
        (b"first\n", "w-1"),
        (b"third\n", "w-3"),
    ] {
        let status = client.write("dedup", bytes, write_id).await?;
        ensure!(status == "accepted", "write {write_id}: status {status}");
    }
    let events = client.events_until_closed("dedup", EVENT_TIMEOUT).await?;
    let text = events.output_text("stdout")?;
    ensure!(
        text == "first\nthird\n",
        "a repeated writeId was written again: {text:?}"
    );
    Ok(())
}
conformance_test!(write_id_deduplicated);

async fn write_to_unknown_process(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let status = client.write("nobody", b"x", "w1").await?;
    ensure!(status == "unknownProcess", "write status {status}");
    Ok(())
}
conformance_test!(write_to_unknown_process);

async fn pty_size_and_echo(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let mut params = sh("pty", "stty size; read line; echo got:$line");
    params["tty"] = json!(true);
    client.start(params).await?;
    client
        .wait_output_containing("pty", "24 80", EVENT_TIMEOUT)
        .await?;
    let status = client.write("pty", b"typed\n", "w1").await?;
    ensure!(status == "accepted", "write status {status}");
    let events = client.events_until_closed("pty", EVENT_TIMEOUT).await?;
    for event in events.0.iter().filter(|e| e.is("output")) {
        ensure!(
            event.params["stream"] == "pty",
            "PTY output on {}",
            event.params["stream"]
        );
    }
    let text = events.output_text("pty")?;
    ensure!(
        text.contains("got:typed"),
        "PTY output after the write: {text:?}"
    );
    ensure!(events.exit_code()? == 0, "exit code {events:?}");
    Ok(())
}
conformance_test!(pty_size_and_echo);

async fn pty_interrupt(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let script = "trap 'echo got-int; exit 7' INT; echo ready; while :; do sleep 0.05; done";
    let mut params = sh("ptyint", script);
    params["tty"] = json!(true);
    client.start(params).await?;
    client
        .wait_output_containing("ptyint", "ready", EVENT_TIMEOUT)
        .await?;
    client
        .call(
            "process/signal",
            json!({"processId": "ptyint", "signal": "interrupt"}),
        )
        .await?;
    let events = client.events_until_closed("ptyint", EVENT_TIMEOUT).await?;
    let text = events.output_text("pty")?;
    ensure!(text.contains("got-int"), "trap output {text:?}");
    ensure!(events.exit_code()? == 7, "exit code {events:?}");
    Ok(())
}
conformance_test!(pty_interrupt);

/// Writes sent back to back without waiting for their responses reach stdin in wire order.
async fn pipelined_writes_keep_wire_order(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let mut params = start_params("ordered", &["head", "-n200"]);
    params["pipeStdin"] = json!(true);
    client.start(params).await?;
    let lines: Vec<String> = (0..200).map(|n| format!("{n:03}\n")).collect();
    let burst: Vec<_> = lines
        .iter()
        .enumerate()
        .map(|(n, line)| {
            let id = 10_000 + n as i64;
            json!({"id": id, "method": "process/write", "params": {"processId": "ordered",
                "chunk": encode(line.as_bytes()), "writeId": format!("w{n}")}})
        })
        .collect();
    client.send_burst(&burst).await?;
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    for n in 0..burst.len() {
        let result = client
            .wait_response(&json!(10_000 + n as i64), deadline)
            .await?;
        ensure!(result.is_ok(), "write {n}: {result:?}");
    }
    let events = client.events_until_closed("ordered", EVENT_TIMEOUT).await?;
    let text = events.output_text("stdout")?;
    ensure!(
        text == lines.concat(),
        "stdin arrived out of order: {text:?}"
    );
    Ok(())
}
conformance_test!(pipelined_writes_keep_wire_order);
