//! The path operations of `fs/*` as plain blocking functions (the dispatcher runs them off
//! the runtime, with a deadline): read, write, create a directory, remove, canonicalize. Errors are
//! `io::Error`s whose kind picks the JSON-RPC code (see `super::io_error`).

use super::atomic;
use super::nofollow::{FinalLink, refuse_symlinks};
use super::open::open_regular_file;
use rexec_protocol::fs::MAX_READ_FILE_BYTES;
use std::fs::File;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

/// The whole file, if it is a regular file of at most [`MAX_READ_FILE_BYTES`].
pub fn read_file(path: &Path, follow_symlinks: bool) -> io::Result<Vec<u8>> {
    if !follow_symlinks {
        refuse_symlinks(path, FinalLink::Loop)?;
    }
    let (file, size) = open_regular(path, follow_symlinks)?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(MAX_READ_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_READ_FILE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Open a regular file of at most [`MAX_READ_FILE_BYTES`] for reading, with its size;
/// anything else is refused without blocking (see `open`).
pub fn open_regular(path: &Path, follow_symlinks: bool) -> io::Result<(File, u64)> {
    let Some((file, metadata)) = open_regular_file(path, follow_symlinks)? else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path `{}` is not a file", path.display()),
        ));
    };
    if metadata.len() > MAX_READ_FILE_BYTES {
        return Err(too_large());
    }
    Ok((file, metadata.len()))
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("file is too large to read: limit is {MAX_READ_FILE_BYTES} bytes"),
    )
}

/// Replace the file's content atomically (see `atomic`).
pub fn write_file(path: &Path, bytes: &[u8], follow_symlinks: bool) -> io::Result<()> {
    if !follow_symlinks {
        refuse_symlinks(path, FinalLink::Loop)?;
    }
    atomic::replace_with(path, follow_symlinks, bytes)
}

pub fn create_directory(path: &Path, recursive: bool, follow_symlinks: bool) -> io::Result<()> {
    if !follow_symlinks {
        refuse_symlinks(path, FinalLink::Loop)?;
    }
    if recursive {
        std::fs::create_dir_all(path)
    } else {
        std::fs::create_dir(path)
    }
}

/// Remove a file, a symbolic link (never its target) or a directory.
pub fn remove(path: &Path, recursive: bool, force: bool, follow_symlinks: bool) -> io::Result<()> {
    if !follow_symlinks {
        if recursive {
            return Err(io::Error::other(
                "recursive no-follow removal is unsupported",
            ));
        }
        refuse_symlinks(path, FinalLink::Refuse)?;
    }
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == io::ErrorKind::NotFound && force => return Ok(()),
        Err(err) => return Err(err),
    };
    if !metadata.is_dir() {
        std::fs::remove_file(path)
    } else if recursive {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_dir(path)
    }
}

pub fn canonicalize(path: &Path) -> io::Result<PathBuf> {
    std::fs::canonicalize(path)
}
