//! Sandboxed processes on Linux: a caller's policy turned into a [`Plan`], applied by the
//! `rexec` binary re-executed as a helper (mount namespace for protected paths, Landlock,
//! `no_new_privs`, a seccomp network filter), and the `sandboxDenied` verdict at exit.
//!
//! Flow of one sandboxed start: the handler resolves the policy ([`policy::resolve`]);
//! [`HelperCommand::new`] builds the helper's command line and a report channel; the
//! process is spawned through the helper; [`Sandbox::launch`] waits for the helper's report
//! (the start fails with -32602 when the policy could not be applied, so nothing ever runs
//! unsandboxed) and supervises the network filter; the pump asks [`Sandbox::verdict`] when
//! the process exits.

mod channel;
mod denial;
pub mod helper;
mod landlock;
mod mounts;
pub mod policy;
mod seccomp;
mod supervisor;

pub use channel::SetupError;
pub use policy::Plan;

use rexec_protocol::sandbox::SandboxDenial;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use supervisor::Refusals;
use tokio::task::JoinHandle;

/// How to spawn a command through the helper: program, arguments, and the channel fd the
/// child must inherit.
pub struct HelperCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The helper's end of the report channel; spawn clears its close-on-exec flag.
    pub channel: OwnedFd,
    /// Our end.
    report: OwnedFd,
}

impl HelperCommand {
    pub fn new(
        helper: &Path,
        plan: &Plan,
        argv: &[String],
        arg0: Option<&str>,
    ) -> io::Result<Self> {
        let (report, channel) = channel::pair()?;
        let plan = serde_json::to_string(plan).map_err(io::Error::other)?;
        let mut args: Vec<OsString> = vec![
            helper::HELPER_ARG.into(),
            channel.as_raw_fd().to_string().into(),
            plan.into(),
            arg0.unwrap_or_default().into(),
            "--".into(),
        ];
        args.extend(argv.iter().map(OsString::from));
        Ok(Self {
            program: helper.to_path_buf(),
            args,
            channel,
            report,
        })
    }

    pub fn inherited_fd(&self) -> RawFd {
        self.channel.as_raw_fd()
    }
}

/// Confine the calling thread to `plan`'s file-system rules (Landlock applies per thread),
/// for one file-system request on a thread of its own that ends with it. The mount
/// namespace for protected paths is per process, so callers check [`Plan::protects`].
pub fn confine_thread(plan: &Plan) -> Result<(), String> {
    match &plan.file_system {
        Some(rules) => landlock::restrict(rules, true),
        None => Ok(()),
    }
}

/// A sandboxed process's policy and what its filter refused.
pub struct Sandbox {
    plan: Plan,
    cwd: PathBuf,
    refusals: Refusals,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl Sandbox {
    /// After the helper was spawned (and `command.channel` dropped): wait until it has
    /// applied the plan and exec'd the command, then supervise its network filter.
    pub async fn launch(
        command: HelperCommand,
        plan: Plan,
        cwd: &Path,
    ) -> Result<Self, SetupError> {
        let HelperCommand {
            channel, report, ..
        } = command;
        drop(channel);
        let listener = channel::await_exec(report).await?;
        let refusals = Refusals::default();
        let supervisor = listener
            .map(|fd| supervisor::supervise(fd, refusals.clone()))
            .transpose()
            .map_err(|err| SetupError::Sandbox(format!("supervising the network filter: {err}")))?;
        Ok(Self {
            plan,
            cwd: cwd.to_path_buf(),
            refusals,
            supervisor: Mutex::new(supervisor),
        })
    }

    /// The denial verdict for an exit with `exit_code` after printing `output`.
    pub fn verdict(&self, exit_code: i32, output: &str) -> Option<SandboxDenial> {
        let refusals = crate::sync::lock(&self.refusals).clone();
        denial::judge(exit_code, &self.plan, &self.cwd, &refusals, output)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(task) = crate::sync::lock(&self.supervisor).take() {
            task.abort();
        }
    }
}
