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
    /// Who may open a WebSocket (`--ws-auth`, `--token-file`).
    pub auth: crate::auth::Authenticator,
    /// The `rexec` executable that applies sandbox policies (run as
    /// `rexec __sandbox-exec …`). Without it, sandboxed starts are refused.
    pub sandbox_helper: Option<std::path::PathBuf>,
    /// How long a new WebSocket connection may take to send its whole HTTP upgrade request.
    pub handshake_timeout: Duration,
    /// Connections (upgraded or not) served at once; further ones are refused at accept.
    pub max_connections: usize,
    /// Connections still sending their upgrade request; past it, the oldest is dropped.
    pub max_pending_handshakes: usize,
    /// Bytes of inbound WebSocket frames being received or decoded across all connections.
    pub max_inbound_bytes: usize,
    /// Longest an `fs/*` request's blocking call may take; past it the request fails and
    /// its thread is written off (see `handlers::fs::limit`).
    pub fs_timeout: Duration,
    /// How long a named shell (`shell/*`) lives without use before it is closed.
    pub shell_idle_timeout: Duration,
}

impl ServerConfig {
    /// Connection limits derived from a descriptor limit (`RLIMIT_NOFILE`): half the
    /// descriptors for connections (the rest for the children's pipes, pidfds and files),
    /// and an eighth of those, at least 8, for connections still in their handshake.
    pub fn with_connection_limits_for(self, descriptors: u64) -> Self {
        let max = usize::try_from(descriptors / 2).unwrap_or(usize::MAX);
        self.with_max_connections(max.min(MAX_CONNECTIONS_CEILING))
    }

    /// `max` connections, an eighth of them (at least 8) for pending handshakes.
    pub fn with_max_connections(mut self, max: usize) -> Self {
        let max = max.max(1);
        self.max_connections = max;
        self.max_pending_handshakes = (max / 8).max(8).min(max);
        self
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            session_ttl: Duration::from_secs(30),
            closed_retention: Duration::from_secs(30),
            ping_interval: Duration::from_secs(10),
            max_frame_bytes: 64 * 1024 * 1024,
            auth: crate::auth::Authenticator::Open,
            sandbox_helper: None,
            handshake_timeout: Duration::from_secs(10),
            max_connections: 0,
            max_pending_handshakes: 0,
            max_inbound_bytes: 256 * 1024 * 1024,
            fs_timeout: Duration::from_secs(30),
            shell_idle_timeout: Duration::from_secs(30 * 60),
        }
        .with_connection_limits_for(crate::limits::descriptor_limit())
    }
}

/// The derived connection limit never exceeds this, however many descriptors there are.
pub const MAX_CONNECTIONS_CEILING: usize = 16_384;

/// `process/read` long polls parked at once per connection (upstream's capacity); one more
/// is answered -32011 at once.
pub const MAX_IN_FLIGHT_READS: usize = 128;
/// `process/write`s waiting at once per connection. A write waits until the child takes its
/// bytes, so a client that pipelines stdin holds many; they are bounded by count (each is a
/// task) and by the stdin bytes they hold, and one past either is answered -32011 at once.
pub const MAX_IN_FLIGHT_WRITES: usize = 1024;
pub const MAX_IN_FLIGHT_WRITE_BYTES: usize = 16 * 1024 * 1024;
/// Frames queued for one connection's writer before producers wait (backpressure).
pub const OUTBOUND_QUEUE_FRAMES: usize = 128;

/// Bytes a WebSocket connection reads per `read` call. tungstenite zero-fills this much
/// before every read, so its 128 KiB default cost a 128 KiB memset per inbound message
/// on request-sized traffic (about 3% of the CPU of 2 000 one-shots a second); inbound
/// traffic is requests and stdin, for which 16 KiB per call is plenty.
pub const INBOUND_READ_BUFFER_BYTES: usize = 16 * 1024;
