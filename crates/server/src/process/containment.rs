//! Which mechanism makes every descendant of a process die with it, chosen once per server
//! process: a cgroup v2 per process ([`super::cgroup`]) where the server can create one,
//! else the child-subreaper fallback ([`super::reaper`]). `REXEC_PROCESS_CONTAINMENT=
//! subreaper` forces the fallback (tests use it).
//!
//! [`Containment::prepare`] is called right before a spawn; the [`Preparing`] it returns
//! gives the spawn the cgroup to clone the child into and becomes the process's [`Descendants`]:
//! what terminate, session expiry and shutdown kill, and what is removed once empty.

use super::cgroup::{Cgroup, CgroupTree};
use super::reaper::{Attribution, Reaper};
use rexec_protocol::environment::ProcessContainment;
use rustix::process::Pid;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock, RwLockReadGuard};
use std::time::Duration;

/// The environment variable that forces the subreaper fallback.
pub const FORCE_ENV: &str = "REXEC_PROCESS_CONTAINMENT";
/// How long shutdown waits for killed cgroups to empty before removing them.
const SHUTDOWN_SETTLE: Duration = Duration::from_secs(2);

pub enum Containment {
    Cgroup(CgroupTree),
    Subreaper(Reaper),
}

static CONTAINMENT: OnceLock<Containment> = OnceLock::new();

/// The server process's containment, chosen (and logged) at the first call.
pub fn get() -> &'static Containment {
    CONTAINMENT.get_or_init(Containment::detect)
}

impl Containment {
    fn detect() -> Self {
        let forced = std::env::var(FORCE_ENV).is_ok_and(|v| v == "subreaper");
        let why = if forced {
            format!("{FORCE_ENV}=subreaper")
        } else {
            match CgroupTree::create() {
                Ok(tree) => {
                    tracing::info!(cgroup = %tree.dir().display(), "process containment: cgroup");
                    return Self::Cgroup(tree);
                }
                Err(why) => why,
            }
        };
        let reaper = Reaper::new().unwrap_or_else(|err| {
            tracing::warn!(%err, "cannot become a child subreaper; orphans go to init");
            Reaper::default()
        });
        tracing::info!(
            reason = %why,
            "process containment: subreaper (descendants that leave the process's group, session and output unseen are killed only at shutdown)"
        );
        Self::Subreaper(reaper)
    }

    pub fn mode(&self) -> ProcessContainment {
        match self {
            Self::Cgroup(_) => ProcessContainment::Cgroup,
            Self::Subreaper(_) => ProcessContainment::Subreaper,
        }
    }

    /// Get ready to spawn one child.
    pub fn prepare(&'static self) -> io::Result<Preparing> {
        Ok(match self {
            Self::Cgroup(tree) => {
                let cgroup = tree.create_leaf()?;
                let dir = match cgroup.open_dir() {
                    Ok(fd) => fd,
                    Err(err) => {
                        tree.release(&cgroup);
                        return Err(err);
                    }
                };
                Preparing::Cgroup {
                    tree,
                    cgroup: Arc::new(cgroup),
                    dir,
                    spawned: false,
                }
            }
            Self::Subreaper(reaper) => Preparing::Subreaper {
                reaper,
                _gate: reaper.spawn_gate(),
            },
        })
    }

    /// Shutdown, after every process was killed: wait for the killed cgroups to empty and
    /// remove them and the server's directory; or kill every remaining orphan.
    pub fn settle(&self) {
        match self {
            Self::Cgroup(tree) => tree.settle(SHUTDOWN_SETTLE),
            Self::Subreaper(reaper) => reaper.kill_orphans(),
        }
    }

    /// Remove killed cgroups that have emptied since (cheap when there are none).
    pub fn sweep(&self) {
        if let Self::Cgroup(tree) = self {
            tree.sweep();
        }
    }

    /// Reap orphans re-parented to the server: on every SIGCHLD, in the subreaper mode.
    /// Needs a tokio runtime; one task per call (a server in tests may start several).
    pub fn start_reaping(&'static self) {
        let Self::Subreaper(reaper) = self else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut children) = signal(SignalKind::child()) else {
                return;
            };
            while children.recv().await.is_some() {
                reaper.reap_orphans();
            }
        });
    }
}

/// Containment for a child about to be spawned.
pub enum Preparing {
    Cgroup {
        tree: &'static CgroupTree,
        cgroup: Arc<Cgroup>,
        /// The cgroup's directory, to clone the child into.
        dir: OwnedFd,
        /// Unset, the cgroup is removed on drop (the spawn failed).
        spawned: bool,
    },
    Subreaper {
        reaper: &'static Reaper,
        /// Keeps the reaper from looking at the server's children until this one is known.
        _gate: RwLockReadGuard<'static, ()>,
    },
}

impl Preparing {
    /// The cgroup's directory (`O_PATH`) to clone the child into, if it gets one.
    pub fn cgroup_dir(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Self::Cgroup { dir, .. } => Some(dir.as_fd()),
            Self::Subreaper { .. } => None,
        }
    }

    /// `cgroup.procs`, for a child to write "0" to in `pre_exec` where it cannot be cloned
    /// into its cgroup.
    pub fn open_procs(&self) -> io::Result<Option<OwnedFd>> {
        match self {
            Self::Cgroup { cgroup, .. } => cgroup.open_procs().map(Some),
            Self::Subreaper { .. } => Ok(None),
        }
    }

    pub fn needs_fd_targets(&self) -> bool {
        matches!(self, Self::Subreaper { .. })
    }

    /// The child is running as `pid`; `fd_targets` name its output for attribution.
    pub fn spawned(
        mut self,
        pid: Pid,
        session_leader: bool,
        fd_targets: Vec<String>,
    ) -> Descendants {
        let kind = match &mut self {
            Self::Cgroup {
                tree,
                cgroup,
                spawned,
                ..
            } => {
                *spawned = true;
                Kind::Cgroup {
                    tree,
                    cgroup: Arc::clone(cgroup),
                }
            }
            Self::Subreaper { reaper, .. } => {
                reaper.register(pid);
                Kind::Subreaper {
                    reaper,
                    attribution: Attribution {
                        pid,
                        start_time: super::reaper::start_time(pid),
                        session_leader,
                        fd_targets,
                    },
                }
            }
        };
        Descendants { pid, kind }
    }
}

impl Drop for Preparing {
    /// A spawn that failed: its cgroup is still empty.
    fn drop(&mut self) {
        if let Self::Cgroup {
            tree,
            cgroup,
            spawned: false,
            ..
        } = self
        {
            tree.release(cgroup);
        }
    }
}

/// Everything one process may have started, for killing and clean-up.
pub struct Descendants {
    pid: Pid,
    kind: Kind,
}

enum Kind {
    Cgroup {
        tree: &'static CgroupTree,
        cgroup: Arc<Cgroup>,
    },
    Subreaper {
        reaper: &'static Reaper,
        attribution: Attribution,
    },
}

impl Descendants {
    /// The child's pid, which is also its process group (and, for a PTY, its session).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Whether killing stays safe after the process closed. A cgroup can hold no stranger;
    /// group and session ids of a finished process may name someone else's by then.
    pub fn kill_outlives_close(&self) -> bool {
        matches!(self.kind, Kind::Cgroup { .. })
    }

    /// SIGKILL the process and its descendants.
    pub fn kill(&self) {
        match &self.kind {
            Kind::Cgroup { tree, cgroup } => tree.kill(cgroup),
            Kind::Subreaper {
                reaper,
                attribution,
            } => {
                super::signal_group(self.pid, rustix::process::Signal::KILL);
                reaper.kill(attribution);
            }
        }
    }

    /// The child itself was reaped (the pump waited for it).
    pub fn reaped(&self) {
        if let Kind::Subreaper { reaper, .. } = &self.kind {
            reaper.unregister(self.pid);
        }
    }

    /// Remove what is left once nothing runs in it. False while descendants still run
    /// (a daemon that closed its output): the caller keeps [`Self::lingering`] to kill it
    /// with the session.
    pub fn remove_if_empty(&self) -> bool {
        match &self.kind {
            Kind::Cgroup { tree, cgroup } => tree.release(cgroup),
            Kind::Subreaper { .. } => true,
        }
    }

    /// What to keep for a later kill after the process itself is forgotten.
    pub fn lingering(&self) -> Option<Lingering> {
        match &self.kind {
            Kind::Cgroup { tree, cgroup } => Some(Lingering {
                tree,
                cgroup: Arc::clone(cgroup),
            }),
            Kind::Subreaper { .. } => None,
        }
    }
}

impl Drop for Descendants {
    /// The process is gone from the server: an empty cgroup goes with it (one that still
    /// has members is held by [`Lingering`] or was killed and buried).
    fn drop(&mut self) {
        self.reaped();
        self.remove_if_empty();
    }
}

/// The cgroup of a forgotten process whose descendants still run.
pub struct Lingering {
    tree: &'static CgroupTree,
    cgroup: Arc<Cgroup>,
}

impl Lingering {
    /// Removed (empty now)?
    pub fn remove_if_empty(&self) -> bool {
        self.tree.release(&self.cgroup)
    }

    pub fn kill(&self) {
        self.tree.kill(&self.cgroup);
    }
}
