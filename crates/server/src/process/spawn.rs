//! Spawning a child: pipes or a PTY, its own process group, exactly the environment asked
//! for, inside its containment ([`super::containment`]).
//!
//! With a cgroup, every child joins it in a `pre_exec` hook (one `write` to an open
//! `cgroup.procs`) before its program runs, so nothing it forks starts outside; a hook
//! makes the standard library fork instead of using `posix_spawn`. In the subreaper
//! fallback pipe children have no hook and keep the `posix_spawn` fast path. PTY children
//! add `setsid` and a controlling terminal (two more async-signal-safe syscalls). A
//! sandboxed child is the sandbox helper, which execs the command itself; its hook also
//! clears close-on-exec on the helper's report channel.

use super::containment::{self, Descendants};
use crate::sandbox::HelperCommand;
use rexec_protocol::process::OutputStream;
use rustix::fs::{Mode, OFlags};
use rustix::process::Pid;
use rustix::pty::OpenptFlags;
use std::collections::BTreeMap;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use tokio::process::{Child, Command};

/// The initial PTY size, as upstream.
pub const PTY_ROWS: u16 = 24;
pub const PTY_COLS: u16 = 80;

pub struct SpawnRequest<'a> {
    pub argv: &'a [String],
    pub arg0: Option<&'a str>,
    pub cwd: &'a Path,
    pub env: &'a BTreeMap<String, String>,
    pub tty: bool,
    pub pipe_stdin: bool,
    /// Spawn this sandbox helper, which applies the policy and execs `argv`.
    pub helper: Option<&'a HelperCommand>,
}

pub struct SpawnedChild {
    pub child: Child,
    /// The child's pid and process group, and whatever it starts.
    pub descendants: Descendants,
    /// Non-blocking read ends: stdout and stderr pipes, or the PTY master.
    pub outputs: Vec<(OutputStream, OwnedFd)>,
    /// The write end of stdin (a pipe, or a PTY master duplicate), when writable.
    pub stdin: Option<OwnedFd>,
    pub pty_master: Option<Arc<OwnedFd>>,
}

pub fn spawn(request: &SpawnRequest<'_>) -> io::Result<SpawnedChild> {
    let Some((program, args)) = request.argv.split_first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "argv must not be empty",
        ));
    };
    let metadata = std::fs::metadata(request.cwd).map_err(|err| {
        io::Error::new(err.kind(), format!("cwd {}: {err}", request.cwd.display()))
    })?;
    if !metadata.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("cwd {} is not a directory", request.cwd.display()),
        ));
    }
    let mut command = match request.helper {
        Some(helper) => helper_command(helper),
        None => {
            let mut command = Command::new(program);
            command.args(args);
            if let Some(arg0) = request.arg0 {
                command.arg0(arg0);
            }
            command
        }
    };
    command
        .current_dir(request.cwd)
        .env_clear()
        .envs(request.env);
    let contained = containment::get().prepare().map_err(|err| {
        io::Error::new(err.kind(), format!("failed to contain `{program}`: {err}"))
    })?;
    if let Some(fd) = contained.join_fd() {
        join_before_exec(&mut command, fd);
    }
    let spawned = if request.tty {
        spawn_pty(command)
    } else {
        spawn_pipes(command, request.pipe_stdin)
    };
    let spawned = spawned
        .map_err(|err| io::Error::new(err.kind(), format!("failed to spawn `{program}`: {err}")))?;
    let fd_targets = if contained.needs_fd_targets() {
        spawned.fd_targets()
    } else {
        Vec::new()
    };
    let pid = child_pid(&spawned.child)?;
    let descendants = contained.spawned(pid, request.tty, fd_targets);
    Ok(SpawnedChild {
        child: spawned.child,
        descendants,
        outputs: spawned.outputs,
        stdin: spawned.stdin,
        pty_master: spawned.pty_master,
    })
}

/// Move the child into its cgroup (writing "0" to `cgroup.procs` means "me") before exec.
fn join_before_exec(command: &mut Command, procs: RawFd) {
    // SAFETY: one write(2) on a descriptor the parent keeps open until the spawn returns;
    // no allocation, no lock.
    unsafe {
        command.pre_exec(move || {
            let procs = std::os::fd::BorrowedFd::borrow_raw(procs);
            rustix::io::write(procs, b"0")?;
            Ok(())
        });
    }
}

/// A spawned child before its containment handle exists.
struct Spawned {
    child: Child,
    outputs: Vec<(OutputStream, OwnedFd)>,
    stdin: Option<OwnedFd>,
    pty_master: Option<Arc<OwnedFd>>,
    /// The PTY slave's path, for attribution.
    pty_path: Option<String>,
}

impl Spawned {
    /// How `/proc/PID/fd` shows the child's output: each pipe's inode, or the PTY.
    fn fd_targets(&self) -> Vec<String> {
        if let Some(path) = &self.pty_path {
            return vec![path.clone()];
        }
        self.outputs
            .iter()
            .filter_map(|(_, fd)| rustix::fs::fstat(fd).ok())
            .map(|stat| format!("pipe:[{}]", stat.st_ino))
            .collect()
    }
}

fn helper_command(helper: &HelperCommand) -> Command {
    let mut command = Command::new(&helper.program);
    command.args(&helper.args);
    let channel = helper.inherited_fd();
    // SAFETY: one fcntl on an fd that stays open in the parent until the spawn returns.
    unsafe {
        command.pre_exec(move || {
            let channel = std::os::fd::BorrowedFd::borrow_raw(channel);
            rustix::io::fcntl_setfd(channel, rustix::io::FdFlags::empty())?;
            Ok(())
        });
    }
    command
}

fn spawn_pipes(mut command: Command, pipe_stdin: bool) -> io::Result<Spawned> {
    command
        .process_group(0)
        .stdin(if pipe_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let mut outputs = Vec::with_capacity(2);
    if let Some(stdout) = child.stdout.take() {
        outputs.push((OutputStream::Stdout, stdout.into_owned_fd()?));
    }
    if let Some(stderr) = child.stderr.take() {
        outputs.push((OutputStream::Stderr, stderr.into_owned_fd()?));
    }
    let stdin = child.stdin.take().map(|s| s.into_owned_fd()).transpose()?;
    Ok(Spawned {
        child,
        outputs,
        stdin,
        pty_master: None,
        pty_path: None,
    })
}

fn spawn_pty(mut command: Command) -> io::Result<Spawned> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let slave_path = rustix::pty::ptsname(&master, Vec::new())?;
    let slave: OwnedFd = rustix::fs::open(
        slave_path.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::termios::tcsetwinsize(
        &master,
        rustix::termios::Winsize {
            ws_row: PTY_ROWS,
            ws_col: PTY_COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    command
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    // SAFETY: the hook runs between fork and exec and only makes two syscalls (setsid,
    // TIOCSCTTY on fd 0, the PTY slave); it allocates nothing and takes no locks.
    unsafe {
        command.pre_exec(|| {
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
            Ok(())
        });
    }
    let child = command.spawn()?;
    // The parent's copies of the slave close with `command`, so the master sees EOF (EIO)
    // once every process holding the terminal is gone.
    drop(command);
    let writer = rustix::io::dup(&master)?;
    let control = Arc::new(rustix::io::dup(&master)?);
    Ok(Spawned {
        child,
        outputs: vec![(OutputStream::Pty, master)],
        stdin: Some(writer),
        pty_master: Some(control),
        pty_path: Some(slave_path.to_string_lossy().into_owned()),
    })
}

fn child_pid(child: &Child) -> io::Result<Pid> {
    child
        .id()
        .and_then(|id| Pid::from_raw(id as i32))
        .ok_or_else(|| io::Error::other("spawned child has no pid"))
}
