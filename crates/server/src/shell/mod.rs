//! Named persistent shells (`shell/*`): long-lived PTY shells, owned by a principal, that
//! run one command line at a time with exact boundaries.
//!
//! `registry` (owner + name → slot, the per-principal bound), `slot` (a name's queue and
//! state), `runner` (the task that drives one shell), `terminal` (spawning the shell,
//! writing to it, its modes, its foreground group), `integration` (the start-up script,
//! the markers and how a command line is sent), `markers` (the parser that finds them in
//! the output), `command` (one command's output summary, seq and end), `replay` (its
//! latest output, kept to send again to a later caller), `wait` (a caller
//! waiting on a command, timeouts and the interrupt). The request handlers live in
//! `handlers::shell`; this module never names a connection.

mod command;
mod integration;
mod markers;
mod registry;
mod replay;
mod runner;
mod slot;
mod terminal;
mod wait;

pub use command::Command;
pub use integration::Integration;
pub use registry::ShellRegistry;
pub use slot::{Queued, ShellSlot as Slot};
pub use terminal::Creation;
pub use wait::{Limits, Replay, wait};
