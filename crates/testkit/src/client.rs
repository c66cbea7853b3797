//! A raw JSON-RPC-over-WebSocket client for black-box tests.
//!
//! It reads only when asked to (no background task), so "a client that stops reading" is
//! just a client nobody polls. Responses are matched to requests by id, whatever order they
//! arrive in; notifications that arrive meanwhile are buffered in arrival order. Every wait
//! takes a deadline. Nothing here knows what a correct server answers: it only moves
//! frames; the scenarios assert.

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::server::Server;

/// Default time a request may take before the test fails (generous: the machine is shared).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(15);

/// A JSON-RPC error object as received.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JSON-RPC error {}: {}", self.code, self.message)
    }
}

impl RpcError {
    fn from_value(error: &Value) -> RpcError {
        RpcError {
            code: error["code"].as_i64().unwrap_or(i64::MIN),
            message: error["message"].as_str().unwrap_or_default().to_string(),
            data: error.get("data").cloned(),
        }
    }
}

/// One frame read from the server.
#[derive(Debug)]
pub enum Incoming {
    Json(Value),
    /// Close frame, EOF or a transport error; the text says which.
    Closed(String),
}

/// One frame read from the server, binary messages left undecoded (rexec's binary output).
#[derive(Debug)]
pub enum RawIncoming {
    /// A text frame, parsed as JSON.
    Json(Value),
    Binary(Vec<u8>),
    Closed(String),
}

pub struct Client {
    ws: WebSocketStream<TcpStream>,
    next_id: i64,
    /// Responses (and errors) not yet claimed, keyed by the id's JSON text.
    responses: HashMap<String, Value>,
    notifications: VecDeque<Value>,
    closed: Option<String>,
    /// WebSocket pings received so far (answered by tungstenite).
    pub pings: u64,
}

impl Client {
    /// Connects to the server, with its bearer token if it has one.
    pub async fn connect(server: &Server) -> Result<Client> {
        let mut headers = Vec::new();
        if let Some(token) = &server.token {
            headers.push(("Authorization".to_string(), format!("Bearer {token}")));
        }
        Client::connect_with_headers(&server.url, &headers).await
    }

    /// Connects with exactly these extra upgrade headers. An HTTP refusal becomes an error
    /// whose text includes the status (see [`upgrade_refusal_status`]).
    pub async fn connect_with_headers(url: &str, headers: &[(String, String)]) -> Result<Client> {
        let mut request = url.into_client_request()?;
        let host = request.uri().host().context("URL without host")?;
        let port = request.uri().port_u16().unwrap_or(80);
        let addr = format!("{host}:{port}");
        let stream = tokio::time::timeout(RPC_TIMEOUT, TcpStream::connect(&addr))
            .await
            .context("TCP connect timed out")?
            .with_context(|| format!("TCP connect to {addr}"))?;
        stream.set_nodelay(true)?;
        for (name, value) in headers {
            let name: tungstenite::http::HeaderName = name.parse()?;
            request
                .headers_mut()
                .insert(name, HeaderValue::from_str(value)?);
        }
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let handshake = tokio_tungstenite::client_async_with_config(request, stream, Some(config));
        let (ws, _response) = tokio::time::timeout(RPC_TIMEOUT, handshake)
            .await
            .context("WebSocket handshake timed out")?
            .map_err(|error| match error {
                tungstenite::Error::Http(response) => {
                    anyhow!("upgrade refused with HTTP {}", response.status().as_u16())
                }
                other => anyhow!("WebSocket handshake failed: {other}"),
            })?;
        Ok(Self::over(ws))
    }

    fn over(ws: WebSocketStream<TcpStream>) -> Self {
        Client {
            ws,
            next_id: 1,
            responses: HashMap::new(),
            notifications: VecDeque::new(),
            closed: None,
            pings: 0,
        }
    }

    /// Connects and writes `frames` (masked text frames) right behind the upgrade request,
    /// in the same write, before the server has answered the upgrade; then reads the 101
    /// and hands whatever followed it to the WebSocket.
    pub async fn connect_pipelined(server: &Server, frames: &[Value]) -> Result<Client> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tungstenite::protocol::frame::Frame;
        use tungstenite::protocol::frame::coding::{Data, OpCode};
        let url = server.url.as_str().into_client_request()?;
        let host = url.uri().host().context("URL without host")?;
        let port = url.uri().port_u16().unwrap_or(80);
        let addr: SocketAddr = format!("{host}:{port}").parse()?;
        let token = server
            .token
            .as_ref()
            .map(|token| format!("Authorization: Bearer {token}"));
        let headers: Vec<&str> = token.iter().map(String::as_str).collect();
        let mut bytes = upgrade_request(addr, &headers).into_bytes();
        for value in frames {
            let mut frame = Frame::message(value.to_string(), OpCode::Data(Data::Text), true);
            frame.header_mut().mask = Some([0x5a, 0x17, 0xc3, 0x08]);
            frame.format(&mut bytes)?;
        }
        let work = async {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            stream.write_all(&bytes).await?;
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            let end = loop {
                if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end + 4;
                }
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    bail!("the server closed the connection before answering the upgrade");
                }
                head.extend_from_slice(&buf[..n]);
            };
            let status_line = String::from_utf8_lossy(&head[..end]);
            ensure!(
                status_line.starts_with("HTTP/1.1 101"),
                "upgrade answered with {status_line:?}"
            );
            let tail = head.split_off(end);
            let config = WebSocketConfig::default()
                .max_message_size(None)
                .max_frame_size(None);
            Ok(
                WebSocketStream::from_partially_read(stream, tail, Role::Client, Some(config))
                    .await,
            )
        };
        let ws = tokio::time::timeout(RPC_TIMEOUT, work)
            .await
            .context("pipelined upgrade timed out")??;
        Ok(Self::over(ws))
    }

    // ----- sending -----

    pub async fn send_json(&mut self, value: &Value) -> Result<()> {
        self.send_raw_text(value.to_string()).await
    }

    pub async fn send_raw_text(&mut self, text: impl Into<String>) -> Result<()> {
        let text: String = text.into();
        self.send(Message::text(text)).await
    }

    pub async fn send_raw_binary(&mut self, bytes: impl Into<Vec<u8>>) -> Result<()> {
        let bytes: Vec<u8> = bytes.into();
        self.send(Message::binary(bytes)).await
    }

    /// Sends several messages with a single flush at the end (one burst on the wire).
    pub async fn send_burst(&mut self, values: &[Value]) -> Result<()> {
        let work = async {
            for value in values {
                self.ws.feed(Message::text(value.to_string())).await?;
            }
            self.ws.flush().await
        };
        tokio::time::timeout(RPC_TIMEOUT, work)
            .await
            .context("sending a burst timed out")?
            .context("sending a burst")
    }

    /// Allocates the next request id (for hand-built requests sent with `send_burst`).
    pub fn next_request_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    async fn send(&mut self, message: Message) -> Result<()> {
        tokio::time::timeout(RPC_TIMEOUT, self.ws.send(message))
            .await
            .context("sending a frame timed out")?
            .context("sending a frame")
    }

    /// Sends a request without waiting; returns its id.
    pub async fn send_request(&mut self, method: &str, params: Value) -> Result<i64> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_json(&json!({"id": id, "method": method, "params": params}))
            .await?;
        Ok(id)
    }

    pub async fn notify(&mut self, method: &str, params: Value) -> Result<()> {
        self.send_json(&json!({"method": method, "params": params}))
            .await
    }

    // ----- requests -----

    /// Sends a request and waits for its response: `Ok(Err(_))` is a JSON-RPC error.
    pub async fn request(
        &mut self,
        method: &str,
        params: Value,
    ) -> Result<Result<Value, RpcError>> {
        self.request_within(method, params, RPC_TIMEOUT).await
    }

    pub async fn request_within(
        &mut self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Result<Value, RpcError>> {
        let id = self.send_request(method, params).await?;
        self.wait_response(&json!(id), Instant::now() + timeout)
            .await
            .with_context(|| format!("waiting for the response to {method} (id {id})"))
    }

    /// A request that must succeed.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.request(method, params)
            .await?
            .map_err(|error| anyhow!("{method} failed: {error}"))
    }

    /// A request that must fail.
    pub async fn expect_error(&mut self, method: &str, params: Value) -> Result<RpcError> {
        match self.request(method, params).await? {
            Ok(result) => bail!("{method} succeeded ({result}) but an error was expected"),
            Err(error) => Ok(error),
        }
    }

    /// Waits for the response carrying `id` (any JSON id, e.g. `-1`).
    pub async fn wait_response(
        &mut self,
        id: &Value,
        deadline: Instant,
    ) -> Result<Result<Value, RpcError>> {
        let key = id.to_string();
        loop {
            if let Some(response) = self.responses.remove(&key) {
                return Ok(match response.get("error") {
                    Some(error) => Err(RpcError::from_value(error)),
                    None => Ok(response.get("result").cloned().unwrap_or(Value::Null)),
                });
            }
            match self.recv_until(deadline).await? {
                Some(Incoming::Json(value)) => self.dispatch(value),
                Some(Incoming::Closed(why)) => bail!("connection closed ({why})"),
                None => bail!("no response with id {key} before the deadline"),
            }
        }
    }

    /// `initialize` + `initialized`; returns the initialize result.
    pub async fn initialize(&mut self) -> Result<Value> {
        self.initialize_with(json!({"clientName": "rexec-conformance"}))
            .await?
            .map_err(|error| anyhow!("initialize failed: {error}"))
    }

    /// `initialize` with these params, then `initialized` if it succeeded.
    pub async fn initialize_with(&mut self, params: Value) -> Result<Result<Value, RpcError>> {
        let result = self.request("initialize", params).await?;
        if result.is_ok() {
            self.notify("initialized", json!({})).await?;
        }
        Ok(result)
    }

    // ----- receiving -----

    /// The next notification (buffered first), or `None` at the deadline.
    pub async fn next_notification(&mut self, deadline: Instant) -> Result<Option<Value>> {
        loop {
            if let Some(notification) = self.notifications.pop_front() {
                return Ok(Some(notification));
            }
            match self.recv_until(deadline).await? {
                Some(Incoming::Json(value)) => self.dispatch(value),
                Some(Incoming::Closed(why)) => bail!("connection closed ({why})"),
                None => return Ok(None),
            }
        }
    }

    /// The next notification whose `params.processId` is `process_id`; others stay buffered.
    pub async fn next_process_notification(
        &mut self,
        process_id: &str,
        deadline: Instant,
    ) -> Result<Option<Value>> {
        let belongs = |n: &Value| n["params"]["processId"].as_str() == Some(process_id);
        loop {
            if let Some(index) = self.notifications.iter().position(belongs) {
                return Ok(self.notifications.remove(index));
            }
            match self.recv_until(deadline).await? {
                Some(Incoming::Json(value)) => self.dispatch(value),
                Some(Incoming::Closed(why)) => bail!("connection closed ({why})"),
                None => return Ok(None),
            }
        }
    }

    /// Reads the next frame without routing it (the caller sees exactly what arrived).
    /// `None` at the deadline. Use only when nothing is buffered that the caller needs.
    /// Binary frames must carry JSON here; see [`Client::recv_raw_until`].
    pub async fn recv_until(&mut self, deadline: Instant) -> Result<Option<Incoming>> {
        let bytes = match self.recv_raw_until(deadline).await? {
            None => return Ok(None),
            Some(RawIncoming::Json(value)) => return Ok(Some(Incoming::Json(value))),
            Some(RawIncoming::Closed(why)) => return Ok(Some(Incoming::Closed(why))),
            Some(RawIncoming::Binary(bytes)) => bytes,
        };
        let value: Value = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "server sent a non-JSON binary frame: {:?}",
                String::from_utf8_lossy(&bytes)
            )
        })?;
        Ok(Some(Incoming::Json(value)))
    }

    /// Like [`Client::recv_until`], but binary frames come back as they are.
    pub async fn recv_raw_until(&mut self, deadline: Instant) -> Result<Option<RawIncoming>> {
        if let Some(why) = &self.closed {
            return Ok(Some(RawIncoming::Closed(why.clone())));
        }
        loop {
            let next = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(next) => next,
            };
            let message = match next {
                None => return Ok(Some(self.mark_closed("end of stream".into()))),
                Some(Err(error)) => {
                    return Ok(Some(self.mark_closed(format!("transport error: {error}"))));
                }
                Some(Ok(message)) => message,
            };
            let bytes = match message {
                Message::Text(text) => text.as_bytes().to_vec(),
                Message::Binary(bytes) => return Ok(Some(RawIncoming::Binary(bytes.to_vec()))),
                Message::Close(frame) => {
                    return Ok(Some(self.mark_closed(format!("close frame {frame:?}"))));
                }
                Message::Ping(_) => {
                    self.pings += 1;
                    continue;
                }
                Message::Pong(_) | Message::Frame(_) => continue,
            };
            let value: Value = serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "server sent a non-JSON frame: {:?}",
                    String::from_utf8_lossy(&bytes)
                )
            })?;
            return Ok(Some(RawIncoming::Json(value)));
        }
    }

    fn mark_closed(&mut self, why: String) -> RawIncoming {
        self.closed = Some(why.clone());
        RawIncoming::Closed(why)
    }

    /// Routes a received message into the response map or the notification queue.
    pub fn dispatch(&mut self, value: Value) {
        let is_response = value.get("result").is_some() || value.get("error").is_some();
        match value.get("id") {
            Some(id) if is_response => {
                self.responses.insert(id.to_string(), value);
            }
            // Notifications, and server→client requests (kept with them; none expected).
            _ => self.notifications.push_back(value),
        }
    }

    /// Waits until the server closes the connection; anything received meanwhile is kept.
    pub async fn expect_closed(&mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv_until(deadline).await? {
                Some(Incoming::Json(value)) => self.dispatch(value),
                Some(Incoming::Closed(why)) => return Ok(why),
                None => bail!("the server did not close the connection within {timeout:?}"),
            }
        }
    }

    /// Sends a WebSocket close frame and drops the connection.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

/// Sends `request` (a full HTTP/1.1 request text) on a fresh TCP connection and returns
/// the status code of the reply.
pub async fn raw_http_status(addr: SocketAddr, request: &str) -> Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                bail!("connection closed before an HTTP status line");
            }
            head.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&head);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("bad HTTP status line in {text:?}"))?;
        Ok(status)
    };
    tokio::time::timeout(RPC_TIMEOUT, work)
        .await
        .context("raw HTTP request timed out")?
}

/// A WebSocket upgrade request for `raw_http_status`, with extra header lines.
pub fn upgrade_request(addr: SocketAddr, extra_headers: &[&str]) -> String {
    let mut request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for header in extra_headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request
}
