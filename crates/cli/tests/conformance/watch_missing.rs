//! `fs/watchMissing` and `fs/missingChanged`: what fires, once; ids (only a higher id
//! replaces the connection's one watch); what is refused; and that a watch's inotify
//! instance goes with its connection.
//!
//! That a notification did *not* come is checked against a later one that must: a
//! connection's notifications arrive in order, so a missing one would have come first.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

use crate::client::Client;
use crate::fs::{setup, uri};
use crate::harness::{Ctx, check_error};

async fn watch(client: &mut Client, watch_id: u64, missing: &[&Path]) -> Result<bool> {
    let missing: Vec<String> = missing.iter().map(|p| uri(p)).collect();
    let result = client
        .call(
            "fs/watchMissing",
            json!({"watchId": watch_id, "missing": missing}),
        )
        .await?;
    result["watching"]
        .as_bool()
        .with_context(|| format!("{result}"))
}

/// The next `fs/missingChanged`, which must come within seconds.
async fn changed(client: &mut Client) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let notification = client
        .next_notification(deadline)
        .await?
        .context("no fs/missingChanged within 10 s")?;
    ensure!(
        notification["method"] == "fs/missingChanged",
        "{notification}"
    );
    Ok(notification["params"].clone())
}

async fn fires_once_when_a_path_appears(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let info = client.call("environment/info", json!({})).await?;
    ensure!(info["capabilities"]["fsWatchMissing"] == true, "{info}");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ensure!(
        watch(&mut client, 1, &[&a, &b]).await?,
        "two missing paths are watched"
    );
    std::fs::write(dir.path().join("unrelated"), b"x")?;
    std::fs::write(&b, b"x")?;
    ensure!(changed(&mut client).await? == json!({"watchId": 1}));
    // Fired: the watch is over, so `a` appearing says nothing; watch 2 is the barrier.
    std::fs::write(&a, b"x")?;
    let c = dir.path().join("c");
    ensure!(watch(&mut client, 2, &[&c]).await?);
    std::fs::create_dir(&c)?;
    ensure!(
        changed(&mut client).await? == json!({"watchId": 2}),
        "watch 1 fired once"
    );

    // A missing directory on the way to a path: its creation fires.
    let deep = dir.path().join("d1/d2/file");
    ensure!(watch(&mut client, 3, &[&deep]).await?);
    std::fs::create_dir(dir.path().join("d1"))?;
    ensure!(changed(&mut client).await? == json!({"watchId": 3}));
    Ok(())
}
conformance_test!(fires_once_when_a_path_appears);

async fn ids_and_refusals(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let path = |name: &str| dir.path().join(name);
    ensure!(watch(&mut client, 10, &[&path("x")]).await?);
    // The same id again, or a lower one: nothing changes, watch 10 stays.
    ensure!(
        !watch(&mut client, 10, &[&path("y")]).await?,
        "a repeated watchId"
    );
    ensure!(
        !watch(&mut client, 5, &[&path("y")]).await?,
        "a lower watchId"
    );
    std::fs::write(path("x"), b"")?;
    ensure!(changed(&mut client).await? == json!({"watchId": 10}));

    // A higher id replaces the watch, even when it then watches nothing.
    ensure!(watch(&mut client, 11, &[&path("p")]).await?);
    ensure!(
        !watch(&mut client, 12, &[dir.path()]).await?,
        "a path that exists"
    );
    ensure!(!watch(&mut client, 13, &[]).await?, "nothing to watch");
    ensure!(
        !watch(&mut client, 14, &[&path("x/under-a-file")]).await?,
        "below a file"
    );
    ensure!(
        !watch(
            &mut client,
            15,
            &[Path::new("/proc/rexec-conformance-none")]
        )
        .await?,
        "procfs"
    );
    std::fs::write(path("p"), b"")?;
    ensure!(watch(&mut client, 16, &[&path("q")]).await?);
    std::fs::write(path("q"), b"")?;
    ensure!(
        changed(&mut client).await? == json!({"watchId": 16}),
        "watch 11 was replaced"
    );

    let error = client
        .expect_error("fs/watchMissing", json!({"missing": []}))
        .await?;
    check_error(&error, -32602, "missing field `watchId`")?;
    let error = client
        .expect_error("fs/watchMissing", json!({"watchId": 20}))
        .await?;
    check_error(&error, -32602, "missing field `missing`")?;
    let error = client
        .expect_error(
            "fs/watchMissing",
            json!({"watchId": 21, "missing": [{"a": 1}]}),
        )
        .await?;
    check_error(&error, -32602, "invalid type: map, expected a")
}
conformance_test!(ids_and_refusals);

/// inotify instances the server holds (its `anon_inode:inotify` descriptors).
fn inotify_instances(pid: u32) -> Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        if target.to_string_lossy() == "anon_inode:inotify" {
            count += 1;
        }
    }
    Ok(count)
}

async fn instances_become(pid: u32, want: usize, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let have = inotify_instances(pid)?;
        if have == want {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{what}: {have} inotify instances, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A watch is an inotify instance of the server's; it goes with its connection.
async fn watches_end_with_the_connection(ctx: Ctx) -> Result<()> {
    let (server, mut client, dir) = setup(&ctx).await?;
    let pid = server.pid()?;
    let before = inotify_instances(pid)?;
    ensure!(watch(&mut client, 1, &[&dir.path().join("m")]).await?);
    instances_become(pid, before + 1, "while watching").await?;
    let mut other = Client::connect(&server).await?;
    other.initialize().await?;
    ensure!(
        watch(&mut other, 1, &[&dir.path().join("n")]).await?,
        "ids are per connection"
    );
    instances_become(pid, before + 2, "two connections watching").await?;
    client.close().await;
    other.close().await;
    instances_become(pid, before, "after the connections closed").await?;
    Ok(())
}
conformance_test!(watches_end_with_the_connection);
