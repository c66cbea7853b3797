//! Moving one file's bytes between here and the server, with the progress bar.
//!
//! Small files (at most [`WHOLE_FILE_BYTES`]) take one `fs/readFile` / `fs/writeFile`.
//! Larger ones stream in 1 MiB blocks with [`WINDOW`] requests in flight: downloads through
//! `fs/open` + `fs/readBlock`, uploads through `fs/open` mode `replace` + `fs/writeBlock`,
//! the new content taking effect at `fs/close` (atomically on rexec). A failed upload is
//! never closed, so the remote file is not replaced by a partial one. Downloads land in a
//! temporary sibling renamed into place at the end.

use anyhow::{Context, bail, ensure};
use futures_util::StreamExt as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rexec_client::{Client, FileMode};
use std::io::{IsTerminal as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const BLOCK_BYTES: u64 = 1024 * 1024;
/// Block requests in flight per file.
pub const WINDOW: usize = 8;
pub const WHOLE_FILE_BYTES: u64 = BLOCK_BYTES;

/// A byte-count progress bar on stderr, hidden when stderr is not a terminal.
pub fn progress(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

pub async fn upload(
    client: &Client,
    local: &Path,
    remote: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let file =
        std::fs::File::open(local).with_context(|| format!("cannot open {}", local.display()))?;
    let size = file.metadata()?.len();
    if size <= WHOLE_FILE_BYTES {
        let bytes = tokio::fs::read(local)
            .await
            .with_context(|| format!("cannot read {}", local.display()))?;
        client
            .write_file(remote, &bytes)
            .await
            .with_context(|| format!("writing {}", remote.display()))?;
        bar.inc(size);
        return Ok(());
    }
    let target = client
        .open(remote, FileMode::Replace)
        .await
        .with_context(|| format!("opening {} for writing", remote.display()))?;
    let file = Arc::new(file);
    let mut blocks = futures_util::stream::iter(0..size.div_ceil(BLOCK_BYTES))
        .map(|index| {
            let (file, target) = (Arc::clone(&file), target.clone());
            async move {
                let offset = index * BLOCK_BYTES;
                let len = BLOCK_BYTES.min(size - offset);
                let bytes = tokio::task::spawn_blocking(move || {
                    let mut bytes = vec![0; len as usize];
                    file.read_exact_at(&mut bytes, offset).map(|()| bytes)
                })
                .await??;
                target.write_block(offset, bytes).await?;
                anyhow::Ok(len)
            }
        })
        .buffer_unordered(WINDOW);
    while let Some(written) = blocks.next().await {
        bar.inc(written.with_context(|| format!("writing {}", remote.display()))?);
    }
    target
        .close()
        .await
        .with_context(|| format!("committing {}", remote.display()))
}

pub async fn download(
    client: &Client,
    remote: &Path,
    size: u64,
    local: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let mut partial = Partial::create(local)?;
    if size <= WHOLE_FILE_BYTES {
        let bytes = client
            .read_file(remote)
            .await
            .with_context(|| format!("reading {}", remote.display()))?;
        partial.file.write_all(&bytes)?;
        bar.inc(bytes.len() as u64);
        return partial.commit();
    }
    let source = client
        .open(remote, FileMode::Read)
        .await
        .with_context(|| format!("opening {}", remote.display()))?;
    let mut blocks = futures_util::stream::iter(0..size.div_ceil(BLOCK_BYTES))
        .map(|index| {
            let source = source.clone();
            async move {
                let offset = index * BLOCK_BYTES;
                let expected = BLOCK_BYTES.min(size - offset);
                let (bytes, _eof) = source.read_block(offset, BLOCK_BYTES as usize).await?;
                anyhow::Ok((bytes, expected))
            }
        })
        .buffered(WINDOW);
    while let Some(block) = blocks.next().await {
        let (bytes, expected) = block.with_context(|| format!("reading {}", remote.display()))?;
        ensure!(
            bytes.len() as u64 == expected,
            "{} changed while it was copied",
            remote.display()
        );
        partial.file.write_all(&bytes)?;
        bar.inc(expected);
    }
    // A rexec read handle closed itself at end of file unless the size is a whole number
    // of blocks; closing an unknown handle succeeds.
    source.close().await?;
    partial.commit()
}

/// A local file being downloaded, under a temporary name removed unless committed.
struct Partial {
    file: std::io::BufWriter<std::fs::File>,
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Partial {
    fn create(target: &Path) -> anyhow::Result<Partial> {
        let name = target
            .file_name()
            .with_context(|| format!("{} names no file", target.display()))?;
        let temp = target.with_file_name(format!(
            ".{}.rexec-{}.partial",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = std::fs::File::create(&temp)
            .with_context(|| format!("cannot create {}", temp.display()))?;
        Ok(Partial {
            file: std::io::BufWriter::with_capacity(BLOCK_BYTES as usize, file),
            temp,
            target: target.to_path_buf(),
            committed: false,
        })
    }

    fn commit(mut self) -> anyhow::Result<()> {
        self.file.flush()?;
        if std::fs::metadata(&self.target).is_ok_and(|m| m.is_dir()) {
            bail!("{} is a directory", self.target.display());
        }
        std::fs::rename(&self.temp, &self.target)
            .with_context(|| format!("cannot write {}", self.target.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}
