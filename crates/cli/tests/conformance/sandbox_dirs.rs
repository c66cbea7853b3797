//! Scratch directories for sandbox tests: a workspace and an "outside" sibling that the
//! policy under test does not cover, removed on drop. Shared by the conformance suite's
//! `sandbox` scenarios and the `sandbox` test binary.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Dirs {
    pub base: PathBuf,
    pub ws: PathBuf,
    pub outside: PathBuf,
}

impl Dirs {
    /// Under `parent`.
    pub fn new_in(parent: &Path) -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let base = parent.join(format!(
            "rexec-sandbox-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let (ws, outside) = (base.join("ws"), base.join("outside"));
        std::fs::create_dir_all(&ws)?;
        std::fs::create_dir_all(&outside)?;
        Ok(Self { base, ws, outside })
    }

    /// Under a directory `workspace-write` does not open (it opens /tmp and $TMPDIR): the
    /// target directory unless the checkout itself lives there, else /var/tmp or $HOME.
    pub fn outside_tmp() -> Result<Self> {
        let temp_roots: Vec<PathBuf> = [
            Some(PathBuf::from("/tmp")),
            std::env::var_os("TMPDIR").map(PathBuf::from),
        ]
        .into_iter()
        .flatten()
        .filter_map(|root| root.canonicalize().ok())
        .collect();
        let candidates = [
            Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR"))),
            Some(PathBuf::from("/var/tmp")),
            std::env::var_os("HOME").map(PathBuf::from),
        ];
        let parent = candidates
            .into_iter()
            .flatten()
            .filter_map(|dir| dir.canonicalize().ok())
            .find(|dir| !temp_roots.iter().any(|root| dir.starts_with(root)))
            .context("no writable directory outside /tmp and $TMPDIR for the sandbox tests")?;
        Self::new_in(&parent)
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
