//! Black-box conformance suite for the codex exec-server protocol.
//!
//! Every scenario runs twice: against `rexec serve` (the binary of this crate, or
//! `REXEC_SERVER_CMD`) and against `codex exec-server` 0.169.0 (`REXEC_CODEX_BIN`), as
//! `rexec_<scenario>` and `codex_<scenario>`. Scenarios that need a rexec extension or a
//! rexec-only flag are ignored for codex, with the extension as the reason. Without a codex
//! binary (`REXEC_CODEX_BIN`, or the `scripts/install-codex` copy) the codex tests are
//! ignored too, or fail when `CI=true` (`rexec-testkit`'s `codex` module).
//!
//! `REXEC_SERVER_CMD` is a whole command line (e.g. `path/to/rexec serve --listen
//! ws://127.0.0.1:0`); the scenario's flags (`--token-file`, `--session-ttl-ms`, ...) are
//! appended to it.
//!
//! Run: `REXEC_CODEX_BIN=/path/to/codex cargo test -p rexec --test conformance`
//! (filter with `rexec_` or `codex_`).
//!
//! Layout: `server` (starts servers), `client` (the raw JSON-RPC client) and `harness` (the
//! runner and process helpers) are `rexec-testkit`'s, as is `conformance_test!`; the
//! modules here are scenarios.

// `conformance_test!`, and the kit's modules under the paths the scenarios use.
#[macro_use]
extern crate rexec_testkit;
use rexec_testkit::{client, harness, server};

#[path = "conformance/auth.rs"]
mod auth;
#[path = "conformance/capabilities.rs"]
mod capabilities;
#[path = "conformance/extensions.rs"]
mod extensions;
#[path = "conformance/fs.rs"]
mod fs;
#[path = "conformance/fs_blocking.rs"]
mod fs_blocking;
#[path = "conformance/fs_handles.rs"]
mod fs_handles;
#[path = "conformance/fs_walk.rs"]
mod fs_walk;
#[path = "conformance/handshake.rs"]
mod handshake;
#[path = "conformance/hardening.rs"]
mod hardening;
#[path = "conformance/hold.rs"]
mod hold;
#[path = "conformance/http.rs"]
mod http;
#[path = "conformance/http_origin.rs"]
mod http_origin;
#[path = "conformance/lifecycle.rs"]
mod lifecycle;
#[path = "conformance/limits.rs"]
mod limits;
#[path = "conformance/params.rs"]
mod params;
#[path = "conformance/process.rs"]
mod process;
#[path = "conformance/read.rs"]
mod read;
#[path = "conformance/sandbox.rs"]
mod sandbox;
#[path = "conformance/sandbox_dirs.rs"]
mod sandbox_dirs;
#[path = "conformance/sandbox_rules.rs"]
mod sandbox_rules;
#[path = "conformance/session.rs"]
mod session;
#[path = "conformance/shell_snapshot.rs"]
mod shell_snapshot;
#[path = "conformance/stdin.rs"]
mod stdin;
#[path = "conformance/transport.rs"]
mod transport;
#[path = "conformance/wait.rs"]
mod wait;
#[path = "conformance/watch_missing.rs"]
mod watch_missing;
