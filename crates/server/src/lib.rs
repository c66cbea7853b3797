//! The rexec exec-server engine.
//!
//! A [`Server`] owns the session registry and the server-wide configuration. Transports
//! (`transport::websocket`, `transport::stdio`) turn sockets into frames and hand each frame
//! to a [`connection::Connection`], which runs the handshake and dispatches requests to the
//! method handlers. Processes live in sessions, not connections; each process has one ordered
//! event log (see `process::event_log`) that feeds both pushed notifications and
//! `process/read`.

pub mod auth;
pub mod config;
pub mod connection;
pub mod environment;
pub mod handlers;
pub mod limits;
pub mod outbound;
pub mod process;
pub mod sandbox;
pub mod session;
mod sync;
pub mod transport;

pub use config::ServerConfig;

use session::SessionRegistry;
use std::sync::Arc;

/// The shared state of one running server.
pub struct Server {
    pub config: ServerConfig,
    pub sessions: SessionRegistry,
    pub environment: rexec_protocol::environment::EnvironmentInfo,
}

impl Server {
    pub fn new(config: ServerConfig) -> Arc<Self> {
        let containment = process::containment::get();
        containment.start_reaping();
        Arc::new(Self {
            sessions: SessionRegistry::new(config.session_ttl, config.closed_retention),
            environment: environment::local_environment_info(containment.mode()),
            config,
        })
    }

    /// Kill every child of every session and all their descendants, and remove what held
    /// them. Used on graceful shutdown.
    pub fn kill_all_processes(&self) {
        self.sessions.kill_all_processes();
        process::containment::get().settle();
    }
}
