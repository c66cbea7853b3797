//! rexec's test kit (dev-only, never published): what the black-box suites of `rexec` and
//! `rexec-client` share.
//!
//! - [`server`]: start `rexec serve` (or `REXEC_SERVER_CMD`) or `codex exec-server` on
//!   loopback with a scenario's flags; [`codex`]: which codex binary, the one `CODEX_HOME`
//!   rule, a bare codex peer; [`scratch`]: directories under `$HOME`, removed on drop.
//! - [`client`]: the raw JSON-RPC-over-WebSocket conformance client; [`harness`]: the
//!   scenario runner and the process helpers on it.
//! - [`proxy`]: the fault-injecting WebSocket proxy; [`rng`]: the seeded PRNG of the soaks;
//!   [`tmux`]: a command on a terminal of its own, typed into and read as a person would.
//! - [`conformance_test!`] and [`codex_test!`]: tests from scenarios, with visible skips.

mod locate;
mod macros;

pub mod client;
pub mod codex;
pub mod harness;
pub mod proxy;
pub mod rng;
pub mod scratch;
pub mod server;
pub mod tmux;

#[doc(hidden)]
pub use pastey;
