//! The WebSocket listener's accept loop: every accepted socket gets TCP_NODELAY, passes
//! admission (the connection cap and the pending-handshake cap), and is served on its own
//! task. A socket refused at the cap gets a one-line 503 and is closed at once, before
//! anything of it is read.

use super::admission::Admission;
use super::budget::InboundBudget;
use super::http;
use crate::Server;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;

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
}

const REFUSED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
Content-Length: 29\r\n\r\nthe server is at its limit.\r\n";

/// How long to pause accepting after an accept error (out of descriptors, say).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

pub async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
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
            let _ = stream.try_write(REFUSED_RESPONSE);
            continue;
        };
        tokio::spawn(http::serve_connection(
            Arc::clone(&state),
            stream,
            peer,
            admitted,
        ));
    }
}
