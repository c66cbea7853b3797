//! cgroup v2 containment: one cgroup per process below a directory of the server's own
//! (`<server's cgroup>/rexec-<pid>/p<N>`), killed as a whole with `cgroup.kill`, and once
//! empty kept as a spare for a later process or removed (`rmdir`).
//!
//! The server never moves itself: its own cgroup keeps its processes and gets only child
//! directories without controllers, so the "no internal processes" rule of cgroup v2 is
//! never in play. A child is cloned straight into its cgroup (`CLONE_INTO_CGROUP`, see
//! [`super::clone_spawn`]), or, where the kernel cannot, joins it in a `pre_exec` hook (one
//! `write` of "0" to `cgroup.procs`); either way before it runs a single instruction of
//! its program, so nothing it forks can start outside.

use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

/// How often [`CgroupTree::settle`] looks at killed cgroups that are not empty yet.
const SETTLE_POLL: Duration = Duration::from_millis(5);
/// Emptied cgroups kept for reuse (a `mkdir` and an `rmdir` cost ~75 µs a spawn).
const SPARE_MAX: usize = 256;

/// The server's directory of per-process cgroups.
#[derive(Debug)]
pub struct CgroupTree {
    dir: PathBuf,
    next: AtomicU64,
    /// Killed cgroups whose members may still be exiting: removed when found empty.
    graveyard: std::sync::Mutex<Vec<PathBuf>>,
    /// Empty cgroups of finished processes, handed to the next ones.
    spare: std::sync::Mutex<Vec<PathBuf>>,
    /// Held (shared) while a leaf is made, (exclusive) while the tree is removed.
    shape: RwLock<()>,
}

impl CgroupTree {
    /// Create `rexec-<pid>` below the server's own cgroup v2, if there is one it may write
    /// and the kernel has `cgroup.kill` (5.14). The error says why not.
    pub fn create() -> Result<Self, String> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|err| format!("cannot read /proc/self/mountinfo: {err}"))?;
        let (root, mount) = cgroup2_mount(&mountinfo).ok_or("no cgroup2 file system is mounted")?;
        let membership = fs::read_to_string("/proc/self/cgroup")
            .map_err(|err| format!("cannot read /proc/self/cgroup: {err}"))?;
        let own = unified_path(&membership).ok_or("the server is in no cgroup v2")?;
        // A mount of a subtree (field 4 is its root) shows the server's path below it.
        let below_root = Path::new(own).strip_prefix(&root).map_err(|_| {
            format!(
                "the server's cgroup {own} is outside the mounted {}",
                root.display()
            )
        })?;
        let own_dir = mount.join(below_root);
        remove_stale(&own_dir);
        let dir = own_dir.join(format!("rexec-{}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(format!("cannot create {}: {err}", dir.display())),
        }
        if !dir.join("cgroup.kill").exists() {
            let _ = fs::remove_dir(&dir);
            return Err("the kernel has no cgroup.kill (Linux 5.14 or later)".to_owned());
        }
        Ok(Self {
            dir,
            next: AtomicU64::new(1),
            graveyard: std::sync::Mutex::default(),
            spare: std::sync::Mutex::default(),
            shape: RwLock::new(()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An empty cgroup for one process: a spare one, else a new one.
    pub fn create_leaf(&self) -> io::Result<Cgroup> {
        if let Some(dir) = crate::sync::lock(&self.spare).pop() {
            return Ok(Cgroup::new(dir));
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.join(format!("p{n}"));
        // The tree is the process's: another in-process server's shutdown removes it when
        // it is empty, but not while a leaf is being made (it takes `shape` to do so).
        let _making = self.shape.read().unwrap_or_else(PoisonError::into_inner);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => fs::create_dir_all(&dir)?,
            Err(err) => return Err(err),
        }
        Ok(Cgroup::new(dir))
    }

    /// Kill every member of `cgroup` and remember it, to be removed once they are gone;
    /// nothing when it was released. One turn with [`Self::release`]: a cgroup released
    /// (and perhaps handed to another process) between the kill and its burial would
    /// otherwise be removed from under its next owner.
    pub fn kill(&self, cgroup: &Cgroup) {
        let _turn = crate::sync::lock(&cgroup.turn);
        if cgroup.kill() {
            cgroup.buried.store(true, Ordering::Relaxed);
            crate::sync::lock(&self.graveyard).push(cgroup.dir.clone());
        }
    }

    /// Give up `cgroup` if it is empty: kept as a spare for a later process, or removed.
    /// False while members remain. Once released, `cgroup` kills nothing: an empty cgroup
    /// gains no member but by a spawn into it, and that is another process's.
    pub fn release(&self, cgroup: &Cgroup) -> bool {
        let _turn = crate::sync::lock(&cgroup.turn);
        if cgroup.released.load(Ordering::Relaxed) {
            return true;
        }
        // A buried cgroup's path is the graveyard's to remove; it is never reused.
        if cgroup.buried.load(Ordering::Relaxed) || !cgroup.is_empty() {
            return cgroup.remove();
        }
        cgroup.released.store(true, Ordering::Relaxed);
        let mut spare = crate::sync::lock(&self.spare);
        if spare.len() < SPARE_MAX {
            spare.push(cgroup.dir.clone());
            return true;
        }
        drop(spare);
        remove(&cgroup.dir)
    }

    /// Remove the buried cgroups that are empty by now.
    pub fn sweep(&self) {
        let mut graveyard = crate::sync::lock(&self.graveyard);
        graveyard.retain(|dir| !remove(dir));
    }

    /// Wait (up to `timeout`) until every buried cgroup is empty and removed, then remove
    /// the server's directory if nothing else is left in it.
    pub fn settle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.sweep();
            let left = crate::sync::lock(&self.graveyard).len();
            if left == 0 {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(left, "killed cgroups still not empty at shutdown");
                break;
            }
            std::thread::sleep(SETTLE_POLL);
        }
        for dir in crate::sync::lock(&self.spare).drain(..) {
            remove(&dir);
        }
        let _removing = self.shape.write().unwrap_or_else(PoisonError::into_inner);
        let _ = fs::remove_dir(&self.dir);
    }
}

/// One process's cgroup, by path (no descriptor is kept: every open fd is copied into each
/// later spawn).
#[derive(Debug)]
pub struct Cgroup {
    dir: PathBuf,
    /// Handed back to the tree (empty): the path may be another process's now.
    released: AtomicBool,
    /// Killed and in the graveyard.
    buried: AtomicBool,
    /// Held by a kill-and-bury or a release, so the two never interleave.
    turn: std::sync::Mutex<()>,
}

impl Cgroup {
    fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            released: AtomicBool::new(false),
            buried: AtomicBool::new(false),
            turn: std::sync::Mutex::new(()),
        }
    }

    /// No member in it or below it (`populated 0` in `cgroup.events`).
    fn is_empty(&self) -> bool {
        fs::read_to_string(self.dir.join("cgroup.events"))
            .is_ok_and(|events| events.lines().any(|line| line == "populated 0"))
    }

    /// The directory, `O_PATH`, for `clone3`'s `cgroup` argument.
    pub fn open_dir(&self) -> io::Result<OwnedFd> {
        Ok(rustix::fs::open(
            &self.dir,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?)
    }

    /// `cgroup.procs`, opened for the child's `pre_exec` hook to write "0" (itself) to.
    pub fn open_procs(&self) -> io::Result<OwnedFd> {
        let file = fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))?;
        Ok(file.into())
    }

    /// SIGKILL every member, whatever its process group or session. False when the cgroup
    /// is gone already or released. (Through [`CgroupTree::kill`], which buries it.)
    fn kill(&self) -> bool {
        if self.released.load(Ordering::Relaxed) {
            return false;
        }
        let write = fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.kill"))
            .and_then(|mut file| file.write_all(b"1"));
        match write {
            Ok(()) => true,
            Err(err) if err.kind() == io::ErrorKind::NotFound => false,
            Err(err) => {
                tracing::warn!(cgroup = %self.dir.display(), %err, "cgroup.kill failed");
                false
            }
        }
    }

    /// Remove the cgroup if it is empty (or gone). False while members remain.
    fn remove(&self) -> bool {
        self.released.load(Ordering::Relaxed) || remove(&self.dir)
    }
}

/// Remove the empty cgroups that servers killed without a clean shutdown left next to
/// ours (`rexec-<pid>` of a pid that no longer runs). A cgroup that still has members is
/// left as it is.
fn remove_stale(own_dir: &Path) {
    let Ok(entries) = fs::read_dir(own_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("rexec-")) else {
            continue;
        };
        if pid.parse::<u32>().is_err() || Path::new("/proc").join(pid).exists() {
            continue;
        }
        if let Ok(leaves) = fs::read_dir(entry.path()) {
            for leaf in leaves.flatten().filter(|l| l.path().is_dir()) {
                remove(&leaf.path());
            }
        }
        if remove(&entry.path()) {
            tracing::debug!(cgroup = %entry.path().display(), "removed a stale cgroup");
        }
    }
}

fn remove(dir: &Path) -> bool {
    match fs::remove_dir(dir) {
        Ok(()) => true,
        Err(err) if err.kind() == io::ErrorKind::NotFound => true,
        Err(_) => false,
    }
}

/// The root within the hierarchy and the mount point of the cgroup2 file system (fields 4
/// and 5 of the line whose type after the ` - ` separator is `cgroup2`).
fn cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        let (fields, rest) = line.split_once(" - ")?;
        if rest.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut fields = fields.split_whitespace().skip(3);
        Some((unescape(fields.next()?), unescape(fields.next()?)))
    })
}

/// The server's path in the unified hierarchy: the `0::PATH` line of /proc/self/cgroup.
fn unified_path(membership: &str) -> Option<&str> {
    membership
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .filter(|path| path.starts_with('/'))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::lock;

    /// The tests below share the process's one tree: one at a time.
    static TREE_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// The process's cgroup tree; `None` (said, and failing under `CI=true`) without one.
    fn process_tree() -> Option<&'static CgroupTree> {
        match super::super::containment::get() {
            super::super::containment::Containment::Cgroup(tree) => Some(tree),
            _ => {
                println!("SKIP: no writable cgroup v2 here");
                assert!(std::env::var("CI").as_deref() != Ok("true"), "no cgroup v2");
                None
            }
        }
    }

    #[test]
    fn finds_the_unified_mount_next_to_v1_controllers() {
        let mountinfo = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount(mountinfo),
            Some((PathBuf::from("/"), PathBuf::from("/sys/fs/cgroup/unified")))
        );
        assert_eq!(cgroup2_mount("32 31 0:29 / /x rw - cgroup cgroup rw"), None);
    }

    #[test]
    fn mount_points_with_escaped_spaces() {
        let line = "41 31 0:38 / /mnt/my\\040cg rw shared:1 - cgroup2 none rw\n";
        assert_eq!(
            cgroup2_mount(line),
            Some((PathBuf::from("/"), PathBuf::from("/mnt/my cg")))
        );
    }

    #[test]
    fn the_server_cgroup_is_the_zero_line() {
        let membership = "4:memory:/a/b\n1:cpu:/\n0::/system.slice/rexec.service\n";
        assert_eq!(
            unified_path(membership),
            Some("/system.slice/rexec.service")
        );
        assert_eq!(unified_path("4:memory:/a\n"), None);
    }

    /// An emptied cgroup goes to the next process, and the old handle kills nothing; one
    /// with a member stays its process's.
    #[test]
    fn emptied_cgroups_are_reused_and_the_old_handle_is_inert() -> io::Result<()> {
        let _serial = lock(&TREE_TESTS);
        let Some(tree) = process_tree() else {
            return Ok(());
        };
        let first = tree.create_leaf()?;
        let mut member = std::process::Command::new("sleep").arg("30").spawn()?;
        fs::write(first.dir.join("cgroup.procs"), member.id().to_string())?;
        assert!(!tree.release(&first), "a cgroup with a member is kept");
        assert!(first.kill());
        member.wait()?;
        let populated = |cgroup: &Cgroup| !cgroup.is_empty();
        let deadline = Instant::now() + Duration::from_secs(5);
        while populated(&first) && Instant::now() < deadline {
            std::thread::sleep(SETTLE_POLL);
        }
        let second = tree.create_leaf()?;
        let second_dir = second.dir.clone();
        assert!(tree.release(&second));
        let third = tree.create_leaf()?;
        assert_eq!(third.dir, second_dir, "the spare is handed out again");
        assert!(!second.kill(), "a released handle kills nothing");
        assert!(third.remove());
        assert!(first.remove());
        // The kernel may take a moment to let go of a removed child cgroup.
        let deadline = Instant::now() + Duration::from_secs(5);
        while tree.dir.exists() && Instant::now() < deadline {
            tree.settle(Duration::ZERO);
            std::thread::sleep(SETTLE_POLL);
        }
        assert!(!tree.dir.exists(), "the test tree is removed");
        Ok(())
    }

    /// The tree is the process's, shared by every server in it (tests, an embedder): one
    /// server's shutdown may remove the tree while another makes a process's cgroup in
    /// it. The other still gets its cgroup.
    #[test]
    fn a_leaf_is_made_while_another_server_settles() -> io::Result<()> {
        let _serial = lock(&TREE_TESTS);
        let Some(tree) = process_tree() else {
            return Ok(());
        };
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    tree.settle(Duration::ZERO);
                }
            });
            let made = (0..5_000).map(|_| {
                let leaf = tree.create_leaf()?;
                tree.release(&leaf);
                Ok(())
            });
            let outcome: io::Result<()> = made.collect();
            done.store(true, Ordering::Relaxed);
            outcome
        })?;
        tree.settle(Duration::from_secs(5));
        Ok(())
    }
}
