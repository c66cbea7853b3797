//! The helper's report to the server, over a SEQPACKET socket pair: one message per event,
//! and end-of-file when the helper's exec succeeded (its end is close-on-exec).
//!
//! `listener` carries the seccomp notification fd; `exec` is sent just before the exec;
//! `sandbox:<why>` and `spawn:<errno>:<why>` say why the command will not run. End-of-file
//! right after `exec` is the only success.

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// How long the helper may take to set up and exec before the start fails.
const SETUP_LIMIT: Duration = Duration::from_secs(10);

/// (server end, helper end), both close-on-exec.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

// ----- helper side -----

pub fn send(channel: impl AsFd, message: &str) {
    let mut control = SendAncillaryBuffer::default();
    // Nothing useful can be done if the server is gone; the exit status tells the rest.
    let _ = rustix::net::sendmsg(
        channel,
        &[IoSlice::new(message.as_bytes())],
        &mut control,
        SendFlags::empty(),
    );
}

pub fn send_listener(channel: impl AsFd, listener: &OwnedFd) -> io::Result<()> {
    let fds = [listener.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        channel,
        &[IoSlice::new(b"listener")],
        &mut control,
        SendFlags::empty(),
    )?;
    Ok(())
}

// ----- server side -----

/// Why a sandboxed start did not reach its command.
#[derive(Debug)]
pub enum SetupError {
    /// The policy could not be applied: the start fails with -32602.
    Sandbox(String),
    /// The command could not be executed (not found, not executable): -32603, as an
    /// unsandboxed spawn failure.
    Spawn(io::Error),
}

/// Wait for the helper's report. `Ok` carries the seccomp listener when it sent one.
pub async fn await_exec(channel: OwnedFd) -> Result<Option<OwnedFd>, SetupError> {
    match tokio::time::timeout(SETUP_LIMIT, read_report(channel)).await {
        Ok(result) => result,
        Err(_) => Err(SetupError::Sandbox(format!(
            "sandbox helper did not start the command within {SETUP_LIMIT:?}"
        ))),
    }
}

async fn read_report(channel: OwnedFd) -> Result<Option<OwnedFd>, SetupError> {
    let io_error = |err: io::Error| SetupError::Sandbox(format!("sandbox helper channel: {err}"));
    let channel = crate::sync::register(channel).map_err(io_error)?;
    let mut listener = None;
    let mut exec_sent = false;
    loop {
        let (text, fd) = receive(&channel).await.map_err(io_error)?;
        let Some(text) = text else {
            return if exec_sent {
                Ok(listener)
            } else {
                Err(SetupError::Sandbox(
                    "sandbox helper exited before running the command".to_owned(),
                ))
            };
        };
        if let Some(fd) = fd {
            listener = Some(fd);
        }
        if text == "exec" {
            exec_sent = true;
        } else if let Some(why) = text.strip_prefix("sandbox:") {
            return Err(SetupError::Sandbox(why.to_owned()));
        } else if let Some(rest) = text.strip_prefix("spawn:") {
            let (errno, why) = rest.split_once(':').unwrap_or(("0", rest));
            let kind = io::Error::from_raw_os_error(errno.parse().unwrap_or(0)).kind();
            return Err(SetupError::Spawn(io::Error::new(kind, why.to_owned())));
        }
    }
}

/// One message and the fd it carried; `None` text at end-of-file.
async fn receive(channel: &AsyncFd<OwnedFd>) -> io::Result<(Option<String>, Option<OwnedFd>)> {
    loop {
        let mut guard = channel.readable().await?;
        let attempt = guard.try_io(|fd| {
            let mut bytes = [0u8; 4096];
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let received = rustix::net::recvmsg(
                fd.get_ref(),
                &mut [IoSliceMut::new(&mut bytes)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )?;
            let mut passed = None;
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = message {
                    passed = fds.into_iter().next();
                }
            }
            let text = (received.bytes > 0)
                .then(|| String::from_utf8_lossy(&bytes[..received.bytes]).into_owned());
            Ok((text, passed))
        });
        if let Ok(result) = attempt {
            return result;
        }
    }
}
