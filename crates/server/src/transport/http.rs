//! The HTTP side of a WebSocket listener: one request per TCP connection, read within the
//! handshake timeout, then either the upgrade or a short answer and close.
//!
//! Routes: `GET /readyz` → 200; `/` → the WebSocket upgrade. Every request carrying an
//! `Origin` header (a browser) is refused with 403, `/readyz` included; an upgrade the
//! authenticator refuses (see [`crate::auth`]) gets 401 with upstream's reason as the body.
//! Anything else is 404, or 400 for an upgrade request that is not a valid WebSocket
//! handshake.

use super::admission::{Admitted, Refusal};
use super::listener::{AcceptedConnection, ListenerState};
use super::websocket;
use crate::sync::lock;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

type Body = Full<Bytes>;

/// Serve one accepted connection (TCP, or TLS over it) until its upgrade is handed over or
/// it ends; its request must arrive within `header_read_timeout`.
pub async fn serve_connection<S>(
    state: Arc<ListenerState>,
    stream: S,
    peer: SocketAddr,
    admitted: Admitted,
    client_certificate: Option<String>,
    header_read_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Admitted { place, handshake } = admitted;
    let mut evicted = handshake.evicted;
    // The handshake's place in the pending queue is given back once the request is read.
    let pending = Mutex::new(Some(handshake.slot));
    let service = hyper::service::service_fn({
        let state = Arc::clone(&state);
        move |request| {
            drop(lock(&pending).take());
            let connection = AcceptedConnection {
                state: Arc::clone(&state),
                peer,
                place: Arc::clone(&place),
                client_certificate: client_certificate.clone(),
            };
            async move { Ok::<_, Infallible>(route(connection, request)) }
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::select! {
        result = connection => {
            if let Err(err) = result {
                if err.is_timeout() {
                    state.admission.refused(Refusal::HandshakeTimeout, peer);
                } else {
                    tracing::debug!(%peer, %err, "http connection failed");
                }
            }
        }
        Ok(()) = &mut evicted => state.admission.refused(Refusal::HandshakeEvicted, peer),
    }
}

fn route(connection: AcceptedConnection, mut request: Request<Incoming>) -> Response<Body> {
    let headers = request.headers();
    if headers.contains_key(header::ORIGIN) {
        return answer(
            StatusCode::FORBIDDEN,
            "requests with an Origin header are refused",
        );
    }
    match request.uri().path() {
        "/readyz" if request.method() == Method::GET => answer(StatusCode::OK, ""),
        "/" => {
            let auth = &connection.state.server.config.auth;
            let client_certificate = connection.client_certificate.as_deref();
            let principal = match auth.authorize(headers, client_certificate) {
                Ok(principal) => principal,
                Err(reason) => {
                    tracing::info!(peer = %connection.peer, reason, "upgrade refused");
                    return answer(StatusCode::UNAUTHORIZED, reason);
                }
            };
            let Some(accept) = websocket_accept_key(headers) else {
                return answer(
                    StatusCode::BAD_REQUEST,
                    "expected a WebSocket upgrade request (version 13)",
                );
            };
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                match upgrade.await {
                    Ok(upgraded) => {
                        websocket::run(connection, principal, TokioIo::new(upgraded)).await;
                    }
                    Err(err) => tracing::debug!(peer = %connection.peer, %err, "upgrade failed"),
                }
            });
            let mut response = Response::new(Body::default());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let headers = response.headers_mut();
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
            response
        }
        _ => answer(StatusCode::NOT_FOUND, "not found"),
    }
}

/// A final answer; the connection closes after it (one request per connection).
fn answer(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The `Sec-WebSocket-Accept` value for a valid upgrade request, else `None`.
fn websocket_accept_key(headers: &HeaderMap) -> Option<HeaderValue> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    let upgrade =
        has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket");
    let version = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    (upgrade && version)
        .then(|| HeaderValue::from_str(&derive_accept_key(key.as_bytes())).ok())
        .flatten()
}
