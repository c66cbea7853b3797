//! The WebSocket listener's accept loop: every accepted socket gets TCP_NODELAY, passes
//! admission (the connection cap and the pending-handshake cap), and is served on its own
//! task. A socket refused at the cap gets a one-line 503 (on TLS, nothing) and is closed
//! at once, before anything of it is read. On a TLS listener the TLS handshake comes
//! first, as part of the pending handshake: under the same timeout and eviction as the
//! upgrade request.

use super::admission::{Admission, Admitted, Refusal};
use super::budget::InboundBudget;
use super::http;
use super::tls::{self, ReloadableTls};
use crate::Server;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// What every connection of one listener shares.
pub struct ListenerState {
    pub server: Arc<Server>,
    pub admission: Arc<Admission>,
    pub budget: Arc<InboundBudget>,
}

/// A connection that passed admission, from its HTTP request on.
pub struct AcceptedConnection {
    pub state: Arc<ListenerState>,
    pub peer: SocketAddr,
    /// Its place under the connection cap, held until the WebSocket ends.
    pub place: Arc<OwnedSemaphorePermit>,
    /// The subject of the client certificate verified in the TLS handshake (mTLS), as
    /// `CN=alice,O=Example`.
    pub client_certificate: Option<String>,
}

const REFUSED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
Content-Length: 29\r\n\r\nthe server is at its limit.\r\n";

/// How long to pause accepting after an accept error (out of descriptors, say).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Serve plaintext WebSocket connections on `listener` until `shutdown`.
pub async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_tls(server, listener, None, shutdown).await
}

/// Serve on `listener`, over TLS when `tls` is given.
pub async fn serve_with_tls(
    server: Arc<Server>,
    listener: TcpListener,
    tls: Option<Arc<ReloadableTls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = &server.config;
    let state = Arc::new(ListenerState {
        admission: Admission::new(config.max_connections, config.max_pending_handshakes),
        budget: InboundBudget::new(config.max_inbound_bytes),
        server: Arc::clone(&server),
    });
    tracing::info!(
        max_connections = config.max_connections,
        max_pending_handshakes = config.max_pending_handshakes,
        max_inbound_bytes = config.max_inbound_bytes,
        tls = tls.is_some(),
        "accepting websocket connections"
    );
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::warn!(%err, "failed to set TCP_NODELAY");
        }
        let Some(admitted) = state.admission.admit(peer) else {
            // A TLS client could not read a plaintext answer: it just sees the close.
            if tls.is_none() {
                let _ = stream.try_write(REFUSED_RESPONSE);
            }
            continue;
        };
        let state = Arc::clone(&state);
        match &tls {
            None => tokio::spawn(http::serve_connection(
                state,
                stream,
                peer,
                admitted,
                None,
                config.handshake_timeout,
            )),
            Some(tls) => tokio::spawn(serve_tls(state, tls.acceptor(), stream, peer, admitted)),
        };
    }
}

/// The TLS handshake, then HTTP on the TLS stream in what is left of the handshake timeout.
async fn serve_tls(
    state: Arc<ListenerState>,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    mut admitted: Admitted,
) {
    let deadline = Instant::now() + state.server.config.handshake_timeout;
    let handshake = tokio::time::timeout_at(deadline, acceptor.accept(stream));
    let stream = tokio::select! {
        accepted = handshake => match accepted {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                tracing::debug!(%peer, %err, "tls handshake failed");
                return;
            }
            Err(_) => {
                state.admission.refused(Refusal::HandshakeTimeout, peer);
                return;
            }
        },
        Ok(()) = &mut admitted.handshake.evicted => {
            state.admission.refused(Refusal::HandshakeEvicted, peer);
            return;
        }
    };
    let client_certificate = tls::client_certificate_subject(stream.get_ref().1);
    if let Some(subject) = &client_certificate {
        tracing::info!(%peer, client_certificate = %subject, "tls client certificate verified");
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    http::serve_connection(state, stream, peer, admitted, client_certificate, remaining).await;
}
