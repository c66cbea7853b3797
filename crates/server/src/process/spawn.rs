//! Spawning a child: pipes or a PTY, its own process group, exactly the environment asked
//! for, inside its containment ([`super::containment`]).
//!
//! With a cgroup, the child is cloned straight into it ([`super::clone_spawn`]), so it is
//! inside before its program runs and nothing it forks starts outside. Where the kernel
//! cannot clone into a cgroup, the standard library spawns it and it joins in a `pre_exec`
//! hook (one `write` to `cgroup.procs`); a hook makes the standard library fork instead of
//! using `posix_spawn`. In the subreaper fallback pipe children have no hook and keep the
//! `posix_spawn` fast path. PTY children add `setsid` and a controlling terminal. A
//! sandboxed child is the sandbox helper, which execs the command itself; its report
//! channel stays open across the exec.

use super::clone_spawn::{self, ChildFds, CloneError, Exec, Leader, PidfdChild};
use super::containment::{self, Descendants, Preparing};
use crate::sandbox::HelperCommand;
use rexec_protocol::process::OutputStream;
use rustix::fs::{Mode, OFlags};
use rustix::process::Pid;
use rustix::pty::OpenptFlags;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use tokio::process::Command;

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

/// A running child, spawned one way or the other.
#[derive(Debug)]
pub enum Child {
    Cloned(PidfdChild),
    Std(tokio::process::Child),
}

impl Child {
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            Self::Cloned(child) => child.wait().await,
            Self::Std(child) => child.wait().await,
        }
    }

    fn pid(&self) -> io::Result<Pid> {
        match self {
            Self::Cloned(child) => Ok(child.pid()),
            Self::Std(child) => child
                .id()
                .and_then(|id| Pid::from_raw(id as i32))
                .ok_or_else(|| io::Error::other("spawned child has no pid")),
        }
    }
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
    let contained = containment::get().prepare().map_err(|err| {
        io::Error::new(err.kind(), format!("failed to contain `{program}`: {err}"))
    })?;
    let failed =
        |err: io::Error| io::Error::new(err.kind(), format!("failed to spawn `{program}`: {err}"));
    let cloned = match contained.cgroup_dir() {
        Some(cgroup) if clone_spawn::usable() => match spawn_cloned(request, program, args, cgroup)
        {
            Ok(spawned) => Some(spawned),
            Err(CloneError::Io(err)) => return Err(failed(err)),
            Err(CloneError::Unavailable) => None,
        },
        _ => None,
    };
    let spawned = match cloned {
        Some(spawned) => spawned,
        None => spawn_std(request, program, args, &contained).map_err(failed)?,
    };
    let fd_targets = if contained.needs_fd_targets() {
        spawned.fd_targets()
    } else {
        Vec::new()
    };
    let pid = spawned.child.pid()?;
    let descendants = contained.spawned(pid, request.tty, fd_targets);
    Ok(SpawnedChild {
        child: spawned.child,
        descendants,
        outputs: spawned.outputs,
        stdin: spawned.stdin,
        pty_master: spawned.pty_master,
    })
}

/// Clone the child into `cgroup` with the descriptors it gets made here.
fn spawn_cloned(
    request: &SpawnRequest<'_>,
    program: &str,
    args: &[String],
    cgroup: BorrowedFd<'_>,
) -> Result<Spawned, CloneError> {
    let exec = match request.helper {
        Some(helper) => Exec::new(
            helper.program.as_os_str(),
            std::iter::once(helper.program.as_os_str())
                .chain(helper.args.iter().map(|a| a.as_os_str())),
            request.env,
            request.cwd,
        ),
        None => {
            let arg0 = request.arg0.unwrap_or(program);
            Exec::new(
                OsStr::new(program),
                std::iter::once(OsStr::new(arg0)).chain(args.iter().map(OsStr::new)),
                request.env,
                request.cwd,
            )
        }
    }?;
    let keep = request.helper.map(|helper| helper.channel.as_fd());
    if request.tty {
        let Pty {
            master,
            slave,
            slave_path,
        } = Pty::open()?;
        let slave = clone_spawn::above_stdio(slave)?;
        let fds = ChildFds {
            stdio: [slave.as_fd(), slave.as_fd(), slave.as_fd()],
            keep,
            leader: Leader::Session,
        };
        let child = clone_spawn::spawn(&exec, &fds, cgroup)?;
        // The parent's slave closes here, so the master sees EOF (EIO) once every process
        // holding the terminal is gone.
        drop(slave);
        return Ok(Pty::spawned(master, slave_path, Child::Cloned(child))?);
    }
    let (stdin_read, stdin_write) = if request.pipe_stdin {
        let (read, write) = std::io::pipe()?;
        (OwnedFd::from(read), Some(OwnedFd::from(write)))
    } else {
        let null = rustix::fs::open("/dev/null", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(io::Error::from)?;
        (null, None)
    };
    let (stdout_read, stdout_write) = std::io::pipe()?;
    let (stderr_read, stderr_write) = std::io::pipe()?;
    let stdin_read = clone_spawn::above_stdio(stdin_read)?;
    let stdout_write = clone_spawn::above_stdio(stdout_write.into())?;
    let stderr_write = clone_spawn::above_stdio(stderr_write.into())?;
    let fds = ChildFds {
        stdio: [
            stdin_read.as_fd(),
            stdout_write.as_fd(),
            stderr_write.as_fd(),
        ],
        keep,
        leader: Leader::Group,
    };
    let child = clone_spawn::spawn(&exec, &fds, cgroup)?;
    Ok(Spawned {
        child: Child::Cloned(child),
        outputs: vec![
            (OutputStream::Stdout, stdout_read.into()),
            (OutputStream::Stderr, stderr_read.into()),
        ],
        stdin: stdin_write,
        pty_master: None,
        pty_path: None,
    })
}

/// Spawn with the standard library: the subreaper mode, and the cgroup mode on a kernel
/// that cannot clone into a cgroup (the child joins in `pre_exec`).
fn spawn_std(
    request: &SpawnRequest<'_>,
    program: &str,
    args: &[String],
    contained: &Preparing,
) -> io::Result<Spawned> {
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
    // Kept open until the spawn returns: the hook writes to it in the child.
    let procs = contained.open_procs()?;
    if let Some(fd) = &procs {
        join_before_exec(&mut command, std::os::fd::AsRawFd::as_raw_fd(fd));
    }
    if request.tty {
        spawn_pty(command)
    } else {
        spawn_pipes(command, request.pipe_stdin)
    }
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
        child: Child::Std(child),
        outputs,
        stdin,
        pty_master: None,
        pty_path: None,
    })
}

/// A fresh PTY, its window at the initial size.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
    slave_path: String,
}

impl Pty {
    fn open() -> io::Result<Self> {
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
        Ok(Self {
            master,
            slave,
            slave_path: slave_path.to_string_lossy().into_owned(),
        })
    }

    /// The master's ends once `child` runs on the slave (which the caller has closed).
    fn spawned(master: OwnedFd, slave_path: String, child: Child) -> io::Result<Spawned> {
        let writer = rustix::io::dup(&master)?;
        let control = Arc::new(rustix::io::dup(&master)?);
        Ok(Spawned {
            child,
            outputs: vec![(OutputStream::Pty, master)],
            stdin: Some(writer),
            pty_master: Some(control),
            pty_path: Some(slave_path),
        })
    }
}

fn spawn_pty(mut command: Command) -> io::Result<Spawned> {
    let Pty {
        master,
        slave,
        slave_path,
    } = Pty::open()?;
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
    Pty::spawned(master, slave_path, Child::Std(child))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn_error(argv: &[&str], cwd: &str) -> String {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let env = BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())]);
        let request = SpawnRequest {
            argv: &argv,
            arg0: None,
            cwd: Path::new(cwd),
            env: &env,
            tty: false,
            pipe_stdin: false,
            helper: None,
        };
        match spawn(&request) {
            Ok(_) => "spawned".to_owned(),
            Err(err) => err.to_string(),
        }
    }

    /// Whichever way this host spawns (cloned into a cgroup, or the standard library),
    /// the errors read the same.
    #[tokio::test]
    async fn spawn_errors_name_the_program_and_the_cause() {
        println!("containment: {:?}", containment::get().mode());
        assert_eq!(
            spawn_error(&["no-such-program-rexec"], "/"),
            "failed to spawn `no-such-program-rexec`: No such file or directory (os error 2)"
        );
        let plain = super::super::clone_spawn::tests::not_executable("spawn-noexec");
        assert_eq!(
            spawn_error(&[&plain], "/"),
            format!("failed to spawn `{plain}`: Permission denied (os error 13)")
        );
        let _ = std::fs::remove_file(plain);
        assert_eq!(
            spawn_error(&["true"], "/no/such/dir"),
            "cwd /no/such/dir: No such file or directory (os error 2)"
        );
        containment::get().settle();
    }
}
