//! The `fs/*` path methods: every success path and error code, with upstream texts.
//!
//! Each scenario works in its own scratch directory. Where codex 0.169.0 differs from the
//! protocol digest or from rexec, the scenario says so and checks what each really does:
//! 0.169.0 has no `fs/getMetadataBatch` (-32601) and parses a `sandbox` strictly (it wants
//! `windowsSandboxLevel`).

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::path::Path;

use crate::client::Client;
use crate::harness::{Ctx, b64, check_error, encode};
use crate::server::{ScratchDir, Target};

/// The `file:` URI of a scratch path (scratch paths need no escaping).
pub fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// A scratch directory and an initialized client.
pub async fn setup(ctx: &Ctx) -> Result<(crate::server::Server, Client, ScratchDir)> {
    let (server, client) = ctx.server_and_client().await?;
    let dir = ScratchDir::new(&format!("fs-{}", ctx.target.name()))?;
    Ok((server, client, dir))
}

async fn read_file(client: &mut Client, path: &Path) -> Result<Vec<u8>> {
    let result = client
        .call("fs/readFile", json!({"path": uri(path)}))
        .await?;
    b64(&result["dataBase64"])
}

async fn write_read_metadata_remove(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let file = dir.path().join("hello.txt");
    let result = client
        .call(
            "fs/writeFile",
            json!({"path": uri(&file), "dataBase64": encode(b"hello\n")}),
        )
        .await?;
    ensure!(result == json!({}), "writeFile result {result}");
    ensure!(read_file(&mut client, &file).await? == b"hello\n");
    ensure!(std::fs::read(&file)? == b"hello\n", "on disk");

    // Overwrite: the new content replaces the old entirely.
    client
        .call(
            "fs/writeFile",
            json!({"path": uri(&file), "dataBase64": encode(b"hi")}),
        )
        .await?;
    ensure!(read_file(&mut client, &file).await? == b"hi");

    let metadata = client
        .call("fs/getMetadata", json!({"path": uri(&file)}))
        .await?;
    ensure!(
        metadata["isFile"] == true
            && metadata["isDirectory"] == false
            && metadata["isSymlink"] == false
            && metadata["size"] == 2
            && metadata["modifiedAtMs"].as_i64().is_some_and(|ms| ms > 0)
            && metadata["createdAtMs"].is_i64(),
        "metadata {metadata}"
    );
    let listing = client
        .call("fs/readDirectory", json!({"path": uri(dir.path())}))
        .await?;
    ensure!(
        listing["entries"]
            == json!([{"fileName": "hello.txt", "isDirectory": false, "isFile": true}]),
        "listing {listing} (no temporary file may be left behind)"
    );
    let canonical = client
        .call(
            "fs/canonicalize",
            json!({"path": format!("{}/./sub/../hello.txt", uri(dir.path()))}),
        )
        .await?;
    let expected = uri(&std::fs::canonicalize(&file)?);
    ensure!(canonical["path"] == expected, "canonicalize {canonical}");

    let removed = client
        .call("fs/remove", json!({"path": uri(&file)}))
        .await?;
    ensure!(removed == json!({}), "remove result {removed}");
    let error = client
        .expect_error("fs/getMetadata", json!({"path": uri(&file)}))
        .await?;
    check_error(&error, -32004, "No such file or directory")
}
conformance_test!(write_read_metadata_remove);

async fn path_errors(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let missing = dir.path().join("missing");
    let file = dir.path().join("f");
    std::fs::write(&file, b"x")?;
    let cases: Vec<(&str, Value, i64, &str)> = vec![
        (
            "fs/readFile",
            json!({"path": uri(&missing)}),
            -32004,
            "No such file or directory (os error 2)",
        ),
        (
            "fs/readFile",
            json!({"path": uri(dir.path())}),
            -32600,
            "is not a file",
        ),
        (
            "fs/readFile",
            json!({"path": "relative/path"}),
            -32602,
            "invalid URI",
        ),
        ("fs/readFile", json!({}), -32602, "missing field `path`"),
        (
            "fs/writeFile",
            json!({"path": uri(&file), "dataBase64": "***"}),
            -32600,
            "fs/writeFile requires valid base64 dataBase64: Invalid symbol 42, offset 0.",
        ),
        (
            "fs/writeFile",
            json!({"path": uri(&missing.join("f")), "dataBase64": ""}),
            -32004,
            "No such file or directory",
        ),
        (
            "fs/writeFile",
            json!({"path": uri(dir.path()), "dataBase64": ""}),
            -32603,
            "Is a directory (os error 21)",
        ),
        (
            "fs/readDirectory",
            json!({"path": uri(&file)}),
            -32603,
            "Not a directory (os error 20)",
        ),
        (
            "fs/readDirectory",
            json!({"path": uri(&missing)}),
            -32004,
            "No such file or directory",
        ),
        (
            "fs/canonicalize",
            json!({"path": uri(&missing)}),
            -32004,
            "No such file or directory",
        ),
        (
            "fs/getMetadata",
            json!({"path": uri(&missing)}),
            -32004,
            "No such file or directory",
        ),
        (
            "fs/frobnicate",
            json!({}),
            -32601,
            "exec-server stub does not implement `fs/frobnicate` yet",
        ),
    ];
    for (method, params, code, needle) in cases {
        let error = client.expect_error(method, params.clone()).await?;
        check_error(&error, code, needle).with_context(|| format!("{method} {params}"))?;
    }
    ensure!(
        std::fs::read(&file)? == b"x",
        "a refused write changed the file"
    );
    Ok(())
}
conformance_test!(path_errors);

async fn read_file_too_large(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let big = dir.path().join("big");
    // Sparse: 512 MiB + 1 byte costs no disk.
    std::fs::File::create(&big)?.set_len(512 * 1024 * 1024 + 1)?;
    let error = client
        .expect_error("fs/readFile", json!({"path": uri(&big)}))
        .await?;
    check_error(
        &error,
        -32600,
        "file is too large to read: limit is 536870912 bytes",
    )
}
conformance_test!(read_file_too_large);

async fn create_directory(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let deep = dir.path().join("a/b/c");
    client
        .call("fs/createDirectory", json!({"path": uri(&deep)}))
        .await
        .context("recursive is the default")?;
    ensure!(deep.is_dir());
    client
        .call("fs/createDirectory", json!({"path": uri(&deep)}))
        .await
        .context("an existing directory is fine when recursive")?;
    let error = client
        .expect_error(
            "fs/createDirectory",
            json!({"path": uri(&deep), "recursive": false}),
        )
        .await?;
    check_error(&error, -32603, "File exists (os error 17)")?;
    let error = client
        .expect_error(
            "fs/createDirectory",
            json!({"path": uri(&dir.path().join("x/y")), "recursive": false}),
        )
        .await?;
    check_error(&error, -32004, "No such file or directory")?;
    std::fs::write(dir.path().join("file"), b"")?;
    let error = client
        .expect_error(
            "fs/createDirectory",
            json!({"path": uri(&dir.path().join("file"))}),
        )
        .await?;
    check_error(&error, -32603, "File exists")
}
conformance_test!(create_directory);

async fn symlink_metadata(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let target = dir.path().join("target");
    std::fs::write(&target, b"12345")?;
    std::os::unix::fs::symlink("target", dir.path().join("link"))?;
    std::os::unix::fs::symlink("nowhere", dir.path().join("dangling"))?;
    let link = uri(&dir.path().join("link"));
    let metadata = client.call("fs/getMetadata", json!({"path": link})).await?;
    ensure!(
        metadata["isSymlink"] == true && metadata["isFile"] == true && metadata["size"] == 5,
        "a link describes its target and says it is a link: {metadata}"
    );
    let error = client
        .expect_error(
            "fs/getMetadata",
            json!({"path": link, "followSymlinks": false}),
        )
        .await?;
    check_error(&error, -32600, "path contains a symbolic link")?;
    let plain = client
        .call(
            "fs/getMetadata",
            json!({"path": uri(&target), "followSymlinks": false}),
        )
        .await?;
    ensure!(
        plain["isSymlink"] == false && plain["isFile"] == true,
        "{plain}"
    );
    let error = client
        .expect_error(
            "fs/getMetadata",
            json!({"path": uri(&dir.path().join("dangling"))}),
        )
        .await?;
    check_error(&error, -32004, "No such file or directory")?;
    // readDirectory follows links and leaves out the dangling one.
    let listing = client
        .call("fs/readDirectory", json!({"path": uri(dir.path())}))
        .await?;
    let mut names: Vec<String> = listing["entries"]
        .as_array()
        .context("entries")?
        .iter()
        .map(|e| format!("{}:{}", e["fileName"], e["isFile"]))
        .collect();
    names.sort();
    ensure!(
        names == ["\"link\":true", "\"target\":true"],
        "listing {listing}"
    );
    // Writing through a link replaces the target's content, not the link.
    client
        .call(
            "fs/writeFile",
            json!({"path": link, "dataBase64": encode(b"new")}),
        )
        .await?;
    ensure!(std::fs::read(&target)? == b"new");
    ensure!(std::fs::symlink_metadata(dir.path().join("link"))?.is_symlink());
    Ok(())
}
conformance_test!(symlink_metadata);

async fn remove(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let missing = uri(&dir.path().join("missing"));
    client
        .call("fs/remove", json!({"path": missing}))
        .await
        .context("force is the default: a missing path is fine")?;
    let error = client
        .expect_error("fs/remove", json!({"path": missing, "force": false}))
        .await?;
    check_error(&error, -32004, "No such file or directory")?;
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub"))?;
    std::fs::write(tree.join("sub/f"), b"x")?;
    let error = client
        .expect_error("fs/remove", json!({"path": uri(&tree), "recursive": false}))
        .await?;
    check_error(&error, -32603, "Directory not empty (os error 39)")?;
    ensure!(
        tree.join("sub/f").exists(),
        "a refused remove removed something"
    );
    let kept = dir.path().join("kept");
    std::fs::write(&kept, b"x")?;
    std::os::unix::fs::symlink(&kept, dir.path().join("link"))?;
    client
        .call("fs/remove", json!({"path": uri(&dir.path().join("link"))}))
        .await?;
    ensure!(kept.exists(), "removing a link removed its target");
    client
        .call("fs/remove", json!({"path": uri(&tree)}))
        .await
        .context("recursive is the default")?;
    ensure!(!tree.exists());
    Ok(())
}
conformance_test!(remove);

async fn copy(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub"))?;
    std::fs::write(src.join("a"), b"alpha")?;
    std::fs::write(src.join("sub/b"), b"beta")?;
    std::os::unix::fs::symlink("a", src.join("link"))?;
    let dst = dir.path().join("dst");
    let params = |recursive: Option<bool>, to: &Path| {
        let mut params = json!({"sourcePath": uri(&src), "destinationPath": uri(to)});
        if let Some(recursive) = recursive {
            params["recursive"] = json!(recursive);
        }
        params
    };
    let error = client.expect_error("fs/copy", params(None, &dst)).await?;
    check_error(&error, -32602, "missing field `recursive`")?;
    let error = client
        .expect_error("fs/copy", params(Some(false), &dst))
        .await?;
    check_error(
        &error,
        -32600,
        "fs/copy requires recursive: true when sourcePath is a directory",
    )?;
    ensure!(!dst.exists(), "a refused copy created the destination");
    let error = client
        .expect_error("fs/copy", params(Some(true), &src.join("sub/inner")))
        .await?;
    check_error(
        &error,
        -32600,
        "fs/copy cannot copy a directory to itself or one of its descendants",
    )?;
    client.call("fs/copy", params(Some(true), &dst)).await?;
    ensure!(std::fs::read(dst.join("a"))? == b"alpha");
    ensure!(std::fs::read(dst.join("sub/b"))? == b"beta");
    ensure!(
        std::fs::read_link(dst.join("link"))? == Path::new("a"),
        "link copied as a link"
    );

    let single = dir.path().join("single");
    client
        .call(
            "fs/copy",
            json!({"sourcePath": uri(&src.join("a")), "destinationPath": uri(&single), "recursive": false}),
        )
        .await?;
    ensure!(std::fs::read(&single)? == b"alpha");
    let error = client
        .expect_error(
            "fs/copy",
            json!({"sourcePath": uri(&dir.path().join("missing")), "destinationPath": uri(&single), "recursive": false}),
        )
        .await?;
    check_error(&error, -32004, "No such file or directory")
}
conformance_test!(copy);

/// `followSymlinks: false` on the path methods that take it.
async fn no_follow(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    std::fs::create_dir(dir.path().join("real"))?;
    std::fs::write(dir.path().join("real/f"), b"x")?;
    std::os::unix::fs::symlink("real", dir.path().join("dirlink"))?;
    let through = uri(&dir.path().join("dirlink/f"));
    let error = client
        .expect_error(
            "fs/readFile",
            json!({"path": through, "followSymlinks": false}),
        )
        .await?;
    check_error(&error, -32603, "Not a directory (os error 20)")?;
    let error = client
        .expect_error(
            "fs/remove",
            json!({"path": uri(&dir.path().join("real/f")), "followSymlinks": false}),
        )
        .await?;
    check_error(&error, -32603, "recursive no-follow removal is unsupported")?;
    client
        .call(
            "fs/remove",
            json!({"path": uri(&dir.path().join("real/f")), "followSymlinks": false, "recursive": false}),
        )
        .await?;
    let data = client.call("fs/readFile", json!({"path": through})).await;
    ensure!(data.is_err(), "the file was removed: {data:?}");
    Ok(())
}
conformance_test!(no_follow);

async fn metadata_batch(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let file = dir.path().join("f");
    std::fs::write(&file, b"abc")?;
    let params = json!({"paths": [uri(&file), uri(&dir.path().join("missing"))]});
    if ctx.target == Target::Codex {
        // codex 0.169.0 predates fs/getMetadataBatch.
        let error = client.expect_error("fs/getMetadataBatch", params).await?;
        return check_error(&error, -32601, "fs/getMetadataBatch");
    }
    let result = client.call("fs/getMetadataBatch", params).await?;
    let results = result["results"].as_array().context("results")?;
    ensure!(results.len() == 2, "{result}");
    ensure!(results[0]["metadata"]["size"] == 3, "{result}");
    ensure!(results[1]["error"]["code"] == -32004, "{result}");
    let too_many: Vec<String> = (0..257).map(|_| uri(&file)).collect();
    let error = client
        .expect_error("fs/getMetadataBatch", json!({"paths": too_many}))
        .await?;
    check_error(&error, -32600, "metadata batch must not exceed 256 paths")
}
conformance_test!(metadata_batch);

/// A sandbox that needs no platform sandbox runs directly on both servers.
async fn sandbox_disabled_runs_directly(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let file = dir.path().join("f");
    let disabled = json!({"permissions": {"type": "disabled"}, "windowsSandboxLevel": "disabled"});
    client
        .call(
            "fs/writeFile",
            json!({"path": uri(&file), "dataBase64": encode(b"ok"), "sandbox": disabled}),
        )
        .await?;
    ensure!(std::fs::read(&file)? == b"ok");
    Ok(())
}
conformance_test!(sandbox_disabled_runs_directly);

/// A sandbox refusal: rexec answers -32600 (PermissionDenied, upstream's mapping); codex
/// 0.169 runs the request in a bubblewrap view of the disk, so a refused write is EROFS
/// (-32603) and a path outside the readable trees simply does not exist (-32004).
fn check_refused(ctx: &Ctx, error: &crate::client::RpcError) -> Result<()> {
    match ctx.target {
        Target::Rexec => {
            let denied = ["Permission denied", "not permitted"];
            ensure!(
                error.code == -32600 && denied.iter().any(|d| error.message.contains(d)),
                "not a refusal: {error}"
            );
            Ok(())
        }
        Target::Codex => {
            ensure!(
                [-32600, -32603, -32004].contains(&error.code),
                "not a refusal: {error}"
            );
            Ok(())
        }
    }
}

/// Read `read` trees, write `write` trees (managed profile, network restricted).
fn fs_sandbox(read: &[&Path], write: &[&Path]) -> Value {
    let entries: Vec<Value> = read
        .iter()
        .map(|p| (p, "read"))
        .chain(write.iter().map(|p| (p, "write")))
        .map(|(p, access)| json!({"path": {"type": "path", "path": uri(p)}, "access": access}))
        .collect();
    json!({
        "permissions": {"type": "managed", "network": "restricted",
            "file_system": {"type": "restricted", "entries": entries}},
        "windowsSandboxLevel": "disabled"})
}

/// Sandboxed fs requests: reads and writes the policy allows succeed; writes outside it,
/// through a symlink or `..` out of the workspace, and into `.git` are refused with
/// -32600 and leave the disk untouched.
async fn sandboxed_requests(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let (ws, outside) = (dir.path().join("ws"), dir.path().join("outside"));
    std::fs::create_dir_all(ws.join(".git"))?;
    std::fs::create_dir_all(&outside)?;
    std::fs::write(outside.join("secret"), "s")?;
    std::os::unix::fs::symlink(&outside, ws.join("link"))?;
    let sandbox = fs_sandbox(&[Path::new("/")], &[&ws]);

    let read = client
        .call(
            "fs/readFile",
            json!({"path": uri(&outside.join("secret")), "sandbox": sandbox}),
        )
        .await?;
    ensure!(b64(&read["dataBase64"])? == b"s", "sandboxed read: {read}");
    client
        .call(
            "fs/writeFile",
            json!({"path": uri(&ws.join("ok")), "dataBase64": encode(b"ok"), "sandbox": sandbox}),
        )
        .await?;
    ensure!(
        std::fs::read(ws.join("ok"))? == b"ok",
        "sandboxed write inside"
    );

    let escapes = [
        ("outside", outside.join("new")),
        ("symlink", ws.join("link/new")),
        ("dotdot", ws.join("../outside/new")),
        ("git", ws.join(".git/config")),
    ];
    for (name, path) in escapes {
        let params = json!({"path": uri(&path), "dataBase64": encode(b"no"), "sandbox": sandbox});
        let error = client.expect_error("fs/writeFile", params).await?;
        check_refused(&ctx, &error).with_context(|| format!("{name}: {}", path.display()))?;
    }
    ensure!(
        !outside.join("new").exists(),
        "a refused write reached outside/"
    );
    ensure!(
        !ws.join(".git/config").exists(),
        "a refused write reached .git"
    );
    let params = json!({"path": uri(&outside), "recursive": true, "sandbox": sandbox});
    let error = client.expect_error("fs/remove", params).await?;
    check_refused(&ctx, &error)?;
    ensure!(
        outside.join("secret").exists(),
        "a refused remove deleted files"
    );
    Ok(())
}
conformance_test!(sandboxed_requests);

/// A policy that reads only the workspace refuses reads outside it.
async fn sandboxed_read_refused(ctx: Ctx) -> Result<()> {
    let (_server, mut client, dir) = setup(&ctx).await?;
    let (ws, outside) = (dir.path().join("ws"), dir.path().join("outside"));
    std::fs::create_dir_all(&ws)?;
    std::fs::create_dir_all(&outside)?;
    std::fs::write(ws.join("mine"), "m")?;
    std::fs::write(outside.join("secret"), "s")?;
    let sandbox = fs_sandbox(&[&ws], &[]);
    let mine = client
        .call(
            "fs/readFile",
            json!({"path": uri(&ws.join("mine")), "sandbox": sandbox}),
        )
        .await?;
    ensure!(b64(&mine["dataBase64"])? == b"m", "read inside: {mine}");
    let params = json!({"path": uri(&outside.join("secret")), "sandbox": sandbox});
    let error = client.expect_error("fs/readFile", params).await?;
    check_refused(&ctx, &error)?;
    let bad = json!({"permissions": {"type": "sideways"}, "windowsSandboxLevel": "disabled"});
    let params = json!({"path": uri(&ws.join("mine")), "sandbox": bad});
    let error = client.expect_error("fs/readFile", params).await?;
    check_error(&error, -32602, "")
}
conformance_test!(sandboxed_read_refused);
