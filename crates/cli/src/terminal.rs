//! The local terminal for `rexec shell`: raw mode that is restored on every exit path, and
//! the window size.

use rustix::termios::{self, OptionalActions, Termios, Winsize};
use std::io::IsTerminal;
use std::os::fd::BorrowedFd;

/// Puts stdin's terminal in raw mode; restores the saved settings when dropped (normal
/// return, error, or panic unwinding) or when [`RawMode::restore`] is called.
pub struct RawMode {
    saved: Option<Termios>,
}

fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

impl RawMode {
    pub fn enable() -> anyhow::Result<Self> {
        anyhow::ensure!(std::io::stdin().is_terminal(), "stdin is not a terminal");
        let saved = termios::tcgetattr(stdin_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(stdin_fd(), OptionalActions::Drain, &raw)?;
        Ok(Self { saved: Some(saved) })
    }

    pub fn restore(&mut self) {
        if let Some(saved) = self.saved.take() {
            let _ = termios::tcsetattr(stdin_fd(), OptionalActions::Drain, &saved);
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        self.restore();
    }
}

/// The local window size (rows, cols), if stdout or stdin is a terminal.
pub fn window_size() -> Option<(u16, u16)> {
    // SAFETY: fds 0 and 1 stay open for the life of the process.
    let fds = unsafe { [BorrowedFd::borrow_raw(1), BorrowedFd::borrow_raw(0)] };
    fds.into_iter().find_map(|fd| {
        let Winsize { ws_row, ws_col, .. } = termios::tcgetwinsize(fd).ok()?;
        (ws_row > 0 && ws_col > 0).then_some((ws_row, ws_col))
    })
}
