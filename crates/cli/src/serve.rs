//! `rexec serve`: run the exec server on a WebSocket or on stdio.

use crate::serve_auth::AuthArgs;
use anyhow::Context;
use rexec_server::transport::listen::{DEFAULT_LISTEN_URL, ListenUrl};
use rexec_server::transport::{stdio, websocket};
use rexec_server::{Server, ServerConfig};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where to listen: `ws://IP:PORT` (port 0 picks one) or `stdio`.
    #[arg(long, default_value = DEFAULT_LISTEN_URL)]
    listen: ListenUrl,
    #[command(flatten)]
    auth: AuthArgs,
    /// How long a disconnected session keeps its processes, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    session_ttl_ms: u64,
    /// How long a closed process stays readable, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    closed_retention_ms: u64,
    /// WebSocket keepalive ping interval, in milliseconds. A client silent for a whole
    /// interval after a ping is dropped as dead (its session is detached, resumable).
    #[arg(long, default_value_t = 10_000)]
    ping_interval_ms: u64,
    /// Largest inbound message accepted, in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    max_frame_bytes: usize,
    /// How long a new connection may take to send its HTTP upgrade request, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    handshake_timeout_ms: u64,
    /// Connections served at once (default: half the descriptor limit, at most 16384).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Connections still sending their upgrade request; past it the oldest is dropped
    /// (default: an eighth of --max-connections, at least 8).
    #[arg(long)]
    max_pending_handshakes: Option<usize>,
    /// Bytes of inbound WebSocket frames being received or decoded at once, across all
    /// connections; a frame waits for room.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    max_inbound_bytes: usize,
    /// Longest a file request may block the server, in milliseconds; past it the request
    /// fails ("timed out") and its thread is abandoned.
    #[arg(long, default_value_t = 30_000)]
    fs_timeout_ms: u64,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let auth = args.auth.authenticator()?;
    if let ListenUrl::WebSocket(address) = args.listen {
        args.auth.check_exposure(address, &auth, false, false)?;
    }
    let descriptors = rexec_server::limits::raise_descriptor_limit();
    let mut config = ServerConfig {
        session_ttl: Duration::from_millis(args.session_ttl_ms),
        closed_retention: Duration::from_millis(args.closed_retention_ms),
        ping_interval: Duration::from_millis(args.ping_interval_ms.max(1)),
        max_frame_bytes: args.max_frame_bytes,
        auth,
        // This very binary applies sandbox policies (`rexec __sandbox-exec`). Through
        // /proc/self/exe, which a forked child resolves to the same file even after the
        // binary on disk was replaced by an upgrade.
        sandbox_helper: Some(PathBuf::from("/proc/self/exe")),
        handshake_timeout: Duration::from_millis(args.handshake_timeout_ms.max(1)),
        max_inbound_bytes: args.max_inbound_bytes,
        fs_timeout: Duration::from_millis(args.fs_timeout_ms.max(1)),
        ..ServerConfig::default()
    }
    .with_connection_limits_for(descriptors);
    if let Some(max) = args.max_connections {
        config = config.with_max_connections(max);
    }
    if let Some(max) = args.max_pending_handshakes {
        config.max_pending_handshakes = max.clamp(1, config.max_connections);
    }
    tracing::info!(descriptors, "descriptor limit");
    let server = Server::new(config);
    match args.listen {
        ListenUrl::WebSocket(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("failed to listen on {address}"))?;
            let bound = listener.local_addr()?;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "ws://{bound}")?;
            stdout.flush()?;
            drop(stdout);
            tracing::info!(%bound, "listening");
            websocket::serve(server.clone(), listener, shutdown_signal()).await?;
        }
        ListenUrl::Stdio => {
            tokio::select! {
                () = stdio::serve(server.clone()) => {}
                () = shutdown_signal() => {}
            }
        }
    }
    server.kill_all_processes();
    Ok(())
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
