//! rexec benchmarks, measured from the outside through the rexec client library (or, for
//! `oneshot --raw`, a raw wire client), side by side with other servers speaking the same
//! protocol (e.g. `codex exec-server`): one-shot latency in the codex PR #30273 A/B method,
//! output throughput and server CPU, spawn rate, memory, and the connect + run cost.
//!
//! The entry point is [`cli::run`] with [`cli::BenchArgs`], mounted as `rexec bench …` by the
//! binary and also driven by the `oneshot` example of this crate. Module map: `args` (shared
//! options), `target` (servers + proxies + clients), `server` (starting a server command),
//! `proxy` (latency injection), `procfs` (CPU and RSS), `progress`, `stats`, `table`
//! (rendering), one module per benchmark, `raw` + `raw_report` + `wire` (the raw path).

pub mod args;
pub mod cli;
pub mod connect_run;
pub mod memory;
pub mod oneshot;
pub mod oneshot_report;
pub mod procfs;
pub mod progress;
pub mod proxy;
pub mod raw;
pub mod raw_report;
pub mod server;
pub mod shell;
pub mod shell_polling;
pub mod spawn;
pub mod stats;
pub mod table;
pub mod target;
pub mod throughput;
pub mod wire;
