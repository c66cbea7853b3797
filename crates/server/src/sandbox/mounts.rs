//! Read-only control directories inside writable trees (`.git`, `.codex`, a `gitdir:`),
//! applied by the helper in a mount namespace of its own.
//!
//! Landlock cannot take back a right beneath a tree it granted, so these paths are bind
//! mounted onto themselves read-only in a private mount namespace: writes there fail with
//! EROFS, for the child and everything it starts, and the server's view is untouched.
//! Root gets the namespace directly; anyone else first enters a user namespace that maps
//! only its own uid and gid (so files and permissions look the same). Landlock, applied
//! next, forbids the child to unmount them.

use rustix::fs::StatVfsMountFlags;
use rustix::mount::{MountFlags, MountPropagationFlags, mount_bind, mount_change, mount_remount};
use rustix::process::{getgid, getuid};
use rustix::thread::UnshareFlags;
use std::path::PathBuf;

pub fn protect(paths: &[PathBuf]) -> Result<(), String> {
    if paths.is_empty() {
        return Ok(());
    }
    enter_mount_namespace()?;
    mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(|err| format!("making mounts private: {err}"))?;
    for path in paths {
        read_only_bind(path).map_err(|err| format!("protecting {}: {err}", path.display()))?;
    }
    Ok(())
}

fn enter_mount_namespace() -> Result<(), String> {
    let (uid, gid) = (getuid(), getgid());
    let flags = if uid.is_root() {
        UnshareFlags::NEWNS
    } else {
        UnshareFlags::NEWUSER | UnshareFlags::NEWNS
    };
    // SAFETY: the helper is single-threaded and FILES is not among the flags.
    unsafe { rustix::thread::unshare_unsafe(flags) }
        .map_err(|err| format!("unshare({flags:?}): {err}"))?;
    if !uid.is_root() {
        let write = |file: &str, text: String| {
            std::fs::write(format!("/proc/self/{file}"), text)
                .map_err(|err| format!("writing /proc/self/{file}: {err}"))
        };
        write("setgroups", "deny".to_owned())?;
        write("uid_map", format!("{0} {0} 1", uid.as_raw()))?;
        write("gid_map", format!("{0} {0} 1", gid.as_raw()))?;
    }
    Ok(())
}

/// Bind `path` onto itself, then remount it read-only. A remount inside a user namespace
/// must keep the flags the outer mount locked (nosuid, nodev, noexec, atime), so they are
/// carried over.
fn read_only_bind(path: &PathBuf) -> rustix::io::Result<()> {
    mount_bind(path, path)?;
    let current = rustix::fs::statvfs(path)?.f_flag;
    let mut flags = MountFlags::BIND | MountFlags::RDONLY;
    for (st, ms) in [
        (StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (StatVfsMountFlags::NODEV, MountFlags::NODEV),
        (StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
        (StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
        (StatVfsMountFlags::NODIRATIME, MountFlags::NODIRATIME),
        (StatVfsMountFlags::RELATIME, MountFlags::RELATIME),
    ] {
        if current.contains(st) {
            flags |= ms;
        }
    }
    mount_remount(path, flags, "")
}
