//! A raw exec-server protocol client for benchmarks: one WebSocket connection over TCP with
//! `TCP_NODELAY`, integer request ids, frames handed back as they arrive with the instant they
//! were read. No `jsonrpc` member is sent (the codex dialect omits it).
//!
//! It deliberately does no buffering, reordering or retrying, so that what is measured is the
//! server plus one socket hop, not a client library.

use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use rexec_protocol::method;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{WebSocketStream, client_async, tungstenite::Message};

/// One message from the server, decoded just enough to dispatch on.
#[derive(Debug)]
pub enum Incoming {
    /// A response (`result`) or error response (`error`) to one of our requests.
    Response {
        id: Value,
        outcome: std::result::Result<Value, Value>,
    },
    /// A notification such as `process/output` or `process/closed`.
    Notification { method: String, params: Value },
    /// A request from the server to us (newer servers only, e.g. `network/policyRequest`).
    ServerRequest {
        id: Value,
        method: String,
        params: Value,
    },
}

/// A frame and the instant it was read off the socket (before JSON decoding).
#[derive(Debug)]
pub struct Frame {
    pub at: Instant,
    pub message: Incoming,
}

/// An initialized (or not yet initialized) connection to an exec-server.
pub struct Connection {
    ws: WebSocketStream<TcpStream>,
    next_id: i64,
    process_read_requests: u64,
}

impl Connection {
    /// Opens a WebSocket to `url` (`ws://HOST:PORT[/path]`) with Nagle disabled on our side.
    pub async fn connect(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| anyhow!("unsupported URL `{url}`: expected ws://HOST:PORT"))?;
        let authority = rest.split('/').next().unwrap_or(rest);
        let tcp = TcpStream::connect(authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (ws, _response) = client_async(url, tcp)
            .await
            .with_context(|| format!("WebSocket handshake with {url}"))?;
        Ok(Self {
            ws,
            next_id: 1,
            process_read_requests: 0,
        })
    }

    /// Connects and performs the handshake; returns the connection and the `initialize` result.
    pub async fn connect_initialized(url: &str, client_name: &str) -> Result<(Self, Value)> {
        let mut conn = Self::connect(url).await?;
        let result = conn.initialize(client_name).await?;
        Ok((conn, result))
    }

    /// Sends `initialize` and, once it succeeded, the `initialized` notification.
    pub async fn initialize(&mut self, client_name: &str) -> Result<Value> {
        let result = self
            .call(method::INITIALIZE, json!({ "clientName": client_name }))
            .await
            .context("initialize")?;
        self.send_notification(method::INITIALIZED, json!({}))
            .await?;
        Ok(result)
    }

    /// Sends a request and returns its id. The frame is serialized before anything is written.
    pub async fn send_request(&mut self, method: &str, params: Value) -> Result<i64> {
        let id = self.next_id;
        let text = json!({ "id": id, "method": method, "params": params }).to_string();
        self.send_request_text(id, method, text).await?;
        Ok(id)
    }

    /// The id that the next request sent on this connection must carry.
    pub fn next_request_id(&self) -> i64 {
        self.next_id
    }

    /// Sends an already serialized request frame `text` whose id is `id` (from
    /// [`Connection::next_request_id`]), so a caller can start its clock after serialization.
    pub async fn send_request_text(&mut self, id: i64, method: &str, text: String) -> Result<()> {
        if id != self.next_id {
            bail!(
                "request id {id} out of sequence (expected {})",
                self.next_id
            );
        }
        self.next_id += 1;
        if method == method::PROCESS_READ {
            self.process_read_requests += 1;
        }
        self.ws
            .send(Message::text(text))
            .await
            .with_context(|| format!("sending {method}"))
    }

    /// Sends a notification (no id).
    pub async fn send_notification(&mut self, method: &str, params: Value) -> Result<()> {
        let text = json!({ "method": method, "params": params }).to_string();
        self.ws
            .send(Message::text(text))
            .await
            .with_context(|| format!("sending {method}"))
    }

    /// Sends a request and waits for its response, dropping any other frame meanwhile.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.send_request(method, params).await?;
        loop {
            if let Incoming::Response { id: got, outcome } = self.next_frame().await?.message
                && got.as_i64() == Some(id)
            {
                return outcome.map_err(|error| anyhow!("{method} failed: {error}"));
            }
        }
    }

    /// Reads the next JSON-RPC message; WebSocket control frames are skipped (tungstenite
    /// answers pings itself). A close frame or end of stream is an error.
    pub async fn next_frame(&mut self) -> Result<Frame> {
        loop {
            let message = self
                .ws
                .next()
                .await
                .ok_or_else(|| anyhow!("server closed the connection"))?
                .context("reading a WebSocket frame")?;
            let at = Instant::now();
            let value: Value = match message {
                Message::Text(text) => serde_json::from_str(text.as_str()),
                Message::Binary(bytes) => serde_json::from_slice(&bytes),
                Message::Close(frame) => bail!("server closed the connection: {frame:?}"),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            }
            .context("server sent a frame that is not JSON")?;
            return Ok(Frame {
                at,
                message: decode(value)?,
            });
        }
    }

    /// How many `process/read` requests this connection has sent.
    pub fn process_read_requests(&self) -> u64 {
        self.process_read_requests
    }

    /// Closes the WebSocket politely; errors are ignored (the server may already be gone).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

fn decode(value: Value) -> Result<Incoming> {
    let Value::Object(mut object) = value else {
        bail!("server sent a JSON frame that is not an object: {value}");
    };
    let has_method = matches!(object.get("method"), Some(Value::String(_)));
    let has_id = object.contains_key("id");
    if !has_method && !(has_id && (object.contains_key("result") || object.contains_key("error"))) {
        bail!(
            "server sent a frame that is not JSON-RPC: {}",
            Value::Object(object)
        );
    }
    let id = object.remove("id");
    let params = object.remove("params").unwrap_or(Value::Null);
    Ok(match (id, object.remove("method")) {
        (Some(id), Some(Value::String(method))) => Incoming::ServerRequest { id, method, params },
        (None, Some(Value::String(method))) => Incoming::Notification { method, params },
        (id, _) => {
            let id = id.unwrap_or(Value::Null);
            match object.remove("result") {
                Some(result) => Incoming::Response {
                    id,
                    outcome: Ok(result),
                },
                None => Incoming::Response {
                    id,
                    outcome: Err(object.remove("error").unwrap_or(Value::Null)),
                },
            }
        }
    })
}
