//! Spawning a child straight into its cgroup: `clone3(CLONE_INTO_CGROUP | CLONE_PIDFD)`
//! (Linux 5.7), so it is born inside and never migrates (a migration takes the kernel's
//! machine-wide threadgroup lock for writing, and serializes every spawn behind it).
//!
//! Everything the child needs is prepared in the parent ([`Exec`]: argv, envp, the paths
//! to try for a program without a slash, the cwd, the descriptors to install). Between
//! the clone and `execve` the child makes only async-signal-safe syscalls: no allocation,
//! no lock, no Rust I/O. If it fails, it writes its errno to a close-on-exec pipe and
//! exits with 127; the parent reads that pipe, so a spawn error is reported exactly like
//! the standard library's. The child is waited for through its pidfd ([`PidfdChild`]).
//!
//! A kernel (or seccomp filter) without clone3 or `CLONE_INTO_CGROUP` makes the first
//! spawn say [`CloneError::Unavailable`]; from then on [`usable`] is false and the caller
//! uses the standard library's spawn with a migration in `pre_exec`.

use rustix::process::{Pid, WaitIdOptions, WaitIdStatus};
use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, c_char, c_int};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The search path `execvp` uses when the environment has no PATH.
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

const UNKNOWN: u8 = 0;
const WORKS: u8 = 1;
const UNAVAILABLE: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// False once clone3 into a cgroup turned out not to exist here.
pub fn usable() -> bool {
    STATE.load(Ordering::Relaxed) != UNAVAILABLE
}

#[derive(Debug)]
pub enum CloneError {
    /// The kernel cannot clone into a cgroup (logged once); spawn another way.
    Unavailable,
    /// The spawn failed (the child's errno, or the parent's preparation).
    Io(io::Error),
}

impl From<io::Error> for CloneError {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

/// What the child becomes: a process group leader (pipes) or a session leader with the
/// terminal on its stdin as controlling terminal (PTY).
#[derive(Clone, Copy, PartialEq)]
pub enum Leader {
    Group,
    Session,
}

/// A program, ready to exec: every string a `CString`, every pointer array built.
pub struct Exec {
    /// Paths to `execve` in order (one, or the PATH candidates for a bare name).
    candidates: Vec<CString>,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const c_char>,
    cwd: CString,
}

impl Exec {
    /// `program` is looked up in `env`'s PATH (as `execvp` would) unless it has a slash;
    /// `argv` includes argv\[0\].
    pub fn new<'a>(
        program: &OsStr,
        argv: impl IntoIterator<Item = &'a OsStr>,
        env: &BTreeMap<String, String>,
        cwd: &Path,
    ) -> io::Result<Self> {
        let argv = argv
            .into_iter()
            .map(|arg| c_string(arg.as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let envp = env
            .iter()
            .map(|(key, value)| c_string(format!("{key}={value}").as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let path = env.get("PATH").map_or(DEFAULT_PATH, |p| p.as_bytes());
        Ok(Self {
            candidates: candidates(program.as_bytes(), path)?,
            argv_ptrs: null_terminated(&argv),
            _argv: argv,
            envp_ptrs: null_terminated(&envp),
            _envp: envp,
            cwd: c_string(cwd.as_os_str().as_bytes())?,
        })
    }
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "nul byte found in provided data",
        )
    })
}

fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// `execvp`'s order: the name itself if it has a slash, else each PATH entry joined with
/// it (an empty entry is the current directory).
fn candidates(program: &[u8], path: &[u8]) -> io::Result<Vec<CString>> {
    if program.contains(&b'/') || program.is_empty() {
        return Ok(vec![c_string(program)?]);
    }
    path.split(|&b| b == b':')
        .map(|dir| {
            let mut full = dir.to_vec();
            if !full.is_empty() && !full.ends_with(b"/") {
                full.push(b'/');
            }
            full.extend_from_slice(program);
            c_string(&full)
        })
        .collect()
}

/// The descriptors a child gets: its stdin, stdout and stderr, and one to keep open
/// across exec (the sandbox helper's report channel).
pub struct ChildFds<'a> {
    pub stdio: [BorrowedFd<'a>; 3],
    pub keep: Option<BorrowedFd<'a>>,
    pub leader: Leader,
}

/// Clone a child into the cgroup `cgroup` (an `O_PATH` descriptor of its directory) and
/// exec `exec` in it. Every descriptor in `fds` must be above 2 (the child `dup2`s onto
/// 0–2 in order).
pub fn spawn(
    exec: &Exec,
    fds: &ChildFds<'_>,
    cgroup: BorrowedFd<'_>,
) -> Result<PidfdChild, CloneError> {
    debug_assert!(fds.stdio.iter().all(|fd| fd.as_raw_fd() > 2));
    let (mut report, report_child) = std::io::pipe()?;
    let report_child = above_stdio(report_child.into())?;
    let context = ChildContext {
        exec,
        fds,
        report: report_child.as_raw_fd(),
    };
    // SAFETY: `child_main` makes only async-signal-safe calls, writes no memory but its
    // own stack, and execs or exits; `context` outlives the call.
    let cloned =
        unsafe { super::clone3::clone_into(cgroup, child_main, (&raw const context).cast()) };
    let (pid, pidfd) = match cloned {
        Ok(cloned) => cloned,
        Err(err) => return Err(unavailable(err)),
    };
    STATE.store(WORKS, Ordering::Relaxed);
    drop(report_child);
    let mut child = PidfdChild {
        pid: Pid::from_raw(pid).ok_or_else(|| io::Error::other("clone3 gave no pid"))?,
        pidfd: Some(pidfd),
        watched: None,
    };
    let mut errno = [0u8; 4];
    let read = loop {
        match read_full(&mut report, &mut errno) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            read => break read?,
        }
    };
    if read == 0 {
        return Ok(child);
    }
    // The child failed before exec and exits at once: reap it here.
    let _ = child.wait_blocking();
    Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)).into())
}

/// A clone error: [`CloneError::Unavailable`] (logged once) if it says the kernel
/// cannot clone into a cgroup and no clone has worked yet.
fn unavailable(err: io::Error) -> CloneError {
    let missing = matches!(
        err.raw_os_error(),
        Some(libc::ENOSYS | libc::EINVAL | libc::E2BIG)
    );
    if missing && STATE.load(Ordering::Relaxed) != WORKS {
        STATE.store(UNAVAILABLE, Ordering::Relaxed);
        tracing::warn!(%err, "clone3 into a cgroup is not available; children join their cgroup in pre_exec (slower spawns)");
        return CloneError::Unavailable;
    }
    err.into()
}

/// Read until `buf` is full or EOF; the count read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The same descriptor, moved above 0–2 if it is one of them (a server started with
/// stdio closed), so installing the child's stdio cannot clobber it.
pub fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?)
}

/// What the child needs, behind the one pointer the clone passes.
struct ChildContext<'a> {
    exec: &'a Exec,
    fds: &'a ChildFds<'a>,
    report: RawFd,
}

/// The child between clone and exec: set up, exec, or report the errno and exit 127.
///
/// # Safety
/// Only as the entry of a child of [`super::clone3::clone_into`], with a `ChildContext`.
unsafe extern "C" fn child_main(context: *const std::ffi::c_void) -> ! {
    // SAFETY: the parent keeps the context alive until the child has exec'd or exited.
    let context = unsafe { &*context.cast::<ChildContext<'_>>() };
    let errno = unsafe { prepare_and_exec(context.exec, context.fds) };
    let bytes = errno.to_ne_bytes();
    unsafe {
        libc::write(context.report, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127)
    }
}

/// Returns only on failure, with the errno.
unsafe fn prepare_and_exec(exec: &Exec, fds: &ChildFds<'_>) -> c_int {
    let errno = super::clone3::errno;
    // SAFETY (whole block): plain syscalls on descriptors and strings the parent keeps
    // alive until the child has exec'd or reported.
    unsafe {
        if let Err(errno) = super::clone3::reset_signals() {
            return errno;
        }
        for (target, fd) in fds.stdio.iter().enumerate() {
            if libc::dup2(fd.as_raw_fd(), target as c_int) < 0 {
                return errno();
            }
        }
        let led = match fds.leader {
            Leader::Group => libc::setpgid(0, 0),
            Leader::Session => {
                if libc::setsid() < 0 {
                    -1
                } else {
                    libc::ioctl(0, libc::TIOCSCTTY, 0)
                }
            }
        };
        if led < 0 {
            return errno();
        }
        if let Some(keep) = fds.keep
            && libc::fcntl(keep.as_raw_fd(), libc::F_SETFD, 0) < 0
        {
            return errno();
        }
        if libc::chdir(exec.cwd.as_ptr()) < 0 {
            return errno();
        }
        // execvp's rule: go on past names that are missing or not accessible, and report
        // EACCES if any was there but not executable.
        let mut failure = libc::ENOENT;
        let mut denied = false;
        for candidate in &exec.candidates {
            libc::execve(
                candidate.as_ptr(),
                exec.argv_ptrs.as_ptr(),
                exec.envp_ptrs.as_ptr(),
            );
            failure = errno();
            match failure {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR => {}
                _ => return failure,
            }
        }
        if denied { libc::EACCES } else { failure }
    }
}

/// A child spawned by [`spawn`], waited for through its pidfd. Dropped before it was
/// waited for, it is reaped in the background.
#[derive(Debug)]
pub struct PidfdChild {
    pid: Pid,
    pidfd: Option<OwnedFd>,
    watched: Option<AsyncFd<OwnedFd>>,
}

impl PidfdChild {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Wait for the exit (the pidfd turns readable) and reap it.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(fd) = self.pidfd.take() {
            // SAFETY: an `OwnedFd` is a valid open descriptor that nothing else closes, and
            // it returns the same descriptor for as long as the `AsyncFd` owns it.
            match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
                Ok(watched) => self.watched = Some(watched),
                Err(err) => {
                    // Kept, so that drop still reaps the child.
                    let (fd, err) = err.into_parts();
                    self.pidfd = Some(fd);
                    return Err(err);
                }
            }
        }
        let Some(watched) = &self.watched else {
            return Err(io::Error::other("child already reaped"));
        };
        loop {
            let mut guard = watched.readable().await?;
            match reap(watched.get_ref().as_fd(), WaitIdOptions::NOHANG)? {
                Some(status) => {
                    self.watched = None;
                    return Ok(status);
                }
                None => guard.clear_ready(),
            }
        }
    }

    fn wait_blocking(&mut self) -> io::Result<ExitStatus> {
        let fd = self
            .pidfd
            .take()
            .ok_or_else(|| io::Error::other("child already reaped"))?;
        loop {
            match reap(fd.as_fd(), WaitIdOptions::empty()) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Some(status)) => return Ok(status),
                Ok(None) => continue,
                Err(err) => return Err(err),
            }
        }
    }
}

impl Drop for PidfdChild {
    fn drop(&mut self) {
        let fd = match (self.pidfd.take(), self.watched.take()) {
            (Some(fd), _) => fd,
            (None, Some(watched)) => watched.into_inner(),
            (None, None) => return,
        };
        if !matches!(reap(fd.as_fd(), WaitIdOptions::NOHANG), Ok(None)) {
            return;
        }
        let mut orphan = PidfdChild {
            pid: self.pid,
            pidfd: Some(fd),
            watched: None,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = orphan.wait().await;
                });
            }
            Err(_) => {
                std::thread::spawn(move || orphan.wait_blocking());
            }
        }
    }
}

fn reap(pidfd: BorrowedFd<'_>, options: WaitIdOptions) -> io::Result<Option<ExitStatus>> {
    let status = rustix::process::waitid(
        rustix::process::WaitId::PidFd(pidfd),
        WaitIdOptions::EXITED | options,
    )?;
    Ok(status.map(exit_status))
}

/// The `waitid` result as the wait status `ExitStatus` holds.
fn exit_status(status: WaitIdStatus) -> ExitStatus {
    let raw = match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => (code & 0xff) << 8,
        (None, Some(signal)) => signal | if status.dumped() { 0x80 } else { 0 },
        (None, None) => 0,
    };
    ExitStatus::from_raw(raw)
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::containment;
    use super::*;

    fn strings(found: &[CString]) -> Vec<&str> {
        found.iter().filter_map(|c| c.to_str().ok()).collect()
    }

    #[test]
    fn bare_names_are_tried_along_the_path() -> io::Result<()> {
        let found = candidates(b"sh", b"/usr/local/bin::/bin/")?;
        assert_eq!(strings(&found), ["/usr/local/bin/sh", "sh", "/bin/sh"]);
        assert_eq!(strings(&candidates(b"./run", b"/bin")?), ["./run"]);
        Ok(())
    }

    /// A cgroup of this test process's containment, or a printed reason why there is none
    /// (an error under CI=true).
    fn cgroup() -> Option<containment::Preparing> {
        if let Ok(prepared) = containment::get().prepare()
            && prepared.cgroup_dir().is_some()
            && usable()
        {
            return Some(prepared);
        }
        let why = "SKIP: no writable cgroup v2 with clone3(CLONE_INTO_CGROUP) here";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        println!("{why}");
        None
    }

    /// A file without execute permission (even root cannot exec it).
    pub fn not_executable(name: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("rexec-{name}-{}", std::process::id()));
        std::fs::write(&path, "#!/bin/sh\n").expect("temp file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        path.display().to_string()
    }

    /// Spawn `argv` into `cgroup` with /dev/null for stdio and wait for it; the errno of
    /// a failed spawn.
    async fn run(
        cgroup: &containment::Preparing,
        argv: &[&str],
        cwd: &str,
    ) -> Result<ExitStatus, Option<i32>> {
        let env = BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())]);
        let exec = Exec::new(
            OsStr::new(argv[0]),
            argv.iter().map(OsStr::new),
            &env,
            Path::new(cwd),
        )
        .map_err(|_| None)?;
        let null = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDWR,
            rustix::fs::Mode::empty(),
        )
        .map_err(|_| None)?;
        let null = above_stdio(null).map_err(|_| None)?;
        let fds = ChildFds {
            stdio: [null.as_fd(), null.as_fd(), null.as_fd()],
            keep: None,
            leader: Leader::Group,
        };
        let dir = cgroup.cgroup_dir().ok_or(None)?;
        match spawn(&exec, &fds, dir) {
            Ok(mut child) => child.wait().await.map_err(|err| err.raw_os_error()),
            Err(CloneError::Io(err)) => Err(err.raw_os_error()),
            Err(CloneError::Unavailable) => Err(None),
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_reported_with_its_errno() {
        let Some(cgroup) = cgroup() else { return };
        let enoent = Err(Some(libc::ENOENT));
        assert_eq!(run(&cgroup, &["no-such-program-rexec"], "/").await, enoent);
        assert_eq!(run(&cgroup, &["/no/such/program"], "/").await, enoent);
        let plain = not_executable("clone-noexec");
        let eacces = Err(Some(libc::EACCES));
        assert_eq!(run(&cgroup, &[&plain], "/").await, eacces);
        let _ = std::fs::remove_file(plain);
        drop(cgroup);
        containment::get().settle();
    }

    #[tokio::test]
    async fn a_bad_cwd_is_reported_from_the_child() {
        let Some(cgroup) = cgroup() else { return };
        let enoent = Err(Some(libc::ENOENT));
        assert_eq!(run(&cgroup, &["true"], "/no/such/dir").await, enoent);
        drop(cgroup);
        containment::get().settle();
    }

    #[tokio::test]
    async fn exit_codes_and_signals_come_through_the_pidfd() {
        let Some(cgroup) = cgroup() else { return };
        let exit = run(&cgroup, &["sh", "-c", "exit 3"], "/tmp").await;
        assert_eq!(exit.map(|status| status.code()), Ok(Some(3)));
        let killed = run(&cgroup, &["sh", "-c", "kill -9 $$"], "/tmp").await;
        assert_eq!(killed.map(|status| status.signal()), Ok(Some(9)));
        drop(cgroup);
        containment::get().settle();
    }

    /// The server blocks every signal around the clone and ignores SIGPIPE; its children
    /// start with nothing blocked and SIGPIPE at its default (bit 13 of SigIgn unset).
    #[tokio::test]
    async fn children_start_with_a_clean_signal_state() {
        let Some(cgroup) = cgroup() else { return };
        let check = "grep -Eq '^SigBlk:\\s+0+$' /proc/self/status \\
            && ignored=$(awk '/^SigIgn/ { print $2 }' /proc/self/status) \\
            && [ $(( 0x$ignored & 0x1000 )) -eq 0 ]";
        let clean = run(&cgroup, &["sh", "-c", check], "/tmp").await;
        assert_eq!(clean.map(|status| status.code()), Ok(Some(0)));
        drop(cgroup);
        containment::get().settle();
    }
}
