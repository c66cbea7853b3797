//! `fs/open`, `fs/readBlock`, `fs/writeBlock`, `fs/close`: blocks, the handle rules and
//! limits (128 per connection, ids of at most 32 bytes, 1 MiB blocks), pipelining.
//!
//! Where codex 0.169.0 and rexec differ, each is checked for what it does: codex keeps a read
//! handle open after end of file (rexec closes it, as the protocol digest describes), and a
//! codex `replace` handle truncates the file at open while rexec replaces it atomically at
//! `fs/close` (a reader sees the old content until then).

use anyhow::{Context, Result, ensure};
use serde_json::json;

use crate::client::{Client, RPC_TIMEOUT};
use crate::fs::{setup, uri};
use crate::harness::{Ctx, b64, check_error, encode};
use crate::server::Target;
use tokio::time::Instant;

async fn read_block(
    client: &mut Client,
    id: &str,
    offset: u64,
    len: u64,
) -> Result<(Vec<u8>, bool)> {
    let result = client
        .call(
            "fs/readBlock",
            json!({"handleId": id, "offset": offset, "len": len}),
        )
        .await?;
    let eof = result["eof"].as_bool().context("eof")?;
    Ok((b64(&result["chunk"])?, eof))
}

async fn read_blocks(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let file = dir.path().join("data");
    std::fs::write(&file, b"hello world")?;
    let opened = client
        .call("fs/open", json!({"handleId": "h1", "path": uri(&file)}))
        .await?;
    ensure!(opened == json!({"handleId": "h1"}), "{opened}");
    ensure!(read_block(&mut client, "h1", 0, 5).await? == (b"hello".to_vec(), false));
    ensure!(read_block(&mut client, "h1", 6, 5).await? == (b"world".to_vec(), false));
    for len in [0, 1_048_577] {
        let error = client
            .expect_error(
                "fs/readBlock",
                json!({"handleId": "h1", "offset": 0, "len": len}),
            )
            .await?;
        check_error(
            &error,
            -32600,
            "file read block length must be between 1 and 1048576",
        )?;
    }
    ensure!(read_block(&mut client, "h1", 6, 100).await? == (b"world".to_vec(), true));
    let after_eof = client
        .request(
            "fs/readBlock",
            json!({"handleId": "h1", "offset": 0, "len": 5}),
        )
        .await?;
    match ctx.target {
        // rexec: a read handle closes itself at end of file.
        Target::Rexec => check_error(
            &after_eof.err().context("read after eof succeeded")?,
            -32004,
            "unknown file handle `h1`",
        )?,
        // codex 0.169.0 keeps it open until fs/close.
        Target::Codex => {
            ensure!(after_eof.is_ok(), "codex read after eof: {after_eof:?}");
            client.call("fs/close", json!({"handleId": "h1"})).await?;
        }
    }
    let closed = client.call("fs/close", json!({"handleId": "h1"})).await?;
    ensure!(
        closed == json!({}),
        "closing an unknown handle succeeds: {closed}"
    );

    client
        .call("fs/open", json!({"handleId": "h2", "path": uri(&file)}))
        .await?;
    client.call("fs/close", json!({"handleId": "h2"})).await?;
    let error = client
        .expect_error(
            "fs/readBlock",
            json!({"handleId": "h2", "offset": 0, "len": 5}),
        )
        .await?;
    check_error(&error, -32004, "unknown file handle `h2`")
}
conformance_test!(read_blocks);

async fn handle_errors(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let file = dir.path().join("data");
    std::fs::write(&file, b"x")?;
    let path = uri(&file);
    client
        .call("fs/open", json!({"handleId": "dup", "path": path}))
        .await?;
    let error = client
        .expect_error("fs/open", json!({"handleId": "dup", "path": path}))
        .await?;
    check_error(&error, -32600, "file handle `dup` already exists")?;
    let long = "x".repeat(33);
    let error = client
        .expect_error("fs/open", json!({"handleId": long, "path": path}))
        .await?;
    check_error(&error, -32600, "file handle ID must not exceed 32 bytes")?;
    let error = client
        .expect_error(
            "fs/open",
            json!({"handleId": "m", "path": uri(&dir.path().join("missing"))}),
        )
        .await?;
    check_error(&error, -32004, "No such file or directory")?;
    let error = client
        .expect_error("fs/open", json!({"handleId": "d", "path": uri(dir.path())}))
        .await?;
    check_error(&error, -32600, "is not a file")?;
    let error = client
        .expect_error(
            "fs/open",
            json!({"handleId": "w", "path": path, "mode": "write"}),
        )
        .await?;
    check_error(
        &error,
        -32602,
        "unknown variant `write`, expected `read` or `replace`",
    )?;
    let error = client
        .expect_error(
            "fs/readBlock",
            json!({"handleId": "nope", "offset": 0, "len": 1}),
        )
        .await?;
    check_error(&error, -32004, "unknown file handle `nope`")?;
    let error = client
        .expect_error(
            "fs/writeBlock",
            json!({"handleId": "dup", "offset": 0, "chunk": encode(b"y")}),
        )
        .await?;
    check_error(&error, -32603, "Bad file descriptor (os error 9)")?;
    ensure!(
        std::fs::read(&file)? == b"x",
        "a refused block write changed the file"
    );
    // A failed open leaves the id free.
    client
        .call("fs/open", json!({"handleId": "m", "path": path}))
        .await?;
    Ok(())
}
conformance_test!(handle_errors);

async fn handle_limit(ctx: Ctx) -> Result<()> {
    let (server, mut client, dir) = setup(&ctx).await?;
    let file = dir.path().join("data");
    std::fs::write(&file, b"x")?;
    for i in 0..128 {
        client
            .call(
                "fs/open",
                json!({"handleId": format!("h{i}"), "path": uri(&file)}),
            )
            .await
            .with_context(|| format!("handle {i}"))?;
    }
    let error = client
        .expect_error("fs/open", json!({"handleId": "h128", "path": uri(&file)}))
        .await?;
    check_error(
        &error,
        -32600,
        "at most 128 file handles may be open per connection",
    )?;
    client.call("fs/close", json!({"handleId": "h0"})).await?;
    client
        .call("fs/open", json!({"handleId": "h128", "path": uri(&file)}))
        .await
        .context("a closed handle frees its place")?;
    // The limit is per connection.
    let mut other = Client::connect(&server).await?;
    other.initialize().await?;
    other
        .call("fs/open", json!({"handleId": "h0", "path": uri(&file)}))
        .await
        .context("another connection has its own handles")?;
    Ok(())
}
conformance_test!(handle_limit);

async fn replace_handle(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let file = dir.path().join("out");
    std::fs::write(&file, b"old content")?;
    client
        .call(
            "fs/open",
            json!({"handleId": "w", "path": uri(&file), "mode": "replace"}),
        )
        .await?;
    for (offset, bytes) in [(6, &b"world"[..]), (0, &b"hello "[..])] {
        let result = client
            .call(
                "fs/writeBlock",
                json!({"handleId": "w", "offset": offset, "chunk": encode(bytes)}),
            )
            .await?;
        ensure!(result == json!({}), "{result}");
    }
    let before_close = std::fs::read(&file)?;
    match ctx.target {
        Target::Rexec => ensure!(before_close == b"old content", "atomic: {before_close:?}"),
        // codex 0.169.0 writes in place: the file is the new bytes so far.
        Target::Codex => ensure!(before_close == b"hello world", "codex: {before_close:?}"),
    }
    let error = client
        .expect_error(
            "fs/readBlock",
            json!({"handleId": "w", "offset": 0, "len": 4}),
        )
        .await?;
    check_error(&error, -32603, "Bad file descriptor (os error 9)")?;
    let error = client
        .expect_error(
            "fs/writeBlock",
            json!({"handleId": "w", "offset": 0, "chunk": ""}),
        )
        .await?;
    check_error(
        &error,
        -32600,
        "file write block length must be between 1 and 1048576",
    )?;
    client.call("fs/close", json!({"handleId": "w"})).await?;
    ensure!(std::fs::read(&file)? == b"hello world");
    let names: Vec<_> = std::fs::read_dir(dir.path())?.collect::<std::io::Result<_>>()?;
    ensure!(names.len() == 1, "temporary files left: {names:?}");
    let error = client
        .expect_error(
            "fs/open",
            json!({"handleId": "x", "path": uri(&dir.path().join("no/such")), "mode": "replace"}),
        )
        .await?;
    check_error(&error, -32004, "No such file or directory")?;
    let error = client
        .expect_error(
            "fs/open",
            json!({"handleId": "x", "path": uri(dir.path()), "mode": "replace"}),
        )
        .await?;
    check_error(&error, -32603, "Is a directory (os error 21)")
}
conformance_test!(replace_handle);

/// open, blocks and close sent in one burst are answered as if sent one by one.
async fn pipelined_blocks(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let file = dir.path().join("data");
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &content)?;
    let mut frames = vec![json!({"id": client.next_request_id(), "method": "fs/open",
        "params": {"handleId": "p", "path": uri(&file)}})];
    let mut block_ids = Vec::new();
    for block in 0..3u64 {
        let id = client.next_request_id();
        block_ids.push(id);
        frames.push(json!({"id": id, "method": "fs/readBlock",
            "params": {"handleId": "p", "offset": block * 1_048_576, "len": 1_048_576}}));
    }
    let close_id = client.next_request_id();
    frames.push(json!({"id": close_id, "method": "fs/close", "params": {"handleId": "p"}}));
    client.send_burst(&frames).await?;
    let deadline = Instant::now() + RPC_TIMEOUT;
    let mut received = Vec::new();
    for id in block_ids {
        let result = client
            .wait_response(&json!(id), deadline)
            .await?
            .map_err(|e| anyhow::anyhow!("readBlock {id}: {e}"))?;
        received.extend(b64(&result["chunk"])?);
    }
    ensure!(received == content, "pipelined blocks reassemble the file");
    let closed = client.wait_response(&json!(close_id), deadline).await?;
    ensure!(closed.is_ok(), "close: {closed:?}");
    Ok(())
}
conformance_test!(pipelined_blocks);
