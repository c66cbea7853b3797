//! Atomic replacement of a file's content: write a temporary sibling, then rename it over
//! the target, so a concurrent reader sees the old content or the new, never a mix.
//!
//! The temporary file lives in the target's directory (a rename never crosses file
//! systems), is named `.<name>.rexec-<uuid>.tmp`, takes the permissions of the file it
//! replaces, and is removed if the replacement is abandoned (an error, a dropped handle, a
//! connection that went away). Atomic for readers, not a durability guarantee: nothing is
//! fsynced.

use super::nofollow::errno;
use rustix::io::Errno;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// A temporary sibling being filled; dropped without [`Replacement::commit`] it is removed.
pub struct Replacement {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Replacement {
    /// Start replacing `path` (through symbolic links when `follow_symlinks`). Fails at once
    /// if the target is a directory or its parent does not exist.
    pub fn start(path: &Path, follow_symlinks: bool) -> io::Result<(Replacement, File)> {
        let target = if follow_symlinks {
            resolve_links(path)?
        } else {
            path.to_path_buf()
        };
        if std::fs::metadata(&target).is_ok_and(|m| m.is_dir()) {
            return Err(errno(Errno::ISDIR));
        }
        let name = target
            .file_name()
            .ok_or_else(|| errno(Errno::ISDIR))?
            .to_string_lossy()
            .into_owned();
        let temp = target.with_file_name(format!(
            ".{name}.rexec-{}.tmp",
            uuid::Uuid::new_v4().simple()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        let replacement = Replacement {
            temp,
            target,
            committed: false,
        };
        Ok((replacement, file))
    }

    /// Give the new file the old one's permissions and rename it into place.
    pub fn commit(self) -> io::Result<()> {
        if let Ok(old) = std::fs::metadata(&self.target) {
            std::fs::set_permissions(&self.temp, old.permissions())?;
        }
        self.rename_into_place()
    }

    fn rename_into_place(mut self) -> io::Result<()> {
        std::fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Write `bytes` as the new content of `path`, atomically.
pub fn replace_with(path: &Path, follow_symlinks: bool, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let (replacement, mut file) = Replacement::start(path, follow_symlinks)?;
    file.write_all(bytes)?;
    drop(file);
    replacement.commit()
}

/// Copy the opened file `input` over `path`, atomically (the kernel copies, via
/// `copy_file_range` where it can).
pub fn replace_with_copy(path: &Path, mut input: File) -> io::Result<()> {
    let (replacement, mut file) = Replacement::start(path, false)?;
    io::copy(&mut input, &mut file)?;
    drop(file);
    // The copy carries the source's permissions, like `std::fs::copy`.
    std::fs::set_permissions(&replacement.temp, input.metadata()?.permissions())?;
    replacement.rename_into_place()
}

/// Follow symbolic links in the last component (up to 40, like the kernel), so a write
/// through a link replaces the file it points to instead of the link.
fn resolve_links(path: &Path) -> io::Result<PathBuf> {
    let mut path = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                let link = std::fs::read_link(&path)?;
                path = match path.parent() {
                    Some(parent) => parent.join(link),
                    None => link,
                };
            }
            _ => return Ok(path),
        }
    }
    Err(errno(Errno::LOOP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_through_links_keeps_mode_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("rexec-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let target = dir.join("f");
        std::fs::write(&target, b"old").expect("write");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::os::unix::fs::symlink("f", dir.join("link")).expect("symlink");

        replace_with(&dir.join("link"), true, b"new").expect("replace");
        assert_eq!(std::fs::read(&target).expect("read"), b"new");
        assert!(
            std::fs::symlink_metadata(dir.join("link"))
                .expect("link")
                .is_symlink()
        );
        let mode = std::fs::metadata(&target)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let (abandoned, _file) = Replacement::start(&target, true).expect("start");
        drop(abandoned);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let err = replace_with(&dir, true, b"x").expect_err("directory");
        assert_eq!(err.raw_os_error(), Some(Errno::ISDIR.raw_os_error()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
