//! `followSymlinks: false`: refuse a path that goes through a symbolic link, with the
//! errors codex 0.169 gives — a link in a parent component is "Not a directory", a link as
//! the last component is reported by the caller (`final_link` chooses how).
//!
//! This checks each component with `lstat` before the operation; it narrows, but does not
//! close, the window in which another process could swap a component for a link.

use rustix::io::Errno;
use std::io;
use std::path::Path;

/// What a symbolic link as the last component means for the operation.
#[derive(Clone, Copy)]
pub enum FinalLink {
    /// Opening it with `O_NOFOLLOW` would fail: "Symbolic link loop" (-32603).
    Loop,
    /// Refused as invalid input: "path contains a symbolic link" (-32600).
    Refuse,
}

pub fn refuse_symlinks(path: &Path, final_link: FinalLink) -> io::Result<()> {
    let mut prefix = std::path::PathBuf::new();
    let mut components = path.components().peekable();
    while let Some(component) = components.next() {
        prefix.push(component);
        let is_last = components.peek().is_none();
        let metadata = match std::fs::symlink_metadata(&prefix) {
            Ok(metadata) => metadata,
            // The operation itself reports the missing component.
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err),
        };
        if !metadata.file_type().is_symlink() {
            continue;
        }
        return Err(match (is_last, final_link) {
            (false, _) => errno(Errno::NOTDIR),
            (true, FinalLink::Loop) => errno(Errno::LOOP),
            (true, FinalLink::Refuse) => {
                io::Error::new(io::ErrorKind::InvalidInput, "path contains a symbolic link")
            }
        });
    }
    Ok(())
}

pub fn errno(errno: Errno) -> io::Error {
    io::Error::from_raw_os_error(errno.raw_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_refused_by_position() {
        let dir = std::env::temp_dir().join(format!("rexec-nofollow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real")).expect("mkdir");
        std::fs::write(dir.join("real/f"), b"x").expect("write");
        std::os::unix::fs::symlink("real", dir.join("link")).expect("symlink");
        std::os::unix::fs::symlink("f", dir.join("real/flink")).expect("symlink");

        refuse_symlinks(&dir.join("real/f"), FinalLink::Refuse).expect("no link");
        refuse_symlinks(&dir.join("real/missing/x"), FinalLink::Refuse).expect("missing");
        let parent = refuse_symlinks(&dir.join("link/f"), FinalLink::Refuse).expect_err("parent");
        assert_eq!(parent.raw_os_error(), Some(Errno::NOTDIR.raw_os_error()));
        let last = refuse_symlinks(&dir.join("real/flink"), FinalLink::Loop).expect_err("loop");
        assert_eq!(last.raw_os_error(), Some(Errno::LOOP.raw_os_error()));
        let refused = refuse_symlinks(&dir.join("real/flink"), FinalLink::Refuse).expect_err("x");
        assert_eq!(refused.kind(), io::ErrorKind::InvalidInput);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
