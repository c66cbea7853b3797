//! Opening a file to read it, without ever blocking in `open` on something that is not a
//! regular file: every `fs/*` read (`fs/readFile`, `fs/open` mode `read`, `fs/copy`
//! sources) opens through here.
//!
//! The type is judged on the opened descriptor, so a path swapped for a FIFO (or a link to
//! a device) between a check and the open is still refused: the open uses `O_NONBLOCK`
//! (a FIFO with no writer opens at once instead of waiting for one), `O_NOCTTY` (a terminal
//! never becomes the server's) and, when links are not followed, `O_NOFOLLOW`; then
//! `fstat` decides, and `O_NONBLOCK` is cleared for the reads of a regular file. A path
//! that is visibly not a regular file is refused before the open, so a device is not even
//! opened (opening one can act: a tape rewinds, a watchdog arms). A regular file whose read
//! blocks (`/proc/kmsg`) is bounded by the request's deadline instead (see `limit`).

use rustix::fs::OFlags;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// `path` opened for reading with its metadata, or `None` if it is not a regular file.
/// With `follow_symlinks` false a link as the last component fails with `ELOOP`.
pub fn open_regular_file(
    path: &Path,
    follow_symlinks: bool,
) -> io::Result<Option<(File, Metadata)>> {
    let seen = if follow_symlinks {
        std::fs::metadata(path)?
    } else {
        std::fs::symlink_metadata(path)?
    };
    // Not following, a link as the last component is left to the open: `ELOOP`.
    let unfollowed_link = seen.is_symlink();
    if !seen.is_file() && !unfollowed_link {
        return Ok(None);
    }
    open_judged(path, follow_symlinks)
}

/// Open, then let the descriptor's type decide.
fn open_judged(path: &Path, follow_symlinks: bool) -> io::Result<Option<(File, Metadata)>> {
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if !follow_symlinks {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Ok(None);
    }
    let status = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, status - OFlags::NONBLOCK)?;
    Ok(Some((file, metadata)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rexec-open-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn a_fifo_without_a_writer_is_refused_without_blocking() {
        let dir = scratch("fifo");
        let fifo = dir.join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        std::os::unix::fs::symlink(&fifo, dir.join("link")).expect("symlink");
        assert!(open_regular_file(&fifo, true).expect("fifo").is_none());
        // Past the check before the open, as when the path is swapped after it; a blocking
        // open would never return, so the thread is given a deadline.
        let (done, outcome) = std::sync::mpsc::channel();
        let paths = (fifo.clone(), dir.join("link"));
        std::thread::spawn(move || {
            let fifo = open_judged(&paths.0, false).map(|o| o.is_none());
            let link = open_judged(&paths.1, true).map(|o| o.is_none());
            let _ = done.send((fifo.ok(), link.ok()));
        });
        let refused = outcome
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("opening a FIFO without a writer blocked");
        assert_eq!(refused, (Some(true), Some(true)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_regular_file_reads_blocking_and_links_obey_follow() {
        let dir = scratch("regular");
        let file = dir.join("f");
        std::fs::write(&file, b"content").expect("write");
        std::os::unix::fs::symlink("f", dir.join("link")).expect("symlink");

        let (mut opened, metadata) = open_regular_file(&dir.join("link"), true)
            .expect("open")
            .expect("regular");
        assert_eq!(metadata.len(), 7);
        let status = rustix::fs::fcntl_getfl(&opened).expect("getfl");
        assert!(!status.contains(OFlags::NONBLOCK), "{status:?}");
        let mut text = String::new();
        opened.read_to_string(&mut text).expect("read");
        assert_eq!(text, "content");

        let err = open_regular_file(&dir.join("link"), false).expect_err("nofollow");
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        assert!(open_regular_file(&dir, true).expect("dir").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
