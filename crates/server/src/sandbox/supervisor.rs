//! The server's side of the network filter: answers each seccomp user notification with
//! EPERM and records the refused call, so the exit verdict can name it exactly.
//!
//! The record is made before the answer, so it always precedes the child's exit. The task
//! ends when the kernel reports that no process uses the filter any more (POLLHUP).

use rexec_protocol::sandbox::{DenialRule, SandboxDenial};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

/// Calls the filter refused, in order.
pub type Refusals = Arc<Mutex<Vec<SandboxDenial>>>;

pub fn supervise(listener: OwnedFd, refusals: Refusals) -> io::Result<JoinHandle<()>> {
    let listener = crate::sync::register(listener)?;
    Ok(tokio::spawn(async move {
        if let Err(err) = serve(&listener, &refusals).await {
            tracing::warn!(%err, "seccomp supervisor stopped");
        }
    }))
}

async fn serve(listener: &AsyncFd<OwnedFd>, refusals: &Refusals) -> io::Result<()> {
    loop {
        let mut guard = listener.readable().await?;
        // Readiness may be stale, and RECV blocks when nothing is pending: ask first.
        match pending(listener.get_ref())? {
            Pending::Notification => {}
            Pending::Nothing => {
                guard.clear_ready();
                continue;
            }
            Pending::NoUsers => return Ok(()),
        }
        let Some(notification) = receive(listener.get_ref())? else {
            continue;
        };
        let args = notification.data.args;
        crate::sync::lock(refusals).push(SandboxDenial {
            rule: DenialRule::Network,
            exact: true,
            detail: format!(
                "socket({}, {})",
                domain_name(args[0] as i32),
                type_name(args[1] as i32)
            ),
        });
        refuse(listener.get_ref(), notification.id)?;
    }
}

enum Pending {
    Notification,
    Nothing,
    NoUsers,
}

fn pending(fd: &OwnedFd) -> io::Result<Pending> {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    if unsafe { libc::poll(&raw mut poll, 1, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(if poll.revents & libc::POLLIN != 0 {
        Pending::Notification
    } else if poll.revents & libc::POLLHUP != 0 {
        Pending::NoUsers
    } else {
        Pending::Nothing
    })
}

/// The next notification; `None` when its caller died in the meantime.
fn receive(fd: &OwnedFd) -> io::Result<Option<libc::seccomp_notif>> {
    // SAFETY: the kernel requires a zeroed struct, which is a valid value of this POD type.
    let mut notification: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: RECV writes one seccomp_notif into the buffer we pass.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &raw mut notification,
        )
    };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOENT | libc::EINTR) => Ok(None),
            _ => Err(err),
        };
    }
    Ok(Some(notification))
}

fn refuse(fd: &OwnedFd, id: u64) -> io::Result<()> {
    let mut response = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: -libc::EPERM,
        flags: 0,
    };
    // SAFETY: SEND reads one seccomp_notif_resp.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &raw mut response,
        )
    };
    if rc < 0 {
        let err = io::Error::last_os_error();
        // ENOENT: the caller was killed while we answered; nothing waits for it.
        if err.raw_os_error() != Some(libc::ENOENT) {
            return Err(err);
        }
    }
    Ok(())
}

fn domain_name(domain: i32) -> String {
    match domain {
        libc::AF_INET => "AF_INET".to_owned(),
        libc::AF_INET6 => "AF_INET6".to_owned(),
        libc::AF_NETLINK => "AF_NETLINK".to_owned(),
        libc::AF_PACKET => "AF_PACKET".to_owned(),
        other => format!("domain {other}"),
    }
}

fn type_name(kind: i32) -> String {
    match kind & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) {
        libc::SOCK_STREAM => "SOCK_STREAM".to_owned(),
        libc::SOCK_DGRAM => "SOCK_DGRAM".to_owned(),
        libc::SOCK_RAW => "SOCK_RAW".to_owned(),
        libc::SOCK_SEQPACKET => "SOCK_SEQPACKET".to_owned(),
        other => format!("type {other}"),
    }
}
