//! `fs/walk`: breadth-first order with sorted siblings, depth, directory and entry limits,
//! the truncated flag, hidden-directory pruning, directory symlinks, and the errors.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::path::Path;

use crate::client::Client;
use crate::fs::{setup, uri};
use crate::harness::{Ctx, check_error};

/// root/{.hidden/{x}, a.txt, d/{b.txt, e/{g}}, z/}, a link to `d`, a FIFO (never listed)
/// and a dangling link (not even counted).
fn make_tree(root: &Path) -> Result<()> {
    std::fs::create_dir_all(root.join(".hidden"))?;
    std::fs::write(root.join(".hidden/x"), b"")?;
    std::fs::write(root.join("a.txt"), b"")?;
    std::fs::create_dir_all(root.join("d/e"))?;
    std::fs::write(root.join("d/b.txt"), b"")?;
    std::fs::write(root.join("d/e/g"), b"")?;
    std::fs::create_dir(root.join("z"))?;
    std::os::unix::fs::symlink("d", root.join("dlink"))?;
    let fifo = root.join("fifo");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status()?;
    ensure!(status.success(), "mkfifo failed");
    std::os::unix::fs::symlink("nowhere", root.join("dangling"))?;
    Ok(())
}

async fn walk(client: &mut Client, root: &Path, options: Value) -> Result<(Vec<String>, bool)> {
    let result = client
        .call("fs/walk", json!({"path": uri(root), "options": options}))
        .await?;
    ensure!(result["errors"] == json!([]), "errors: {result}");
    let prefix = format!("{}/", uri(root));
    let entries = result["entries"]
        .as_array()
        .context("entries")?
        .iter()
        .map(|e| {
            let path = e["path"].as_str().unwrap_or_default();
            let kind = if e["kind"] == "directory" { "/" } else { "" };
            format!("{}{kind}", path.strip_prefix(&prefix).unwrap_or(path))
        })
        .collect();
    let truncated = result["truncated"].as_bool().context("truncated")?;
    Ok((entries, truncated))
}

fn options(depth: u64, directories: u64, entries: u64, follow: bool) -> Value {
    json!({"maxDepth": depth, "maxDirectories": directories, "maxEntries": entries,
        "followDirectorySymlinks": follow})
}

async fn walk_tree(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let root = dir.path().join("root");
    make_tree(&root)?;
    let all = [
        ".hidden/",
        "a.txt",
        "d/",
        "z/",
        ".hidden/x",
        "d/b.txt",
        "d/e/",
        "d/e/g",
    ];
    let (entries, truncated) = walk(&mut client, &root, options(10, 10, 100, false)).await?;
    ensure!(
        entries == all && !truncated,
        "full walk (links and FIFOs are not listed without following): {entries:?} {truncated}"
    );
    let (entries, truncated) = walk(&mut client, &root, options(0, 10, 100, false)).await?;
    ensure!(
        entries == all[..4] && !truncated,
        "depth 0 lists the root's children, and a depth cut is not truncation: {entries:?}"
    );
    let (entries, truncated) = walk(&mut client, &root, options(10, 2, 100, false)).await?;
    ensure!(
        entries == all[..5] && truncated,
        "two directories read (root, .hidden): {entries:?} {truncated}"
    );
    let (entries, truncated) = walk(&mut client, &root, options(10, 4, 100, false)).await?;
    ensure!(
        entries == all[..7] && truncated,
        "d/e left unread: {entries:?} {truncated}"
    );
    // Every entry that can be stat'ed counts, listed or not: the unfollowed dlink is the
    // 4th, the FIFO the 5th, z the 6th.
    let (entries, truncated) = walk(&mut client, &root, options(10, 10, 5, false)).await?;
    ensure!(
        entries == [".hidden/", "a.txt", "d/"] && truncated,
        "five entries considered: {entries:?} {truncated}"
    );
    let (entries, truncated) = walk(&mut client, &root, options(10, 10, 9, false)).await?;
    ensure!(
        entries == all[..7] && truncated,
        "nine entries considered: {entries:?} {truncated}"
    );
    let (entries, truncated) = walk(&mut client, &root, options(10, 10, 10, false)).await?;
    ensure!(
        entries == all && !truncated,
        "exactly at the entry limit is not truncation: {entries:?} {truncated}"
    );
    let mut pruned = options(10, 10, 100, false);
    pruned["pruneHiddenDirectories"] = json!(true);
    let (entries, _) = walk(&mut client, &root, pruned).await?;
    ensure!(
        !entries.contains(&".hidden/x".to_owned()) && entries.contains(&".hidden/".to_owned()),
        "hidden directories are listed, not entered: {entries:?}"
    );
    let (entries, truncated) = walk(&mut client, &root, options(10, 10, 100, true)).await?;
    ensure!(
        entries.contains(&"dlink/".to_owned())
            && !entries.iter().any(|e| e.starts_with("dlink/b"))
            && !truncated,
        "a followed link is listed as a directory, and d is entered once: {entries:?}"
    );
    Ok(())
}
conformance_test!(walk_tree);

async fn walk_edges(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let root = dir.path().join("root");
    make_tree(&root)?;
    let (entries, truncated) =
        walk(&mut client, &root.join("a.txt"), options(3, 3, 3, false)).await?;
    ensure!(entries.is_empty() && !truncated, "a file root: {entries:?}");
    let (entries, _) = walk(&mut client, &root.join("dlink"), options(3, 3, 9, false)).await?;
    ensure!(entries.is_empty(), "an unfollowed link root: {entries:?}");
    let (entries, _) = walk(&mut client, &root.join("dlink"), options(3, 9, 9, true)).await?;
    ensure!(entries.len() == 3, "a followed link root: {entries:?}");
    for (zero, opts) in [
        ("directories", options(1, 0, 1, false)),
        ("entries", options(1, 1, 0, false)),
    ] {
        let error = client
            .expect_error("fs/walk", json!({"path": uri(&root), "options": opts}))
            .await?;
        check_error(
            &error,
            -32600,
            "filesystem walk limits must be greater than zero",
        )
        .with_context(|| format!("zero {zero}"))?;
    }
    let error = client
        .expect_error(
            "fs/walk",
            json!({"path": uri(&root.join("missing")), "options": options(1, 1, 1, false)}),
        )
        .await?;
    check_error(&error, -32004, "No such file or directory")?;
    let error = client
        .expect_error(
            "fs/walk",
            json!({"path": uri(&root), "options": {"maxDepth": 1, "maxDirectories": 1, "maxEntries": 1}}),
        )
        .await?;
    check_error(&error, -32602, "missing field `followDirectorySymlinks`")?;
    let error = client
        .expect_error("fs/walk", json!({"path": uri(&root)}))
        .await?;
    check_error(&error, -32602, "missing field `options`")
}
conformance_test!(walk_edges);
