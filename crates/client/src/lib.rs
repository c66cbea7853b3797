//! The rexec client library: run processes on an exec-server (rexec or codex exec-server)
//! and follow each one as an ordered, de-duplicated, gap-free event stream.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rexec_client::ClientError> {
//! use rexec_client::{Client, ClientOptions, Endpoint, ProcessSpec};
//! use std::time::Duration;
//! let client = Client::new(
//!     Endpoint::WebSocket("ws://127.0.0.1:7000".into()),
//!     ClientOptions::default(),
//! );
//! // The first call connects: upgrade, initialize and start leave in one flight.
//! let done = client
//!     .run(ProcessSpec::new(["sh", "-c", "echo hi"]).timeout(Duration::from_secs(10)))
//!     .await?;
//! assert!(done.success());
//! assert_eq!(done.stdout, b"hi\n");
//! # Ok(()) }
//! ```
//!
//! A process's environment is the server's core variables (HOME, PATH, USER, SHELL,
//! TMPDIR) plus the spec's `env` ([`ProcessSpec::clean_env`] starts empty); a process is
//! terminated when its last handle is dropped unless [`Process::detach`] was called.
//! Everything a caller needs from the protocol is re-exported here.
//!
//! The `testing` feature adds hooks for tests, benchmarks and fuzz targets
//! (`Client::stats`, `Client::binary_output`, the `fuzzing` module); they are not part of
//! the stable API.
//!
//! Two layers, with the public API on top (ARCHITECTURE.md, "Client code map"): `rpc`
//! (transport, TLS, the upgrade, one connection's requests and reader, the link, the first
//! connect, reconnect and resume — no process state) below `procs` (routes, each process's
//! ordered log and repair, history and event streams, the completion's head and tail,
//! held-output acknowledgements). On top: `client` (start, run, reattach, close), `connect`
//! (`Client::new` / `connect`, the first start in the handshake's flight), `process` (the
//! handle), `wait` (`Process::wait_for`: server-side waits), `shell` (named shells), `fs` (the `fs/*` methods and `RemoteFile`), `spec`, `event`, `options`, `error`.

#![warn(missing_docs)]

mod client;
mod connect;
mod error;
mod event;
mod fs;
mod options;
mod process;
mod procs;
mod rpc;
mod shell;
mod spec;
mod wait;

pub use client::Client;
#[cfg(feature = "testing")]
pub use client::ClientStats;
pub use error::ClientError;
pub use event::{Completion, GapInfo, OutputCallback, ProcessEvent, Timings};
pub use fs::{FileMode, MAX_WRITE_FILE_BYTES, RemoteFile, WalkEntryKind};
pub use options::{
    ClientOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_INITIALIZE_TIMEOUT, DEFAULT_RESUME_WINDOW,
    Endpoint, TlsOptions,
};
pub use process::Process;
pub use procs::EventStream;
pub use rexec_protocol::environment::{EnvironmentInfo, ShellInfo};
pub use rexec_protocol::extensions;
pub use rexec_protocol::fs::{DirectoryEntry, Metadata, WalkEntry, WalkOptions, WalkResult};
pub use rexec_protocol::process::{EnvInherit, EnvPolicy, OutputStream, WriteStatus};
pub use rexec_protocol::sandbox::{DenialRule, NetworkAccess, SandboxContext, SandboxDenial};
pub use rexec_protocol::shell::{REPLAY_BYTES as SHELL_REPLAY_BYTES, RunningCommand, ShellEntry};
pub use rexec_protocol::{ErrorCode, PathUri, RpcError};
pub use shell::{Shell, ShellKind, ShellOutcome, ShellOutput, ShellRun, ShellWait};
pub use spec::{DEFAULT_OUTPUT_BUDGET, ProcessSpec};
pub use wait::{WaitCondition, WaitFired, WaitOutcome};

/// The sandbox policy types, for a [`SandboxContext`] beyond [`SandboxContext::managed`].
pub mod sandbox {
    pub use rexec_protocol::sandbox::*;
}

/// The pure inbound decoding and ordered-log state machine, for the `fuzz/` targets.
/// Not part of the API: it changes whenever they do.
#[cfg(feature = "testing")]
#[doc(hidden)]
#[allow(missing_docs)]
pub mod fuzzing {
    pub use crate::procs::{
        History, Incoming, OrderedLog, Repair, decode_binary_output, decode_notification,
        decode_output_message, fill_lag,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}

    /// Handles cross tasks, and their futures can be spawned.
    #[allow(dead_code)]
    async fn handles_and_futures_are_send(
        client: Client,
        process: Process,
        mut events: EventStream,
    ) {
        send_sync(&client);
        send_sync(&process);
        send(&events);
        send(&Client::connect(
            Endpoint::WebSocket(String::new()),
            ClientOptions::default(),
        ));
        send(&client.run(ProcessSpec::new(["true"])));
        send(&client.start(ProcessSpec::new(["true"])));
        send(&client.close());
        send(&process.wait());
        send(&process.write(b""));
        send(&events.next());
    }
}
