//! rexec benchmarks: latency of the exec-server protocol, measured from the outside over the
//! wire, side by side with other servers speaking the same protocol (e.g. `codex exec-server`).
//!
//! The entry point is [`cli::run`] with [`cli::BenchArgs`], mounted as `rexec bench …` by the
//! binary and also driven by the `oneshot` example of this crate.

pub mod cli;
pub mod oneshot;
pub mod proxy;
pub mod report;
pub mod server;
pub mod stats;
pub mod wire;
