//! The sandbox helper: the `rexec` binary re-executed in a hidden mode, between the server
//! and a sandboxed command. It applies the plan to itself — protected mounts, Landlock,
//! `no_new_privs`, the network filter — and then execs the command, so the command is the
//! process the server spawned (same pid, process group, terminal and pipes).
//!
//! Doing this in a fresh process rather than in a `pre_exec` hook means the policy code may
//! allocate, read files and report errors freely: nothing runs between fork and exec but
//! std's own spawn path. Command line:
//!
//! ```text
//! rexec __sandbox-exec CHANNEL_FD PLAN_JSON ARG0 -- PROGRAM [ARGS…]
//! ```
//!
//! `ARG0` is empty when the program's own name is used. Every outcome is reported on the
//! channel (see `channel`); the exit status only matters if the server is gone.

use super::policy::Plan;
use super::{channel, landlock, mounts, seccomp};
use std::ffi::OsString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The hidden first argument that selects helper mode.
pub const HELPER_ARG: &str = "__sandbox-exec";

/// Exit status when the sandbox could not be applied (the server reports the reason).
const SETUP_FAILED: i32 = 126;
const EXEC_FAILED: i32 = 127;

/// Run the helper with the arguments after [`HELPER_ARG`]. Never returns.
pub fn main(args: Vec<OsString>) -> ! {
    let mut args = args.into_iter();
    let Some(channel) = args
        .next()
        .and_then(|fd| fd.to_str()?.parse::<i32>().ok())
        .filter(|fd| *fd > 2)
    else {
        eprintln!("rexec {HELPER_ARG}: expected CHANNEL_FD PLAN_JSON ARG0 -- PROGRAM [ARGS…]");
        std::process::exit(SETUP_FAILED);
    };
    // SAFETY: the server passed this fd, open and ours alone, on our command line.
    let channel = unsafe { OwnedFd::from_raw_fd(channel) };
    let _ = rustix::io::fcntl_setfd(&channel, rustix::io::FdFlags::CLOEXEC);
    let fail = |why: String| -> ! {
        channel::send(&channel, &format!("sandbox:{why}"));
        std::process::exit(SETUP_FAILED);
    };
    let plan: Plan = match args
        .next()
        .map(|p| serde_json::from_str(&p.to_string_lossy()))
    {
        Some(Ok(plan)) => plan,
        Some(Err(err)) => fail(format!("bad sandbox plan: {err}")),
        None => fail("no sandbox plan".to_owned()),
    };
    let arg0 = args.next().filter(|a| !a.is_empty());
    if args.next().is_none_or(|dash| dash != "--") {
        fail("expected `--` before the command".to_owned());
    }
    let Some(program) = args.next() else {
        fail("no command".to_owned());
    };
    if let Err(why) = apply(&plan, &channel) {
        fail(why);
    }
    let mut command = Command::new(&program);
    command.args(args);
    if let Some(arg0) = arg0 {
        command.arg0(arg0);
    }
    channel::send(&channel, "exec");
    let err = command.exec();
    let errno = err.raw_os_error().unwrap_or(0);
    channel::send(
        &channel,
        &format!(
            "spawn:{errno}:failed to spawn `{}`: {err}",
            program.to_string_lossy()
        ),
    );
    std::process::exit(EXEC_FAILED);
}

/// Apply the plan to this process: mounts first (they need privileges Landlock takes
/// away), then Landlock, then the network filter, whose listener goes to the server.
fn apply(plan: &Plan, channel: &OwnedFd) -> Result<(), String> {
    if let Some(rules) = &plan.file_system {
        mounts::protect(&rules.protected)?;
        landlock::restrict(rules, plan.network)?;
    }
    if plan.network {
        // SAFETY: plain prctl; the file-system step may already have set it.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(format!(
                "PR_SET_NO_NEW_PRIVS: {}",
                std::io::Error::last_os_error()
            ));
        }
        return Ok(());
    }
    let listener = seccomp::restrict_network()?;
    channel::send_listener(channel, &listener)
        .map_err(|err| format!("handing the seccomp listener to the server: {err}"))
}
