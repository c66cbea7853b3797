//! `fs/getMetadata`, `fs/getMetadataBatch` and `fs/readDirectory` as blocking functions.

use super::nofollow::{FinalLink, refuse_symlinks};
use rexec_protocol::fs::{DirectoryEntry, Metadata};
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Metadata of `path`; through a symbolic link the flags and times describe the target and
/// `isSymlink` is set. With `follow_symlinks` false a link anywhere in the path is refused.
pub fn get_metadata(path: &Path, follow_symlinks: bool) -> io::Result<Metadata> {
    if !follow_symlinks {
        refuse_symlinks(path, FinalLink::Refuse)?;
    }
    let metadata = std::fs::metadata(path)?;
    let is_symlink = std::fs::symlink_metadata(path)?.file_type().is_symlink();
    Ok(Metadata {
        is_directory: metadata.is_dir(),
        is_file: metadata.is_file(),
        is_symlink,
        size: metadata.len(),
        created_at_ms: metadata.created().map_or(0, unix_ms),
        modified_at_ms: metadata.modified().map_or(0, unix_ms),
    })
}

fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// The directory's entries, sorted by name. An entry whose target cannot be read (a
/// dangling link, a file removed meanwhile) is left out, as upstream does.
pub fn read_directory(path: &Path) -> io::Result<Vec<DirectoryEntry>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let Ok(metadata) = std::fs::metadata(entry.path()) else {
            continue;
        };
        entries.push(DirectoryEntry {
            file_name: entry.file_name().to_string_lossy().into_owned(),
            is_directory: metadata.is_dir(),
            is_file: metadata.is_file(),
        });
    }
    entries.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    Ok(entries)
}
