//! `process/start` and `process/write` parameter checks: empty argv, missing `writeId`,
//! bad cwd, a program that does not exist, duplicate process ids (sequential, racing, and
//! after close while the closed process is still retained).

use anyhow::{Result, ensure};
use serde_json::json;
use tokio::time::Instant;

use crate::client::RPC_TIMEOUT;
use crate::harness::{Ctx, EVENT_TIMEOUT, check_error, encode, sh, start_params};

async fn empty_argv_rejected(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let error = client
        .expect_error("process/start", start_params("empty", &[]))
        .await?;
    check_error(&error, -32602, "argv must not be empty")?;
    client.ping().await
}
conformance_test!(empty_argv_rejected);

async fn missing_write_id_rejected(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let mut params = start_params("cat", &["cat"]);
    params["pipeStdin"] = json!(true);
    client.start(params).await?;
    let error = client
        .expect_error(
            "process/write",
            json!({"processId": "cat", "chunk": encode(b"x\n")}),
        )
        .await?;
    check_error(&error, -32602, "writeId")?;
    ensure!(client.terminate("cat").await?, "cat was not running");
    Ok(())
}
conformance_test!(missing_write_id_rejected);

async fn relative_cwd_rejected(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let mut params = start_params("rel", &["true"]);
    params["cwd"] = json!("relative/dir");
    let error = client.expect_error("process/start", params).await?;
    check_error(&error, -32602, "")?;
    client.ping().await
}
conformance_test!(relative_cwd_rejected);

async fn missing_cwd_fails_spawn(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let mut params = start_params("nocwd", &["true"]);
    params["cwd"] = json!("file:///nonexistent-rexec-conformance-dir");
    let error = client.expect_error("process/start", params).await?;
    check_error(&error, -32603, "No such file or directory")?;
    // The failed start leaves nothing behind: the id can be used.
    client.start(start_params("nocwd", &["true"])).await?;
    client.events_until_closed("nocwd", EVENT_TIMEOUT).await?;
    Ok(())
}
conformance_test!(missing_cwd_fails_spawn);

async fn missing_program_fails_spawn(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let params = start_params("ghost", &["/nonexistent/rexec-conformance-program"]);
    let error = client.expect_error("process/start", params).await?;
    check_error(&error, -32603, "No such file or directory")?;
    let params = start_params("ghost2", &["rexec-conformance-not-on-path"]);
    let error = client.expect_error("process/start", params).await?;
    check_error(&error, -32603, "No such file or directory")?;
    client.ping().await
}
conformance_test!(missing_program_fails_spawn);

async fn duplicate_process_id_rejected(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client.start(start_params("dup", &["sleep", "30"])).await?;
    let error = client
        .expect_error("process/start", start_params("dup", &["true"]))
        .await?;
    check_error(&error, -32600, "process dup already exists")?;
    ensure!(client.terminate("dup").await?, "dup was not running");
    let events = client.events_until_closed("dup", EVENT_TIMEOUT).await?;
    ensure!(
        events.exit_code()? == 137,
        "sleep was replaced or not killed: {events:?}"
    );
    Ok(())
}
conformance_test!(duplicate_process_id_rejected);

async fn racing_duplicate_starts(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    let (a, b) = (client.next_request_id(), client.next_request_id());
    client
        .send_burst(&[
            json!({"id": a, "method": "process/start", "params": sh("race", "echo a; sleep 30")}),
            json!({"id": b, "method": "process/start", "params": sh("race", "echo b; sleep 30")}),
        ])
        .await?;
    let deadline = Instant::now() + RPC_TIMEOUT;
    let first = client.wait_response(&json!(a), deadline).await?;
    let second = client.wait_response(&json!(b), deadline).await?;
    let (ok, err) = match (first, second) {
        (Ok(ok), Err(err)) | (Err(err), Ok(ok)) => (ok, err),
        (first, second) => anyhow::bail!("expected exactly one success: {first:?} / {second:?}"),
    };
    ensure!(ok["processId"] == "race", "start result {ok}");
    check_error(&err, -32600, "process race already exists")?;
    // Terminate only once the winner printed its line (else the kill can beat `echo`).
    let (printed, _) = client
        .wait_output_containing("race", "\n", EVENT_TIMEOUT)
        .await?;
    ensure!(client.terminate("race").await?, "race was not running");
    let events = client.events_until_closed("race", EVENT_TIMEOUT).await?;
    let text = printed + &events.output_text("stdout")?;
    ensure!(
        text == "a\n" || text == "b\n",
        "one process should have run, output {text:?}"
    );
    Ok(())
}
conformance_test!(racing_duplicate_starts);

async fn closed_id_taken_while_retained(ctx: Ctx) -> Result<()> {
    let (_server, mut client) = ctx.server_and_client().await?;
    client.start(start_params("done", &["true"])).await?;
    client.events_until_closed("done", EVENT_TIMEOUT).await?;
    // Default retention is 30 s: the closed process is still readable and its id taken.
    let read = client.read("done", Some(0), None, 0).await?;
    ensure!(
        read["closed"] == true && read["exitCode"] == 0,
        "read after close: {read}"
    );
    let error = client
        .expect_error("process/start", start_params("done", &["true"]))
        .await?;
    check_error(&error, -32600, "process done already exists")
}
conformance_test!(closed_id_taken_while_retained);
