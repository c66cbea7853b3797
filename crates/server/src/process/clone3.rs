//! The raw `clone3(CLONE_INTO_CGROUP | CLONE_PIDFD)` call that [`super::clone_spawn`]
//! makes, and the child's entry.
//!
//! On x86_64 it is `posix_spawn`'s technique: `CLONE_VM | CLONE_VFORK` with a stack of
//! the child's own, so nothing of the server's address space is copied (a fork-like clone
//! copies its page tables and then takes copy-on-write faults in both processes: most of
//! a spawn's cost in a server of this size). The calling thread is suspended until the
//! child has exec'd or exited; the child runs `entry` on its stack and never returns to
//! Rust code. Elsewhere the clone is fork-like (its own copy of the address space).
//!
//! In both, every signal is blocked in the calling thread around the clone, so no handler
//! of the server (tokio's) runs in the child; the child resets caught signals to their
//! default before it unblocks (as `posix_spawn` does).

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const CLONE_VM: u64 = 0x100;
const CLONE_VFORK: u64 = 0x4000;
const CLONE_PIDFD: u64 = 0x1000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// The child's stack (it makes a handful of libc calls, then execs), plus a guard page.
const STACK_BYTES: usize = 64 * 1024;
const GUARD_BYTES: usize = 4096;
/// The highest signal number on Linux (SIGRTMAX).
const LAST_SIGNAL: c_int = 64;

/// `struct clone_args` of `<linux/sched.h>`, up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What runs in the child: must not return, and may only make async-signal-safe calls
/// that touch no memory the server's other threads use (it may share their memory).
pub type Entry = unsafe extern "C" fn(*const c_void) -> !;

/// Clone a child into `cgroup` that runs `entry(arg)`. Its pid and pidfd.
///
/// # Safety
/// `entry` must keep to what [`Entry`] says; `arg` must stay valid until this returns.
pub unsafe fn clone_into(
    cgroup: BorrowedFd<'_>,
    entry: Entry,
    arg: *const c_void,
) -> io::Result<(i32, OwnedFd)> {
    let stack = ChildStack::new()?;
    let mut pidfd: c_int = -1;
    let mut args = CloneArgs {
        flags: CLONE_PIDFD | CLONE_INTO_CGROUP,
        pidfd: &raw mut pidfd as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    if cfg!(target_arch = "x86_64") {
        args.flags |= CLONE_VM | CLONE_VFORK;
        args.stack = stack.base as u64;
        args.stack_size = STACK_BYTES as u64;
    }
    let _blocked = SignalsBlocked::new();
    // SAFETY: `args` is a valid clone_args; see `raw_clone3` for the child's side.
    let pid = unsafe { raw_clone3(&args, entry, arg) };
    if pid < 0 {
        return Err(io::Error::from_raw_os_error(-pid as i32));
    }
    // SAFETY: the kernel stored a new pidfd (close-on-exec) that nothing else owns.
    Ok((pid as i32, unsafe { OwnedFd::from_raw_fd(pidfd) }))
}

/// clone3 that makes the child call `entry(arg)` on the stack in `args` (the kernel has
/// switched to it) and never come back. Returns the pid or -errno in the parent.
#[cfg(target_arch = "x86_64")]
unsafe fn raw_clone3(args: &CloneArgs, entry: Entry, arg: *const c_void) -> i64 {
    let ret: i64;
    // SAFETY: the syscall reads `args` and writes the pidfd slot it points at. The child
    // starts at the instruction after `syscall` with rax = 0 and rsp at the top of its
    // own (16-byte aligned) stack; it clears the frame pointer and calls `entry`, which
    // never returns (ud2 if it did). rcx and r11 are clobbered by `syscall`.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *const CloneArgs,
            in("rsi") size_of::<CloneArgs>(),
            in("r12") entry,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// Fork-like: the child returns here on its own copy of the address space.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn raw_clone3(args: &CloneArgs, entry: Entry, arg: *const c_void) -> i64 {
    // SAFETY: a valid clone_args without CLONE_VM; the child only calls `entry`.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args as *const CloneArgs,
            size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // SAFETY: in the child, as the caller of `clone_into` promised.
        unsafe { entry(arg) }
    }
    if pid < 0 {
        -(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO) as i64)
    } else {
        pid
    }
}

/// An mmap'd stack with a guard page below it, unmapped on drop (after the child is done
/// with it: CLONE_VFORK returns only then).
struct ChildStack {
    map: *mut c_void,
    /// The lowest usable address.
    base: *mut c_void,
}

impl ChildStack {
    fn new() -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping; nothing else refers to it.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STACK_BYTES + GUARD_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Self {
            map,
            // SAFETY: within the mapping.
            base: unsafe { map.cast::<u8>().add(GUARD_BYTES).cast() },
        };
        // SAFETY: the lowest page of our own mapping.
        if unsafe { libc::mprotect(map, GUARD_BYTES, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: our mapping, no longer used by any child.
        unsafe { libc::munmap(self.map, STACK_BYTES + GUARD_BYTES) };
    }
}

/// Every signal blocked in the calling thread until drop.
struct SignalsBlocked(libc::sigset_t);

impl SignalsBlocked {
    fn new() -> Self {
        // SAFETY: sigset_t is plain data; the calls only read and write these two sets.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            Self(old)
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// In the child: every caught signal back to its default disposition, SIGPIPE (which the
/// Rust runtime ignores) too, then nothing blocked — the state the standard library gives
/// its children. Errno on failure.
///
/// # Safety
/// Only in a child of [`clone_into`] (it has its own signal handlers, not the server's).
pub unsafe fn reset_signals() -> Result<(), c_int> {
    // SAFETY: sigaction and sigprocmask on the child's own dispositions and mask.
    unsafe {
        for signal in 1..=LAST_SIGNAL {
            let mut action: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut action) != 0 {
                continue; // SIGKILL, SIGSTOP, the C library's own
            }
            let caught =
                action.sa_sigaction != libc::SIG_DFL && action.sa_sigaction != libc::SIG_IGN;
            if caught || signal == libc::SIGPIPE {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
            return Err(errno());
        }
    }
    Ok(())
}

/// The calling thread's errno (no allocation).
pub fn errno() -> c_int {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}
