//! Small primitives every module shares and none owns: a mutex lock that survives
//! poisoning, and registering a descriptor with the reactor.

use std::os::fd::OwnedFd;
use std::sync::{Mutex, MutexGuard};
use tokio::io::unix::AsyncFd;

/// Lock a mutex, recovering from poisoning: every critical section here leaves its data
/// consistent, so a panic elsewhere must not take the server down with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Make a descriptor non-blocking and register it with the reactor. (tokio hands pipe
/// descriptors back from `into_owned_fd` in blocking mode; a blocking read would stall a
/// runtime thread.)
pub(crate) fn register(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    rustix::io::ioctl_fionbio(&fd, true)?;
    // SAFETY: an `OwnedFd` is a valid open descriptor that nothing else closes, and it
    // returns the same descriptor for as long as the `AsyncFd` owns it.
    Ok(unsafe { AsyncFd::register(fd) }?)
}
