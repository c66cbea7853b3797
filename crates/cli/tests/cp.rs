//! `rexec cp` and `rexec ls` end to end: the real binary against a real `rexec serve` on
//! loopback. A large generated file (200 MB) goes up and comes back byte for byte, then a
//! directory tree, then `ls`.

use anyhow::{Context, Result, ensure};
use rexec_testkit::server::{ScratchDir, Server, ServerOptions, Target};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};
use tokio::process::Command;

const DEADLINE: Duration = Duration::from_secs(120);

/// 200 MB (a second or two: dependencies are optimized even in test builds); set
/// `REXEC_CP_TEST_BYTES` to choose another size.
fn test_bytes() -> u64 {
    std::env::var("REXEC_CP_TEST_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000_000)
}

async fn rexec(args: &[&str]) -> Result<Output> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rexec"));
    command.args(args).kill_on_drop(true);
    let output = tokio::time::timeout(DEADLINE, command.output())
        .await
        .context("rexec did not finish in time")??;
    ensure!(
        output.status.success(),
        "rexec {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

/// `len` bytes of a xorshift stream: incompressible, reproducible, cheap to make.
fn generate(path: &Path, len: u64) -> Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(())
}

/// Streaming byte-for-byte comparison.
fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    let (mut a, mut b) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if a.metadata()?.len() != b.metadata()?.len() {
        return Ok(false);
    }
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(true);
        }
        b.read_exact(&mut y[..n])?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}

fn remote(server: &Server, path: &Path) -> String {
    format!("{}:{}", server.url, path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_round_trips_a_large_file() -> Result<()> {
    let server = Server::spawn(Target::Rexec, &ServerOptions::default()).await?;
    let scratch = ScratchDir::new("cp-file")?;
    let (original, uploaded, back) = (
        scratch.path().join("original"),
        scratch.path().join("uploaded"),
        scratch.path().join("back"),
    );
    let len = test_bytes();
    generate(&original, len)?;
    let started = Instant::now();
    rexec(&[
        "cp",
        &original.display().to_string(),
        &remote(&server, &uploaded),
    ])
    .await?;
    let up = started.elapsed();
    ensure!(same_bytes(&original, &uploaded)?, "uploaded bytes differ");
    let started = Instant::now();
    rexec(&[
        "cp",
        &remote(&server, &uploaded),
        &back.display().to_string(),
    ])
    .await?;
    let down = started.elapsed();
    ensure!(same_bytes(&original, &back)?, "downloaded bytes differ");
    eprintln!("rexec cp {len} bytes: up {up:?}, down {down:?}");
    let names: Vec<_> = std::fs::read_dir(scratch.path())?.collect::<std::io::Result<_>>()?;
    ensure!(names.len() == 3, "temporary files left behind: {names:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_round_trips_a_tree_and_ls_lists_it() -> Result<()> {
    let server = Server::spawn(Target::Rexec, &ServerOptions::default()).await?;
    let scratch = ScratchDir::new("cp-tree")?;
    let tree = scratch.path().join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper"))?;
    std::fs::create_dir_all(tree.join("empty"))?;
    std::fs::write(tree.join("a.txt"), b"alpha\n")?;
    std::fs::write(tree.join("sub/b.bin"), (0..=255u8).collect::<Vec<_>>())?;
    std::fs::write(tree.join("sub/deeper/empty-file"), b"")?;
    generate(&tree.join("sub/deeper/three-blocks"), 3 * 1024 * 1024 + 17)?;
    let remote_dir = scratch.path().join("remote");
    std::fs::create_dir(&remote_dir)?;

    // Into an existing directory: lands as remote/tree.
    rexec(&[
        "cp",
        "-r",
        &tree.display().to_string(),
        &remote(&server, &remote_dir),
    ])
    .await?;
    let back = scratch.path().join("back");
    rexec(&[
        "cp",
        "-r",
        &remote(&server, &remote_dir.join("tree")),
        &back.display().to_string(),
    ])
    .await?;
    for relative in [
        "a.txt",
        "sub/b.bin",
        "sub/deeper/empty-file",
        "sub/deeper/three-blocks",
    ] {
        ensure!(
            same_bytes(&tree.join(relative), &back.join(relative))?,
            "{relative} differs after the round trip"
        );
    }
    ensure!(
        back.join("empty").is_dir(),
        "empty directories are copied too"
    );

    let listing = rexec(&["ls", &remote(&server, &remote_dir.join("tree"))]).await?;
    ensure!(
        String::from_utf8_lossy(&listing.stdout) == "a.txt\nempty/\nsub/\n",
        "ls printed {:?}",
        String::from_utf8_lossy(&listing.stdout)
    );
    let refused = Command::new(env!("CARGO_BIN_EXE_rexec"))
        .args([
            "cp",
            &tree.display().to_string(),
            &remote(&server, &remote_dir),
        ])
        .output()
        .await?;
    ensure!(
        refused.status.code() == Some(255)
            && String::from_utf8_lossy(&refused.stderr).contains("is a directory (use -r)"),
        "a directory without -r: {refused:?}"
    );
    Ok(())
}
