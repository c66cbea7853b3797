//! Byte transports under a connection: a WebSocket (TCP_NODELAY, TLS for `wss://`, optional
//! bearer token) or a spawned program's stdin/stdout with one JSON message per line.
//!
//! This module turns an `Endpoint` into a frame source and a frame sink and owns the writer
//! task, which sends whatever is queued and flushes once per batch. The connection's first
//! frames go out with the opening itself: right behind the WebSocket upgrade request
//! (`upgrade`, inside the TLS stream on `wss://`), or to the child's stdin as soon as it is spawned. It knows nothing about
//! JSON-RPC. Inbound binary messages are handed on as they are: they carry JSON or, when
//! negotiated, binary output frames (told apart in `dispatch`); outbound frames are text.

use super::tls::{self, Socket};
use super::upgrade::Pipelined;
use crate::error::ClientError;
use crate::options::{Endpoint, TlsOptions};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::io;
use std::process::Stdio;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

/// Largest inbound message accepted: an `fs/readFile` of the largest file a server returns
/// (512 MiB, as base64) plus the envelope. Process output never comes near it.
pub(crate) const MAX_FRAME_BYTES: usize =
    (rexec_protocol::fs::MAX_READ_FILE_BYTES as usize).div_ceil(3) * 4 + 64 * 1024;
/// Frames the writer sends before it flushes, at most.
const MAX_BATCH_FRAMES: usize = 64;

type WsStream = WebSocketStream<Pipelined>;

/// One inbound message.
pub(crate) enum Frame {
    Text(Utf8Bytes),
    Binary(bytes::Bytes),
    Line(String),
}

impl Frame {
    /// The message as text, when it arrived as text (checked UTF-8 already).
    pub(crate) fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text.as_str()),
            Self::Line(line) => Some(line),
            Self::Binary(_) => None,
        }
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        match self {
            Self::Text(text) => text.as_ref(),
            Self::Binary(bytes) => bytes,
            Self::Line(line) => line.as_bytes(),
        }
    }
}

/// What the writer task is asked to do.
pub(crate) enum Outgoing {
    Frame(String),
    /// Say goodbye (WebSocket close frame, or close the child's stdin) and stop.
    Close,
}

pub(crate) struct Transport {
    pub sink: FrameSink,
    pub source: FrameSource,
    /// The stdio server; killed when the connection is dropped.
    pub child: Option<Child>,
}

pub(crate) enum FrameSink {
    WebSocket(SplitSink<WsStream, Message>),
    Stdio(BufWriter<ChildStdin>),
}

pub(crate) enum FrameSource {
    WebSocket(SplitStream<WsStream>),
    Stdio(FramedRead<ChildStdout, LinesCodec>),
}

/// Open `endpoint` and send `first` (text frames) before anything else, without waiting
/// for the WebSocket upgrade to be answered.
pub(crate) async fn open(
    endpoint: &Endpoint,
    token: Option<&str>,
    tls: &TlsOptions,
    first: &[String],
) -> Result<Transport, ClientError> {
    match endpoint {
        Endpoint::WebSocket(url) => open_websocket(url, token, tls, first).await,
        Endpoint::Stdio { program, args } => {
            let mut child = Command::new(program)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|err| connect_error(endpoint, format!("cannot spawn: {err}")))?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(connect_error(endpoint, "no stdio pipes".to_owned()));
            };
            let codec = LinesCodec::new_with_max_length(MAX_FRAME_BYTES);
            let mut sink = FrameSink::Stdio(BufWriter::new(stdin));
            for frame in first {
                sink.feed(frame.clone())
                    .await
                    .map_err(|err| connect_error(endpoint, err))?;
            }
            sink.flush()
                .await
                .map_err(|err| connect_error(endpoint, err))?;
            Ok(Transport {
                sink,
                source: FrameSource::Stdio(FramedRead::new(stdout, codec)),
                child: Some(child),
            })
        }
    }
}

fn connect_error(endpoint: &Endpoint, reason: String) -> ClientError {
    ClientError::Connect {
        endpoint: endpoint.to_string(),
        reason,
    }
}

async fn open_websocket(
    url: &str,
    token: Option<&str>,
    tls: &TlsOptions,
    first: &[String],
) -> Result<Transport, ClientError> {
    match upgrade(url, token, tls, first).await {
        // A server that hangs up on bytes behind the upgrade request (tungstenite's own
        // server handshake refuses them as "junk") gets the classic order: wait for 101,
        // then send. Nothing was processed, so sending the frames again is safe.
        Err(Upgrade::HungUp(reason)) if !first.is_empty() => {
            tracing::debug!(%reason, "the server hung up on a pipelined upgrade; retrying without");
            let mut transport = upgrade(url, token, tls, &[])
                .await
                .map_err(Upgrade::into_error)?;
            for frame in first {
                transport
                    .sink
                    .feed(frame.clone())
                    .await
                    .map_err(|reason| connect_failed(url, reason))?;
            }
            transport
                .sink
                .flush()
                .await
                .map_err(|reason| connect_failed(url, reason))?;
            Ok(transport)
        }
        other => other.map_err(Upgrade::into_error),
    }
}

/// Why an upgrade failed.
enum Upgrade {
    Failed(ClientError),
    /// The connection ended before any answer to the upgrade request.
    HungUp(ClientError),
}

impl Upgrade {
    fn into_error(self) -> ClientError {
        match self {
            Self::Failed(error) | Self::HungUp(error) => error,
        }
    }
}

fn connect_failed(url: &str, reason: String) -> ClientError {
    ClientError::Connect {
        endpoint: url.to_owned(),
        reason,
    }
}

/// TCP connect (and the TLS handshake for `wss://`), then the upgrade request with `first`
/// right behind it.
async fn upgrade(
    url: &str,
    token: Option<&str>,
    tls: &TlsOptions,
    first: &[String],
) -> Result<Transport, Upgrade> {
    let fail = |reason: String| Upgrade::Failed(connect_failed(url, reason));
    let mut request = url
        .into_client_request()
        .map_err(|err| fail(format!("invalid URL: {err}")))?;
    let secure = match request.uri().scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err(fail("only ws:// and wss:// URLs are supported".to_owned())),
    };
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| fail("the token is not a valid HTTP header value".to_owned()))?;
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    let host = request
        .uri()
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        .ok_or_else(|| fail("the URL has no host".to_owned()))?;
    let port = request
        .uri()
        .port_u16()
        .unwrap_or(if secure { 443 } else { 80 });
    let connector = secure
        .then(|| tls::connector(tls))
        .transpose()
        .map_err(fail)?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|err| fail(err.to_string()))?;
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::warn!(%err, "failed to set TCP_NODELAY");
    }
    let certificate_error = |err: &io::Error| {
        let reason = tls::certificate_problem(tls::tls_error(err)?, &host)?;
        Some(Upgrade::Failed(ClientError::Certificate {
            endpoint: url.to_owned(),
            reason,
        }))
    };
    let socket = match connector {
        None => Socket::Plain(tcp),
        Some(connector) => {
            let name = tls::server_name(&host).map_err(fail)?;
            match connector.connect(name, tcp).await {
                Ok(stream) => Socket::Tls(Box::new(stream)),
                Err(err) => {
                    return Err(certificate_error(&err).unwrap_or_else(|| fail(err.to_string())));
                }
            }
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let stream = Pipelined::new(socket, first);
    match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
        Ok((socket, _response)) => {
            let (sink, source) = socket.split();
            Ok(Transport {
                sink: FrameSink::WebSocket(sink),
                source: FrameSource::WebSocket(source),
                child: None,
            })
        }
        Err(tungstenite::Error::Http(response))
            if response.status() == StatusCode::UNAUTHORIZED =>
        {
            Err(Upgrade::Failed(ClientError::Unauthorized {
                endpoint: url.to_owned(),
            }))
        }
        Err(tungstenite::Error::Http(response)) => Err(fail(format!(
            "the WebSocket upgrade was answered with HTTP {}",
            response.status()
        ))),
        Err(err @ tungstenite::Error::Protocol(ProtocolError::HandshakeIncomplete)) => Err(
            Upgrade::HungUp(connect_failed(url, format!("{err} (the server hung up)"))),
        ),
        Err(tungstenite::Error::Io(err)) => Err(
            // A server that refuses the client certificate says so in an alert that
            // arrives after the client's side of the TLS handshake is done: on this read.
            certificate_error(&err).unwrap_or_else(|| match err.kind() {
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => {
                    Upgrade::HungUp(connect_failed(url, err.to_string()))
                }
                _ => fail(err.to_string()),
            }),
        ),
        Err(err) => Err(fail(err.to_string())),
    }
}

impl FrameSource {
    /// The next message; `None` when the peer closed; `Err` with the reason on failure.
    pub(crate) async fn next(&mut self) -> Option<Result<Frame, String>> {
        match self {
            Self::WebSocket(stream) => loop {
                return match stream.next().await? {
                    Ok(Message::Text(text)) => Some(Ok(Frame::Text(text))),
                    Ok(Message::Binary(bytes)) => Some(Ok(Frame::Binary(bytes))),
                    Ok(Message::Close(_)) => None,
                    Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                    Err(err) => Some(Err(err.to_string())),
                };
            },
            Self::Stdio(lines) => loop {
                return match lines.next().await? {
                    Ok(line) if line.trim().is_empty() => continue,
                    Ok(mut line) => {
                        if line.ends_with('\r') {
                            line.pop();
                        }
                        Some(Ok(Frame::Line(line)))
                    }
                    Err(LinesCodecError::MaxLineLengthExceeded) => Some(Err(format!(
                        "the server sent a line over {MAX_FRAME_BYTES} bytes"
                    ))),
                    Err(LinesCodecError::Io(err)) => Some(Err(err.to_string())),
                };
            },
        }
    }
}

impl FrameSink {
    async fn feed(&mut self, frame: String) -> Result<(), String> {
        match self {
            Self::WebSocket(sink) => sink
                .feed(Message::text(frame))
                .await
                .map_err(|e| e.to_string()),
            Self::Stdio(out) => {
                out.write_all(frame.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                out.write_all(b"\n").await.map_err(|e| e.to_string())
            }
        }
    }

    async fn flush(&mut self) -> Result<(), String> {
        match self {
            Self::WebSocket(sink) => sink.flush().await.map_err(|e| e.to_string()),
            Self::Stdio(out) => out.flush().await.map_err(|e| e.to_string()),
        }
    }

    async fn close(&mut self) {
        match self {
            Self::WebSocket(sink) => {
                let _ = sink.send(Message::Close(None)).await;
                let _ = sink.close().await;
            }
            Self::Stdio(out) => {
                let _ = out.shutdown().await;
            }
        }
    }
}

/// The writer task: send what is queued, flush once per batch, stop on `Close`, when every
/// sender is gone, or with the reason on the first write error.
pub(crate) async fn write_loop(
    mut sink: FrameSink,
    mut queue: mpsc::Receiver<Outgoing>,
) -> Result<(), String> {
    while let Some(first) = queue.recv().await {
        let mut item = Some(first);
        let mut sent = 0;
        let mut close = false;
        while let Some(current) = item.take() {
            match current {
                Outgoing::Frame(frame) => {
                    if let Err(err) = sink.feed(frame).await {
                        return Err(format!("writing to the server failed: {err}"));
                    }
                }
                Outgoing::Close => {
                    close = true;
                    break;
                }
            }
            sent += 1;
            if sent < MAX_BATCH_FRAMES {
                item = queue.try_recv().ok();
            }
        }
        if let Err(err) = sink.flush().await {
            return Err(format!("writing to the server failed: {err}"));
        }
        if close {
            break;
        }
    }
    sink.close().await;
    Ok(())
}
