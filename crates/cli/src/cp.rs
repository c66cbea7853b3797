//! `rexec cp SOURCE DESTINATION`: copy a file, or with `-r` a directory tree, to or from a
//! server. One operand is local, the other remote (see `remote_path`). Like `cp`, copying
//! into an existing directory puts the source inside it under its own name. Symbolic links
//! and special files inside a tree are skipped with a note.

use crate::connect::{TlsArgs, connect_to};
use crate::remote_path::{Operand, absolute, server_of};
use crate::transfer::{download, progress, upload};
use anyhow::{Context, bail, ensure};
use rexec_client::{Client, WalkEntryKind, WalkOptions};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct CpArgs {
    /// Server for remote operands written `:PATH` (e.g. ws://127.0.0.1:7000).
    #[arg(long, env = "REXEC_SERVER")]
    pub server: Option<String>,
    /// File holding the bearer token the server requires (`rexec serve --token-file`).
    #[arg(long, env = "REXEC_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Copy directories and everything in them.
    #[arg(short, long)]
    pub recursive: bool,
    /// LOCAL, or ws://HOST:PORT:/PATH (or :PATH with --server).
    pub source: String,
    /// LOCAL, or ws://HOST:PORT:/PATH (or :PATH with --server).
    pub destination: String,
}

/// Most directories and entries a remote tree may have for `cp -r` (one `fs/walk`).
const MAX_TREE_DIRECTORIES: u64 = 1_000_000;
const MAX_TREE_ENTRIES: u64 = 10_000_000;

pub async fn run(args: CpArgs) -> anyhow::Result<i32> {
    let source = Operand::parse(&args.source)?;
    let destination = Operand::parse(&args.destination)?;
    match (source, destination) {
        (Operand::Local(local), Operand::Remote { server, path }) => {
            let client = client(&args, server.as_deref()).await?;
            let remote = absolute(&client, &path)?;
            send(&client, &local, &remote, args.recursive).await?;
        }
        (Operand::Remote { server, path }, Operand::Local(local)) => {
            let client = client(&args, server.as_deref()).await?;
            let remote = absolute(&client, &path)?;
            fetch(&client, &remote, &local, args.recursive).await?;
        }
        (Operand::Local(_), Operand::Local(_)) => {
            bail!("neither operand is remote; write one as ws://HOST:PORT:/PATH")
        }
        (Operand::Remote { .. }, Operand::Remote { .. }) => {
            bail!("both operands are remote; copy on the server with `rexec run -- cp`")
        }
    }
    Ok(0)
}

async fn client(args: &CpArgs, operand_server: Option<&str>) -> anyhow::Result<Client> {
    let server = server_of(operand_server, args.server.as_deref())?;
    connect_to(&server, args.token_file.as_deref(), &args.tls, "rexec-cp").await
}

/// `parent/name-of(source)` when `destination` is an existing directory.
fn into_directory(
    destination: &Path,
    is_directory: bool,
    source: &Path,
) -> anyhow::Result<PathBuf> {
    if !is_directory {
        return Ok(destination.to_path_buf());
    }
    let name = source
        .file_name()
        .with_context(|| format!("{} names no file or directory", source.display()))?;
    Ok(destination.join(name))
}

async fn send(client: &Client, local: &Path, remote: &Path, recursive: bool) -> anyhow::Result<()> {
    let metadata =
        std::fs::metadata(local).with_context(|| format!("cannot read {}", local.display()))?;
    let remote_is_dir = client.metadata(remote).await.is_ok_and(|m| m.is_directory);
    let target = into_directory(remote, remote_is_dir, local)?;
    if !metadata.is_dir() {
        let bar = progress(metadata.len(), &local.display().to_string());
        upload(client, local, &target, &bar).await?;
        bar.finish_and_clear();
        return Ok(());
    }
    ensure!(recursive, "{} is a directory (use -r)", local.display());
    let tree = local_tree(local)?;
    let total = tree.iter().map(|(_, size)| size.unwrap_or(0)).sum();
    let bar = progress(total, &local.display().to_string());
    client.create_directory(&target, true).await?;
    for (relative, size) in &tree {
        let remote_path = target.join(relative);
        match size {
            None => client.create_directory(&remote_path, true).await?,
            Some(_) => upload(client, &local.join(relative), &remote_path, &bar).await?,
        }
    }
    bar.finish_and_clear();
    Ok(())
}

/// Every directory (`None`) and regular file (its size) under `root`, parents first.
fn local_tree(root: &Path) -> anyhow::Result<Vec<(PathBuf, Option<u64>)>> {
    let mut tree = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let directory = root.join(&relative);
        let mut entries = std::fs::read_dir(&directory)
            .with_context(|| format!("cannot list {}", directory.display()))?
            .collect::<std::io::Result<Vec<_>>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = relative.join(entry.file_name());
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                tree.push((path.clone(), None));
                pending.push(path);
            } else if file_type.is_file() {
                tree.push((path, Some(entry.metadata()?.len())));
            } else {
                eprintln!(
                    "rexec: skipping {} (not a regular file)",
                    root.join(path).display()
                );
            }
        }
    }
    Ok(tree)
}

async fn fetch(
    client: &Client,
    remote: &Path,
    local: &Path,
    recursive: bool,
) -> anyhow::Result<()> {
    let metadata = client
        .metadata(remote)
        .await
        .with_context(|| format!("cannot read {}", remote.display()))?;
    let target = into_directory(local, local.is_dir(), remote)?;
    if !metadata.is_directory {
        let bar = progress(metadata.size, &remote.display().to_string());
        download(client, remote, metadata.size, &target, &bar).await?;
        bar.finish_and_clear();
        return Ok(());
    }
    ensure!(recursive, "{} is a directory (use -r)", remote.display());
    let options = WalkOptions {
        max_depth: MAX_TREE_DIRECTORIES,
        max_directories: MAX_TREE_DIRECTORIES,
        max_entries: MAX_TREE_ENTRIES,
        follow_directory_symlinks: false,
        prune_hidden_directories: false,
    };
    let walked = client.walk(remote, options).await?;
    ensure!(
        !walked.truncated,
        "{} has too many entries to copy",
        remote.display()
    );
    if let Some(error) = walked.errors.first() {
        bail!(
            "cannot list {}: {}",
            error.path.as_path().display(),
            error.message
        );
    }
    let mut files = Vec::new();
    std::fs::create_dir_all(&target)
        .with_context(|| format!("cannot create {}", target.display()))?;
    for entry in &walked.entries {
        let relative = entry.path.as_path().strip_prefix(remote).with_context(|| {
            format!(
                "the server listed {} outside {}",
                entry.path,
                remote.display()
            )
        })?;
        match entry.kind {
            WalkEntryKind::Directory => std::fs::create_dir_all(target.join(relative))?,
            WalkEntryKind::File => {
                let size = client.metadata(entry.path.as_path()).await?.size;
                files.push((relative.to_path_buf(), size));
            }
        }
    }
    let bar = progress(
        files.iter().map(|(_, size)| size).sum(),
        &remote.display().to_string(),
    );
    for (relative, size) in files {
        download(
            client,
            &remote.join(&relative),
            size,
            &target.join(&relative),
            &bar,
        )
        .await?;
    }
    bar.finish_and_clear();
    Ok(())
}
