//! Running a sandboxed `fs/*` request: on a fresh OS thread that first confines itself to
//! the plan with Landlock (which applies per thread) and ends with the request, so the
//! kernel refuses what the policy does not allow — symlink and `..` escapes included —
//! before anything touches the disk. Paths the plan keeps read-only inside writable trees
//! (`.git`, …) are protected by a mount namespace for processes; here they are checked
//! against the request's write targets first. The deadline and the cap of `limit` apply
//! to these threads as to the blocking pool.

use crate::sandbox::{Plan, confine_thread};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;

/// The sandbox of one request: its plan and what it writes.
pub struct Confinement {
    pub plan: Arc<Plan>,
    pub writes: Vec<PathBuf>,
    /// The request removes whole trees: a protected path inside a target is refused too.
    pub removes_tree: bool,
}

impl Confinement {
    fn check_protected(&self) -> io::Result<()> {
        match self
            .writes
            .iter()
            .find(|path| self.plan.protects(path, self.removes_tree))
        {
            Some(path) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "writing {} is not permitted: it is read-only in the sandbox",
                    path.display()
                ),
            )),
            None => Ok(()),
        }
    }
}

/// Run `work` on a fresh OS thread confined to the plan and send its outcome to `done`;
/// the thread ends with it.
pub fn spawn<T: Send + 'static>(
    confinement: Confinement,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
    done: oneshot::Sender<io::Result<T>>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("rexec-fs-sandbox".to_owned())
        .spawn(move || {
            let outcome = confinement.check_protected().and_then(|()| {
                confine_thread(&confinement.plan).map_err(|why| {
                    io::Error::other(format!("failed to prepare filesystem sandbox: {why}"))
                })?;
                work()
            });
            let _ = done.send(outcome);
        })?;
    Ok(())
}
