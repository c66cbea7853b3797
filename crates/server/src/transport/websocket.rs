//! The WebSocket transport: an HTTP router with `/` (the upgrade) and `GET /readyz`.
//!
//! Admission: a request carrying an `Origin` header is a browser and gets 403; with a token
//! configured, an upgrade without `Authorization: Bearer <token>` gets 401 (`/readyz` stays
//! open). Every accepted socket has TCP_NODELAY. Inbound text and binary frames both carry
//! JSON. The server writes JSON as text frames and, for a client that negotiated
//! `process/output.binary`, output as binary frames; it batches whatever is queued into one
//! flush, and pings the client periodically. A peer that stays silent for a whole ping
//! interval after a ping (no pong, no frame) is dropped as dead, so its session is detached
//! and can be resumed promptly instead of answering -32010 until TCP gives up.

use crate::Server;
use crate::connection::{Connection, Flow};
use crate::outbound::{self, FrameReceiver, OutboundFrame};
use axum::Router;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::serve::ListenerExt;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

pub async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/", any(upgrade))
        .route("/readyz", get(|| async { StatusCode::OK }))
        .with_state(server);
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!(%err, "failed to set TCP_NODELAY");
        }
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn upgrade(
    State(server): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if headers.contains_key(header::ORIGIN) {
        return (
            StatusCode::FORBIDDEN,
            "requests with an Origin header are refused",
        )
            .into_response();
    }
    if let Some(token) = &server.config.token
        && !bearer_matches(&headers, token)
    {
        return (StatusCode::UNAUTHORIZED, "a valid bearer token is required").into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let max = server.config.max_frame_bytes;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(crate::config::INBOUND_READ_BUFFER_BYTES)
        .on_upgrade(move |socket| run(server, socket, peer))
}

/// Compare the presented token in constant time.
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (presented.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn run(server: Arc<Server>, socket: WebSocket, peer: SocketAddr) {
    tracing::debug!(%peer, "websocket connected");
    let (sink, mut stream) = socket.split();
    let (outbound, queue) = outbound::channel();
    let heard = Arc::new(AtomicBool::new(true));
    let ping_interval = server.config.ping_interval;
    let mut writer = tokio::spawn(write_frames(sink, queue, ping_interval, Arc::clone(&heard)));
    let prefix =
        format!("failed to parse websocket JSON-RPC message from exec-server websocket {peer}");
    let mut connection = Connection::new(server, outbound, prefix).with_binary_output();
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            _ = &mut writer => {
                tracing::debug!(%peer, "websocket writer ended (peer dead or socket closed)");
                break;
            }
        };
        let Some(message) = message else { break };
        heard.store(true, Ordering::Relaxed);
        let flow = match message {
            Ok(Message::Text(text)) => connection.handle_frame(text.as_bytes()).await,
            Ok(Message::Binary(bytes)) => connection.handle_frame(&bytes).await,
            Ok(Message::Close(_)) => Flow::Close,
            Ok(Message::Ping(_) | Message::Pong(_)) => Flow::Continue,
            Err(err) => {
                tracing::debug!(%peer, %err, "websocket read failed");
                Flow::Close
            }
        };
        if flow == Flow::Close {
            break;
        }
    }
    connection.finish();
    writer.abort();
    tracing::debug!(%peer, "websocket disconnected");
}

/// Drain the outbound queue; ping every `ping_interval`, and give up on a peer that sent
/// nothing (`heard` still false) during a whole interval after a ping.
async fn write_frames(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: FrameReceiver,
    ping_interval: Duration,
    heard: Arc<AtomicBool>,
) {
    let mut pings =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            frame = queue.recv() => {
                let Some(frame) = frame else { break };
                outbound::drain_ready(frame, &mut queue, &mut batch);
                for frame in batch.drain(..) {
                    let message = match frame {
                        OutboundFrame::Text(text) => Message::Text(text.into()),
                        OutboundFrame::Binary(bytes) => Message::Binary(bytes),
                    };
                    if sink.feed(message).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            _ = pings.tick() => {
                if !heard.swap(false, Ordering::Relaxed) {
                    tracing::debug!("websocket peer silent for a ping interval; dropping it");
                    return;
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = sink.close().await;
}
