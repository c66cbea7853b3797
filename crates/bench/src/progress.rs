//! A progress bar on stderr for long runs; hidden (notes still printed) when stderr is not
//! a terminal, so logs and `--json` pipes stay clean.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress over a known number of steps. Call [`Progress::finish`] to remove it.
pub struct Progress {
    bar: ProgressBar,
    visible: bool,
}

impl Progress {
    /// A bar of `total` steps labelled `what`.
    pub fn new(total: u64, what: &str) -> Self {
        let visible = std::io::stderr().is_terminal();
        let bar = if visible {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) =
            ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} [{elapsed}, eta {eta}]")
        {
            bar.set_style(style);
        }
        bar.set_message(what.to_owned());
        Self { bar, visible }
    }

    /// One more step done.
    pub fn inc(&self) {
        self.bar.inc(1);
    }

    /// `n` more steps done.
    pub fn inc_by(&self, n: u64) {
        self.bar.inc(n);
    }

    /// A line on stderr above the bar.
    pub fn note(&self, line: impl AsRef<str>) {
        if self.visible {
            self.bar.println(line.as_ref());
        } else {
            eprintln!("{}", line.as_ref());
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
