//! One client connection, independent of its transport: the handshake, admission of
//! requests, and their concurrent execution.
//!
//! The transport feeds every inbound frame to [`Connection::handle_frame`] in wire order.
//! `initialize` and `initialized` are handled inline, so pipelined handshakes work; every
//! other request is admitted inline (the handshake check is latched at admission, params are
//! decoded, and requests that never wait are handled), and requests that may wait run in
//! their own task, within per-kind bounds: `process/read` long polls by count, `process/write`s
//! by count and by the stdin bytes they hold (see [`crate::config`]); `fs/*`, `http/request`
//! and `fs/watchMissing` requests hold a place of their module's own cap, taken at admission. One more of a kind that is full is
//! answered -32011 at once instead of waiting, so the transport never stops reading frames
//! behind parked requests and requests that never wait are always served promptly.
//! Responses may therefore leave out of order; the client matches them by id. Bad input is
//! answered and never ends the connection, except where upstream closes it (`initialized`
//! before `initialize`, unexpected notifications or responses). rexec's one client
//! notification, `process/ack`, is applied inline, in wire order, and never answered.

use crate::Server;
use crate::auth::Principal;
use crate::config::{MAX_IN_FLIGHT_READS, MAX_IN_FLIGHT_WRITE_BYTES, MAX_IN_FLIGHT_WRITES};
use crate::handlers::fs::FileHandles;
use crate::handlers::http::HttpRequests;
use crate::handlers::watch_missing::MissingWatches;
use crate::handlers::{self, Admitted, Deferred, Reply, RequestContext};
use crate::outbound::{FrameSender, NotificationSink, OutboundFrame};
use crate::session::{ConnectionId, Session};
use rexec_protocol::environment::{InitializeParams, InitializeResult, RexecServerInfo};
use rexec_protocol::jsonrpc::{MALFORMED_FRAME_ID, decode_params, error_frame, response_frame};
use rexec_protocol::{
    IncomingMessage, MAX_JSONRPC_VALUE_NODES, RequestId, RpcError, check_value_budget, extensions,
    method,
};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Whether the transport should keep reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close,
}

enum Phase {
    AwaitingInitialize,
    AwaitingInitialized(Arc<Session>),
    Ready(Arc<Session>),
}

pub struct Connection {
    server: Arc<Server>,
    id: ConnectionId,
    /// Prefix of the error sent for frames that cannot be parsed, naming the peer.
    parse_error_prefix: String,
    outbound: FrameSender,
    /// The transport can carry binary frames (WebSocket), so `process/output.binary` may be
    /// granted to a client that asks.
    binary_capable: bool,
    phase: Phase,
    in_flight: JoinSet<()>,
    /// Places for deferred process requests: reads by count, writes by count and bytes.
    reads: Arc<Semaphore>,
    writes: Arc<Semaphore>,
    write_bytes: Arc<Semaphore>,
    /// Files opened with `fs/open`; closed with the connection.
    files: Arc<FileHandles>,
    /// `http/request`s with their body streams, and the `fs/watchMissing` watch; both
    /// hold places of their own (taken at admission) and end with the connection.
    http: Arc<HttpRequests>,
    watches: Arc<MissingWatches>,
    /// Who this connection acts for; only its own sessions can be resumed.
    principal: Principal,
}

impl Connection {
    pub fn new(
        server: Arc<Server>,
        outbound: FrameSender,
        parse_error_prefix: String,
        principal: Principal,
    ) -> Self {
        let http = Arc::new(HttpRequests::new(outbound.clone()));
        let watches = Arc::new(MissingWatches::new(outbound.clone()));
        Self {
            server,
            id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
            parse_error_prefix,
            outbound,
            binary_capable: false,
            phase: Phase::AwaitingInitialize,
            in_flight: JoinSet::new(),
            reads: Arc::new(Semaphore::new(MAX_IN_FLIGHT_READS)),
            writes: Arc::new(Semaphore::new(MAX_IN_FLIGHT_WRITES)),
            write_bytes: Arc::new(Semaphore::new(MAX_IN_FLIGHT_WRITE_BYTES)),
            files: Arc::default(),
            http,
            watches,
            principal,
        }
    }

    /// Allow binary output frames on this connection (WebSocket transports).
    pub fn with_binary_output(mut self) -> Self {
        self.binary_capable = true;
        self
    }

    pub async fn handle_frame(&mut self, frame: &[u8]) -> Flow {
        while self.in_flight.try_join_next().is_some() {}
        if let Err(err) = check_value_budget(frame, MAX_JSONRPC_VALUE_NODES) {
            self.reply_unparsable(&err.0).await;
            return Flow::Continue;
        }
        match IncomingMessage::parse(frame) {
            Err(err) => {
                self.reply_unparsable(&err).await;
                Flow::Continue
            }
            Ok(IncomingMessage::Request { id, method, params }) => {
                self.on_request(id, &method, params).await;
                Flow::Continue
            }
            Ok(IncomingMessage::Notification { method, params }) => {
                self.on_notification(&method, params)
            }
            Ok(IncomingMessage::Response { .. } | IncomingMessage::Error { .. }) => {
                tracing::warn!(
                    connection = self.id,
                    "closing exec-server connection after unexpected client response"
                );
                Flow::Close
            }
        }
    }

    /// Answer a frame that could not be understood at all (id -1, as upstream).
    pub async fn reply_unparsable(&self, reason: &str) {
        let error = RpcError::invalid_request(format!("{}: {reason}", self.parse_error_prefix));
        self.send(error_frame(&MALFORMED_FRAME_ID, &error)).await;
    }

    async fn send(&self, frame: String) {
        let _ = self.outbound.send(OutboundFrame::Text(frame)).await;
    }

    async fn reply_error(&self, id: &RequestId, error: &RpcError) {
        self.send(error_frame(id, error)).await;
    }

    async fn on_request(&mut self, id: RequestId, method_name: &str, params: Option<&RawValue>) {
        if method_name == method::INITIALIZE {
            return self.initialize(id, params).await;
        }
        let session = match &self.phase {
            Phase::AwaitingInitialize => {
                return self
                    .reply_error(&id, &RpcError::not_initialized(method_name))
                    .await;
            }
            Phase::AwaitingInitialized(_) => {
                let error = RpcError::not_initialized_notification(method_name);
                return self.reply_error(&id, &error).await;
            }
            Phase::Ready(session) => Arc::clone(session),
        };
        let request = match handlers::parse(method_name, params) {
            Ok(request) => request,
            Err(error) => return self.reply_error(&id, &error).await,
        };
        let ctx = RequestContext {
            server: Arc::clone(&self.server),
            takeovers: session.takeovers(),
            session,
            files: Arc::clone(&self.files),
            http: Arc::clone(&self.http),
            watches: Arc::clone(&self.watches),
        };
        let deferred = match handlers::admit(&ctx, request).await {
            Admitted::Done(outcome) => return self.respond(&id, outcome).await,
            Admitted::Deferred(deferred) => deferred,
        };
        let places = match self.take_places(&deferred) {
            Ok(places) => places,
            Err(error) => return self.reply_error(&id, &error).await,
        };
        let outbound = self.outbound.clone();
        self.in_flight.spawn(async move {
            let outcome = handlers::handle_deferred(&ctx, deferred).await;
            send_response(&outbound, &id, outcome).await;
            drop(places);
        });
    }

    /// The places `deferred` holds while it runs, or the busy error if its kind is full.
    /// `fs/*` took its place at admission. A write bigger than the byte bound takes all of
    /// it, so it runs alone rather than never.
    fn take_places(&self, deferred: &Deferred) -> Result<Vec<OwnedSemaphorePermit>, RpcError> {
        let take = |places: &Arc<Semaphore>, count: usize, what: &str, limit: usize| {
            let count = u32::try_from(count.min(limit)).unwrap_or(u32::MAX);
            Arc::clone(places)
                .try_acquire_many_owned(count)
                .map_err(|_| RpcError::busy(what, limit))
        };
        Ok(match deferred {
            Deferred::Read(_) => vec![take(
                &self.reads,
                1,
                "process/read requests",
                MAX_IN_FLIGHT_READS,
            )?],
            Deferred::Write(write) => vec![
                take(
                    &self.writes,
                    1,
                    "process/write requests",
                    MAX_IN_FLIGHT_WRITES,
                )?,
                take(
                    &self.write_bytes,
                    write.stdin_bytes(),
                    "process/write bytes",
                    MAX_IN_FLIGHT_WRITE_BYTES,
                )?,
            ],
            Deferred::Fs(_)
            | Deferred::Http(_)
            | Deferred::Watch(_)
            | Deferred::WaitFor(_)
            | Deferred::Shell(_) => Vec::new(),
        })
    }

    async fn respond(&self, id: &RequestId, outcome: Result<Reply, RpcError>) {
        send_response(&self.outbound, id, outcome).await;
    }

    async fn initialize(&mut self, id: RequestId, params: Option<&RawValue>) {
        if !matches!(self.phase, Phase::AwaitingInitialize) {
            return self.reply_error(&id, &RpcError::initialize_twice()).await;
        }
        let params: InitializeParams = match decode_params(params) {
            Ok(params) => params,
            Err(error) => return self.reply_error(&id, &error).await,
        };
        // Negotiated per connection: a resume asks again and may get a different answer.
        let binary_output =
            self.binary_capable && params.rexec.as_ref().is_some_and(|r| r.binary_output);
        let sink = NotificationSink {
            frames: self.outbound.clone(),
            binary_output,
        };
        let sessions = &self.server.sessions;
        let session = match &params.resume_session_id {
            Some(session_id) => sessions.resume(session_id, self.id, sink, &self.principal),
            None => Ok(sessions.create(self.id, sink, self.principal.clone())),
        };
        let session = match session {
            Ok(session) => session,
            Err(error) => return self.reply_error(&id, &error).await,
        };
        tracing::debug!(connection = self.id, session = %session.id, client = %params.client_name, binary_output, "initialized");
        let result = InitializeResult {
            session_id: session.id.clone(),
            environment_info: Some(self.server.environment.clone()),
            rexec: Some(RexecServerInfo {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                extensions: extensions::ALL.iter().map(|&e| e.to_owned()).collect(),
                binary_output,
            }),
        };
        self.phase = Phase::AwaitingInitialized(session);
        self.send(response_frame(&id, &result)).await;
    }

    fn on_notification(&mut self, method_name: &str, params: Option<&RawValue>) -> Flow {
        if method_name == method::PROCESS_ACK {
            // Before the handshake completes there is no process to acknowledge.
            if let Phase::Ready(session) = &self.phase {
                handlers::acknowledge(session, params);
            }
            return Flow::Continue;
        }
        if method_name != method::INITIALIZED {
            tracing::warn!(
                connection = self.id,
                method = method_name,
                "closing exec-server connection after unexpected notification"
            );
            return Flow::Close;
        }
        match std::mem::replace(&mut self.phase, Phase::AwaitingInitialize) {
            Phase::AwaitingInitialize => {
                tracing::warn!(
                    connection = self.id,
                    "received `initialized` notification before `initialize`"
                );
                Flow::Close
            }
            Phase::AwaitingInitialized(session) | Phase::Ready(session) => {
                self.phase = Phase::Ready(session);
                Flow::Continue
            }
        }
    }

    /// The transport is gone: cancel in-flight requests and detach the session.
    pub fn finish(mut self) {
        self.in_flight.abort_all();
        self.http.close();
        self.watches.close();
        match &self.phase {
            Phase::AwaitingInitialize => {}
            Phase::AwaitingInitialized(session) | Phase::Ready(session) => {
                self.server.sessions.detach(session, self.id);
            }
        }
    }
}

/// Queue a response, then fire the reply's `on_queued` signal (a process's pump waits for
/// it so its notifications follow the start response).
async fn send_response(outbound: &FrameSender, id: &RequestId, outcome: Result<Reply, RpcError>) {
    let (frame, on_queued) = match outcome {
        Ok(reply) => (response_frame(id, &reply.result), reply.on_queued),
        Err(error) => (error_frame(id, &error), None),
    };
    let _ = outbound.send(OutboundFrame::Text(frame)).await;
    if let Some(on_queued) = on_queued {
        let _ = on_queued.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerConfig;
    use crate::outbound;
    use serde_json::Value;

    /// `initialize` with `params` on a fresh connection; the `rexec` object of the result.
    async fn initialize(binary_capable: bool, params: &str) -> Value {
        let (frames, mut queue) = outbound::channel();
        let mut connection = Connection::new(
            Server::new(ServerConfig::default()),
            frames,
            "t".into(),
            Principal::anonymous(),
        );
        if binary_capable {
            connection = connection.with_binary_output();
        }
        let frame = format!(r#"{{"id":1,"method":"initialize","params":{params}}}"#);
        assert_eq!(
            connection.handle_frame(frame.as_bytes()).await,
            Flow::Continue
        );
        let Some(OutboundFrame::Text(text)) = queue.recv().await else {
            panic!("no text response to initialize");
        };
        connection.finish();
        let response: Value = serde_json::from_str(&text).expect("JSON response");
        response["result"]["rexec"].clone()
    }

    #[tokio::test]
    async fn binary_output_is_granted_only_when_asked_on_a_binary_transport() {
        let asked = r#"{"clientName":"c","rexec":{"binaryOutput":true}}"#;
        let declined = r#"{"clientName":"c","rexec":{"binaryOutput":false}}"#;
        let silent = r#"{"clientName":"c"}"#;
        for (capable, params, granted) in [
            (true, asked, true),
            (true, declined, false),
            (true, silent, false),
            // stdio: asked, but lines cannot carry binary frames.
            (false, asked, false),
        ] {
            let rexec = initialize(capable, params).await;
            assert_eq!(
                rexec["binaryOutput"], granted,
                "{capable} {params}: {rexec}"
            );
            let names = rexec["extensions"].as_array().expect("extensions");
            assert!(names.iter().any(|n| n == extensions::BINARY_OUTPUT));
        }
    }
}
