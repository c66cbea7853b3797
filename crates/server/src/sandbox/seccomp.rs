//! The network half of a plan: a seccomp filter, installed by the helper, that refuses
//! every socket but AF_UNIX — and tells the server exactly which call it refused.
//!
//! `socket(2)` with any other domain does not fail on the spot: it raises a seccomp user
//! notification on a listener fd the helper hands to the server (see `supervisor`), which
//! records the call (domain, type) and answers EPERM. That record is what makes a network
//! denial *exact*. io_uring (which can create sockets without `socket(2)`) is refused
//! outright. seccompiler compiles the filter; it has no user-notification action, so the
//! filter is compiled with `Trap` in that place and the return value patched.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};

const SECCOMP_RET_TRAP: u32 = 0x0003_0000;
const BPF_RET_K: u16 = 0x06;

/// Install the filters on the calling (single-threaded) process; returns the notification
/// listener. Sets `no_new_privs`, which seccomp requires.
pub fn restrict_network() -> Result<OwnedFd, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|err| format!("seccomp on {}: {err}", std::env::consts::ARCH))?;
    seccompiler::apply_filter(&refuse_filter(arch)?).map_err(|err| format!("seccomp: {err}"))?;
    let program = notify_filter(arch)?;
    let fprog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| "seccomp filter too long")?,
        filter: program.as_ptr().cast_mut().cast(),
    };
    // SAFETY: the kernel copies the program; `fprog` and `program` outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &raw const fprog,
        )
    };
    if fd < 0 {
        return Err(format!("seccomp: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a successful NEW_LISTENER install returns a fresh fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A rule matching calls whose first argument (the domain) is not AF_UNIX.
fn not_unix() -> Result<Vec<SeccompRule>, String> {
    let condition = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Ne,
        libc::AF_UNIX as u64,
    )
    .map_err(|err| err.to_string())?;
    Ok(vec![
        SeccompRule::new(vec![condition]).map_err(|err| err.to_string())?,
    ])
}

/// EPERM for socketpair outside AF_UNIX and for io_uring.
fn refuse_filter(arch: TargetArch) -> Result<BpfProgram, String> {
    let mut rules = BTreeMap::new();
    rules.insert(libc::SYS_socketpair, not_unix()?);
    for call in [
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ] {
        rules.insert(call, Vec::new());
    }
    let errno = SeccompAction::Errno(libc::EPERM as u32);
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, errno, arch)
        .map_err(|err| err.to_string())?;
    filter
        .try_into()
        .map_err(|err: seccompiler::BackendError| err.to_string())
}

/// A user notification for `socket(2)` outside AF_UNIX.
fn notify_filter(arch: TargetArch) -> Result<BpfProgram, String> {
    let mut rules = BTreeMap::new();
    rules.insert(libc::SYS_socket, not_unix()?);
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Trap, arch)
        .map_err(|err| err.to_string())?;
    let mut program: BpfProgram = filter
        .try_into()
        .map_err(|err: seccompiler::BackendError| err.to_string())?;
    for instruction in &mut program {
        if instruction.code == BPF_RET_K && instruction.k == SECCOMP_RET_TRAP {
            instruction.k = libc::SECCOMP_RET_USER_NOTIF;
        }
    }
    if arch == TargetArch::x86_64 {
        // x32 system calls share the x86_64 audit arch but carry their own numbers (bit 30
        // set), which the rules above would not match: refuse them all. seccompiler's
        // program is [arch check ×3, load nr, …]; the nr is in the accumulator here.
        let guard = [
            bpf(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1),
            bpf(
                BPF_RET_K,
                libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
                0,
                0,
            ),
        ];
        program.splice(4..4, guard);
    }
    Ok(program)
}

const BPF_JGE_K: u16 = 0x05 | 0x30;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn bpf(code: u16, k: u32, jt: u8, jf: u8) -> seccompiler::sock_filter {
    seccompiler::sock_filter { code, jt, jf, k }
}
