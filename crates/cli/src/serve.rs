//! `rexec serve`: run the exec server on a WebSocket or on stdio.

use crate::duration::parse_duration;
use crate::serve_auth::AuthArgs;
use anyhow::Context;
use rexec_server::{
    DEFAULT_LISTEN_URL, ListenUrl, ReloadableTls, Server, ServerConfig, TlsFiles, serve_stdio,
    serve_websocket_tls,
};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where to listen: `ws://IP:PORT` (port 0 picks one), `wss://IP:PORT` (TLS: needs
    /// --tls-cert and --tls-key) or `stdio`.
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
    /// How long a named shell lives without use before it is closed: `500ms`, `90`
    /// (seconds), `30m`, `2h`.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    shell_idle_timeout: Duration,
    /// PEM certificate of a `wss://` listener, followed by any intermediates. Re-read with
    /// the key (and --tls-client-ca) on SIGHUP.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): clients must present a certificate issued under one (mTLS).
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let tls = tls_files(&args)?
        .map(|files| ReloadableTls::load(files).context("cannot set up TLS"))
        .transpose()?;
    let auth = args.auth.authenticator()?;
    match args.listen {
        ListenUrl::WebSocket(address) => args.auth.check_exposure(address, &auth, false, false)?,
        ListenUrl::TlsWebSocket(address) => {
            let client_certificates = args.tls_client_ca.is_some();
            args.auth
                .check_exposure(address, &auth, client_certificates, true)?;
        }
        ListenUrl::Stdio => {}
    }
    let descriptors = rexec_server::raise_descriptor_limit();
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
        shell_idle_timeout: args.shell_idle_timeout,
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
        ListenUrl::WebSocket(address) | ListenUrl::TlsWebSocket(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("failed to listen on {address}"))?;
            let bound = listener.local_addr()?;
            // Installed before the URL is printed, so a SIGHUP right after it reloads.
            if let Some(tls) = &tls {
                let hangup = tokio::signal::unix::signal(SignalKind::hangup())
                    .context("cannot listen for SIGHUP")?;
                tokio::spawn(reload_on_sighup(Arc::clone(tls), hangup));
            }
            let scheme = if tls.is_some() { "wss" } else { "ws" };
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{scheme}://{bound}")?;
            stdout.flush()?;
            drop(stdout);
            tracing::info!(%bound, "listening");
            serve_websocket_tls(server.clone(), listener, tls, shutdown_signal()).await?;
        }
        ListenUrl::Stdio => {
            tokio::select! {
                () = serve_stdio(server.clone()) => {}
                () = shutdown_signal() => {}
            }
        }
    }
    server.kill_all_processes();
    Ok(())
}

/// The TLS files for `--listen`: required with `wss://`, refused with anything else.
fn tls_files(args: &ServeArgs) -> anyhow::Result<Option<TlsFiles>> {
    let given = args.tls_cert.is_some() || args.tls_key.is_some() || args.tls_client_ca.is_some();
    match (&args.listen, &args.tls_cert, &args.tls_key) {
        (ListenUrl::TlsWebSocket(_), Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: args.tls_client_ca.clone(),
        })),
        (ListenUrl::TlsWebSocket(_), _, _) => {
            anyhow::bail!("--listen wss://… needs both --tls-cert FILE and --tls-key FILE")
        }
        _ if given => anyhow::bail!(
            "--tls-cert, --tls-key and --tls-client-ca need a --listen wss://IP:PORT URL"
        ),
        _ => Ok(None),
    }
}

/// On every SIGHUP, rebuild the TLS configuration from its files; new handshakes use it,
/// open connections keep theirs, and a failed reload keeps the old one.
async fn reload_on_sighup(tls: Arc<ReloadableTls>, mut hangup: Signal) {
    while hangup.recv().await.is_some() {
        let files = tls.files();
        match tls.reload() {
            Ok(()) => tracing::info!(
                cert = %files.cert.display(),
                key = %files.key.display(),
                client_ca = ?files.client_ca,
                "SIGHUP: TLS certificate reloaded"
            ),
            Err(err) => {
                tracing::error!(%err, "SIGHUP: TLS reload failed; keeping the old certificate")
            }
        }
    }
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
