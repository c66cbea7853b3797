//! Server-wide settings, with the upstream defaults.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long a session outlives its connection before its processes are killed.
    pub session_ttl: Duration,
    /// How long a closed process stays readable before its id is free again.
    pub closed_retention: Duration,
    /// WebSocket keepalive ping interval; a peer silent for a whole interval after a ping
    /// is dropped as dead.
    pub ping_interval: Duration,
    /// Largest inbound frame (WebSocket message or stdio line) accepted.
    pub max_frame_bytes: usize,
    /// Bearer token required on the WebSocket upgrade, if set.
    pub token: Option<String>,
    /// The `rexec` executable that applies sandbox policies (run as
    /// `rexec __sandbox-exec …`). Without it, sandboxed starts are refused.
    pub sandbox_helper: Option<std::path::PathBuf>,
    /// Longest an `fs/*` request's blocking call may take; past it the request fails and
    /// its thread is written off (see `handlers::fs::limit`).
    pub fs_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            session_ttl: Duration::from_secs(30),
            closed_retention: Duration::from_secs(30),
            ping_interval: Duration::from_secs(10),
            max_frame_bytes: 64 * 1024 * 1024,
            token: None,
            sandbox_helper: None,
            fs_timeout: Duration::from_secs(30),
        }
    }
}

/// Requests handled at once per connection; further frames wait (upstream's capacity).
pub const MAX_IN_FLIGHT_REQUESTS: usize = 128;
/// Frames queued for one connection's writer before producers wait (backpressure).
pub const OUTBOUND_QUEUE_FRAMES: usize = 128;

/// Bytes a WebSocket connection reads per `read` call. tungstenite zero-fills this much
/// before every read, so its 128 KiB default cost a 128 KiB memset per inbound message
/// on request-sized traffic (about 3% of the CPU of 2 000 one-shots a second); inbound
/// traffic is requests and stdin, for which 16 KiB per call is plenty.
pub const INBOUND_READ_BUFFER_BYTES: usize = 16 * 1024;
