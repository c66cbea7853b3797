//! `fs/walk` as a blocking function: a bounded breadth-first listing of a tree.
//!
//! Semantics as codex 0.169 answers them: the root itself is not listed; each directory's
//! entries come sorted by name; `maxDepth` 0 lists the root's children only. Every entry
//! that can be stat'ed (through links) counts toward `maxEntries`, listed or not — a FIFO
//! or an unfollowed link counts, a dangling link does not; only files and directories are
//! listed, links only when they lead to a directory and `followDirectorySymlinks` is set,
//! and every real directory is descended into once.
//! `truncated` is set when an entry or a directory was left out because of a limit (not
//! because of `maxDepth` or hidden-directory pruning). A subdirectory that cannot be read
//! becomes an entry of `errors`; the root failing fails the request.

use rexec_protocol::PathUri;
use rexec_protocol::fs::{WalkEntry, WalkEntryKind, WalkError, WalkOptions, WalkResult};
use std::collections::{HashSet, VecDeque};
use std::fs::DirEntry;
use std::io;
use std::path::{Path, PathBuf};

pub fn walk(root: &Path, options: &WalkOptions) -> io::Result<WalkResult> {
    if options.max_directories == 0 || options.max_entries == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "filesystem walk limits must be greater than zero",
        ));
    }
    let follow = options.follow_directory_symlinks;
    let mut walk = Walk {
        options,
        result: WalkResult {
            entries: Vec::new(),
            errors: Vec::new(),
            truncated: false,
        },
        queue: VecDeque::new(),
        visited: HashSet::new(),
        entries_seen: 0,
    };
    let root_metadata = if follow {
        std::fs::metadata(root)?
    } else {
        std::fs::symlink_metadata(root)?
    };
    if !root_metadata.is_dir() {
        return Ok(walk.result);
    }
    if follow {
        walk.visited.insert(std::fs::canonicalize(root)?);
    }
    walk.queue.push_back((root.to_path_buf(), 0));
    let mut directories_read = 0;
    while let Some((directory, depth)) = walk.queue.pop_front() {
        if directories_read >= options.max_directories {
            walk.result.truncated = true;
            break;
        }
        directories_read += 1;
        let entries = match sorted_entries(&directory) {
            Ok(entries) => entries,
            Err(err) if directory == root => return Err(err),
            Err(err) => {
                walk.result.errors.push(WalkError {
                    path: PathUri::from_path(directory),
                    message: err.to_string(),
                });
                continue;
            }
        };
        if !walk.list(&directory, depth, entries) {
            walk.result.truncated = true;
            break;
        }
    }
    Ok(walk.result)
}

struct Walk<'a> {
    options: &'a WalkOptions,
    result: WalkResult,
    /// Directories still to read, with their depth (the root is 0).
    queue: VecDeque<(PathBuf, u64)>,
    /// Canonical paths of directories queued, when following links.
    visited: HashSet<PathBuf>,
    entries_seen: u64,
}

impl Walk<'_> {
    /// List one directory's entries; false when `maxEntries` cut it short.
    fn list(&mut self, directory: &Path, depth: u64, entries: Vec<DirEntry>) -> bool {
        let follow = self.options.follow_directory_symlinks;
        for entry in entries {
            let path = directory.join(entry.file_name());
            let (Ok(file_type), Ok(target)) = (entry.file_type(), std::fs::metadata(&path)) else {
                continue;
            };
            if self.entries_seen >= self.options.max_entries {
                return false;
            }
            self.entries_seen += 1;
            let is_directory = if file_type.is_symlink() {
                if !follow || !target.is_dir() {
                    continue;
                }
                true
            } else if file_type.is_dir() || file_type.is_file() {
                file_type.is_dir()
            } else {
                continue;
            };
            let kind = if is_directory {
                WalkEntryKind::Directory
            } else {
                WalkEntryKind::File
            };
            self.result.entries.push(WalkEntry {
                path: PathUri::from_path(path.clone()),
                kind,
            });
            if is_directory && self.should_descend(&path, &entry, depth) {
                self.queue.push_back((path, depth + 1));
            }
        }
        true
    }

    fn should_descend(&mut self, path: &Path, entry: &DirEntry, depth: u64) -> bool {
        if depth >= self.options.max_depth {
            return false;
        }
        if self.options.prune_hidden_directories
            && entry.file_name().as_encoded_bytes().starts_with(b".")
        {
            return false;
        }
        if !self.options.follow_directory_symlinks {
            return true;
        }
        std::fs::canonicalize(path).is_ok_and(|real| self.visited.insert(real))
    }
}

fn sorted_entries(directory: &Path) -> io::Result<Vec<DirEntry>> {
    let mut entries = std::fs::read_dir(directory)?.collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(DirEntry::file_name);
    Ok(entries)
}
