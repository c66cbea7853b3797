//! The rexec exec-server engine.
//!
//! A [`Server`] owns the session registry and the server-wide configuration. Transports
//! (`transport::websocket`, `transport::stdio`) turn sockets into frames and hand each frame
//! to a [`connection::Connection`], which runs the handshake and dispatches requests to the
//! method handlers. Processes live in sessions, not connections; each process has one ordered
//! event log (see `process::event_log`) that feeds both pushed notifications and
//! `process/read`.

mod auth;
mod config;
mod connection;
mod environment;
mod handlers;
mod limits;
mod outbound;
mod process;
mod sandbox;
mod session;
mod shell;
mod sync;
mod transport;

pub use auth::signed_bearer::DEFAULT_MAX_CLOCK_SKEW_SECONDS;
pub use auth::{Authenticator, SignedBearer, read_secret};
pub use config::ServerConfig;
pub use limits::raise_descriptor_limit;
pub use sandbox::helper::{HELPER_ARG as SANDBOX_HELPER_ARG, main as sandbox_helper_main};
pub use transport::listen::{DEFAULT_LISTEN_URL, ListenUrl};
pub use transport::listener::{serve as serve_websocket, serve_with_tls as serve_websocket_tls};
pub use transport::stdio::serve as serve_stdio;
pub use transport::tls::{ReloadableTls, TlsFiles};

/// The pure parsers and the event log, for the `fuzz/` targets. Not part of the API: it
/// changes whenever they do.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::handlers::parse as parse_request;
    pub use crate::process::event_log::EventLog;
    pub use crate::sandbox::policy::resolve as resolve_sandbox_policy;
}

use session::SessionRegistry;
use std::sync::Arc;

/// The shared state of one running server.
pub struct Server {
    pub config: ServerConfig,
    pub sessions: SessionRegistry,
    /// Named shells (`shell/*`), owned by principals rather than sessions.
    pub shells: shell::ShellRegistry,
    pub environment: rexec_protocol::environment::EnvironmentInfo,
}

impl Server {
    pub fn new(config: ServerConfig) -> Arc<Self> {
        let containment = process::containment::get();
        containment.start_reaping();
        Arc::new(Self {
            sessions: SessionRegistry::new(config.session_ttl, config.closed_retention),
            shells: shell::ShellRegistry::new(config.shell_idle_timeout),
            environment: environment::local_environment_info(containment.mode()),
            config,
        })
    }

    /// Kill every child of every session and all their descendants, and remove what held
    /// them. Used on graceful shutdown.
    pub fn kill_all_processes(&self) {
        self.sessions.kill_all_processes();
        self.shells.kill_all();
        process::containment::get().settle();
    }
}
