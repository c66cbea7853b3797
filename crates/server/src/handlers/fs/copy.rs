//! `fs/copy` as a blocking function: a regular file, a symbolic link (copied as a link) or,
//! with `recursive`, a directory tree. Each file lands atomically (see `atomic`); other
//! kinds of entries inside a tree (FIFOs, sockets, devices) are skipped, also when one
//! replaces a file between the listing and the open.

use super::atomic;
use super::open::open_regular_file;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

pub fn copy(source: &Path, destination: &Path, recursive: bool) -> io::Result<()> {
    let file_type = std::fs::symlink_metadata(source)?.file_type();
    if file_type.is_dir() {
        if !recursive {
            return Err(invalid(
                "fs/copy requires recursive: true when sourcePath is a directory",
            ));
        }
        if is_same_or_inside(source, destination)? {
            return Err(invalid(
                "fs/copy cannot copy a directory to itself or one of its descendants",
            ));
        }
        return copy_tree(source, destination);
    }
    if file_type.is_symlink() {
        return copy_link(source, destination);
    }
    match open_source(source)? {
        Some(input) => atomic::replace_with_copy(destination, input),
        None => Err(invalid(
            "fs/copy only supports regular files, directories, and symlinks",
        )),
    }
}

/// The source opened if it is a regular file (judged on the opened file, see `open`; a
/// link swapped in after the type was read is refused with `ELOOP`).
fn open_source(source: &Path) -> io::Result<Option<File>> {
    Ok(open_regular_file(source, false)?.map(|(file, _)| file))
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn copy_tree(source: &Path, destination: &Path) -> io::Result<()> {
    std::fs::create_dir_all(destination)?;
    for entry in std::fs::read_dir(source)? {
        let entry = entry?;
        let from = entry.path();
        let to = destination.join(entry.file_name());
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            copy_tree(&from, &to)?;
        } else if file_type.is_file() {
            if let Some(input) = open_source(&from)? {
                atomic::replace_with_copy(&to, input)?;
            }
        } else if file_type.is_symlink() {
            copy_link(&from, &to)?;
        }
    }
    Ok(())
}

fn copy_link(source: &Path, destination: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(std::fs::read_link(source)?, destination)
}

/// Whether `destination` (which may not exist yet) is `source` or lies inside it, after
/// resolving symbolic links in both.
fn is_same_or_inside(source: &Path, destination: &Path) -> io::Result<bool> {
    let source = std::fs::canonicalize(source)?;
    Ok(resolve_existing_prefix(destination)?.starts_with(&source))
}

/// Canonicalize the longest existing prefix of `path` and append the rest unchanged.
fn resolve_existing_prefix(path: &Path) -> io::Result<PathBuf> {
    let mut missing = Vec::new();
    let mut existing = path;
    while !existing.exists() {
        let (Some(name), Some(parent)) = (existing.file_name(), existing.parent()) else {
            break;
        };
        missing.push(name.to_os_string());
        existing = parent;
    }
    let mut resolved = std::fs::canonicalize(existing)?;
    resolved.extend(missing.iter().rev());
    Ok(resolved)
}
