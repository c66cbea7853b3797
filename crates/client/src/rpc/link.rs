//! `Rpc`: the link of a client to its server — which connection is current (`Up`), whether
//! one is being re-established (`Recovering`), or why there is none (`Down`) — the session
//! identity from `initialize`, opening connections and running the handshake, and issuing
//! requests on whatever connection is current.
//!
//! A request issued while the link recovers waits for it (bounded by the resume window); a
//! request in flight when its connection ends fails at once with the reason. Only requests
//! that are safe to repeat (`call_retrying`, used for writes with their writeId) are sent
//! again after a resume.

use super::connection::{self, Connection, Opening, Pending, Reply};
use super::{Inbound, OnReply, recovery, transport};
use crate::error::ClientError;
use crate::options::{ClientOptions, Endpoint};
use rexec_protocol::environment::{
    EnvironmentInfo, InitializeParams, InitializeResult, RexecClientRequest,
};
use rexec_protocol::jsonrpc::{notification_frame, request_frame};
use rexec_protocol::process::EmptyResult;
use rexec_protocol::{RequestId, method};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// How often a write whose response was lost is retried across reconnects (same writeId).
const MAX_WRITE_ATTEMPTS: usize = 5;

pub(crate) enum Link {
    Up(Arc<Connection>),
    Recovering,
    Down(ClientError),
}

/// What `initialize` said about the session.
pub(crate) struct SessionInfo {
    pub session_id: String,
    pub environment: Option<EnvironmentInfo>,
    pub extensions: Vec<String>,
}

pub(crate) struct Rpc {
    pub(crate) endpoint: Endpoint,
    pub(crate) options: ClientOptions,
    pub(super) session: OnceLock<SessionInfo>,
    pub(super) link: Mutex<Link>,
    link_changed: watch::Sender<u64>,
    next_id: AtomicI64,
    closing: AtomicBool,
    /// Held for the whole first connect (see `connect`).
    pub(crate) first_connect: tokio::sync::Mutex<()>,
    /// Requests sent so far, by method.
    sent: Mutex<BTreeMap<String, u64>>,
    inbound: Weak<dyn Inbound>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Rpc {
    pub(crate) fn new(
        endpoint: Endpoint,
        options: ClientOptions,
        inbound: Weak<dyn Inbound>,
    ) -> Arc<Self> {
        Arc::new(Self {
            endpoint,
            options,
            session: OnceLock::new(),
            link: Mutex::new(Link::Down(ClientError::Disconnected(
                "not connected yet".to_owned(),
            ))),
            link_changed: watch::Sender::new(0),
            next_id: AtomicI64::new(1),
            closing: AtomicBool::new(false),
            first_connect: tokio::sync::Mutex::new(()),
            sent: Mutex::default(),
            inbound,
        })
    }

    pub(crate) fn inbound(&self) -> Option<Arc<dyn Inbound>> {
        self.inbound.upgrade()
    }

    /// The session from `initialize`; an empty one until the first connect succeeded.
    pub(crate) fn session(&self) -> &SessionInfo {
        static UNKNOWN: OnceLock<SessionInfo> = OnceLock::new();
        self.session.get().unwrap_or_else(|| {
            UNKNOWN.get_or_init(|| SessionInfo {
                session_id: String::new(),
                environment: None,
                extensions: Vec::new(),
            })
        })
    }

    pub(crate) fn supports(&self, extension: &str) -> bool {
        self.session().extensions.iter().any(|e| e == extension)
    }

    /// A new request id and its frame; counts the request by method.
    pub(crate) fn request<P: Serialize>(&self, method: &str, params: &P) -> (i64, String) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        *lock(&self.sent).entry(method.to_owned()).or_default() += 1;
        let frame = request_frame(&RequestId::Integer(id), method, params);
        (id, frame)
    }

    /// Requests sent so far, by method.
    #[cfg(feature = "testing")]
    pub(crate) fn sent(&self) -> BTreeMap<String, u64> {
        lock(&self.sent).clone()
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    pub(super) fn bump(&self) {
        self.link_changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Close the link for good: pending calls fail with `reason`, the connection says
    /// goodbye to the server.
    pub(crate) async fn close(&self, reason: &str) {
        self.closing.store(true, Ordering::SeqCst);
        let previous = std::mem::replace(
            &mut *lock(&self.link),
            Link::Down(ClientError::Disconnected(reason.to_owned())),
        );
        self.bump();
        if let Link::Up(connection) = previous {
            connection::fail_waiting(connection.close(reason), reason);
            connection.close_gracefully().await;
        }
    }

    pub(crate) fn current_connection(&self) -> Option<Arc<Connection>> {
        match &*lock(&self.link) {
            Link::Up(connection) => Some(Arc::clone(connection)),
            _ => None,
        }
    }

    /// Open a transport (bounded by `limit`), send `opening` with it, and start its tasks.
    /// On failure, whatever `opening` waited for fails with the same reason.
    pub(crate) async fn open_connection(
        self: &Arc<Self>,
        limit: Duration,
        opening: Opening,
    ) -> Result<Arc<Connection>, ClientError> {
        let token = self.options.token.as_deref();
        let Opening { frames, pending } = opening;
        let opened = tokio::time::timeout(
            limit,
            transport::open(&self.endpoint, token, &self.options.tls, &frames),
        )
        .await
        .map_err(|_| ClientError::Timeout {
            what: format!("connecting to {}", self.endpoint),
            after: limit,
        })
        .and_then(|opened| opened);
        match opened {
            Ok(transport) => Ok(Connection::start(transport, Arc::downgrade(self), pending)),
            Err(error) => {
                let waiting = pending.into_iter().map(|(_, p)| p).collect();
                connection::fail_waiting(waiting, &error.to_string());
                Err(error)
            }
        }
    }

    /// Put `initialize` and, right behind it, `initialized` into `opening`; the receiver
    /// gets the `initialize` answer.
    pub(crate) fn handshake(
        &self,
        opening: &mut Opening,
        resume_session_id: Option<&str>,
    ) -> oneshot::Receiver<Reply> {
        let reply = self.initialize(opening, resume_session_id);
        opening.notify(initialized_frame());
        reply
    }

    /// Put only `initialize` into `opening` (`initialized` is sent once it succeeded).
    pub(crate) fn initialize(
        &self,
        opening: &mut Opening,
        resume_session_id: Option<&str>,
    ) -> oneshot::Receiver<Reply> {
        // Only a WebSocket can carry binary frames; upstream servers ignore the field.
        let binary_output =
            self.options.binary_output && matches!(self.endpoint, Endpoint::WebSocket(_));
        let params = InitializeParams {
            client_name: self.options.client_name.clone(),
            resume_session_id: resume_session_id.map(str::to_owned),
            rexec: binary_output.then_some(RexecClientRequest {
                binary_output: true,
            }),
        };
        let (id, frame) = self.request(method::INITIALIZE, &params);
        let (tx, rx) = oneshot::channel();
        opening.request(id, frame, Pending::Initialize(tx));
        rx
    }

    /// Wait for the `initialize` result of `connection` and note what it granted.
    pub(crate) async fn await_handshake(
        &self,
        connection: &Connection,
        reply: oneshot::Receiver<Reply>,
        limit: Duration,
    ) -> Result<InitializeResult, ClientError> {
        let raw = match tokio::time::timeout(limit, reply).await {
            Err(_) => {
                return Err(ClientError::Timeout {
                    what: format!("initialize on {}", self.endpoint),
                    after: limit,
                });
            }
            Ok(Err(_)) => {
                return Err(ClientError::Disconnected(
                    "the connection ended during initialize".to_owned(),
                ));
            }
            Ok(Ok(reply)) => reply?,
        };
        let result: InitializeResult = serde_json::from_str(raw.get()).map_err(|err| {
            ClientError::Protocol(format!("cannot decode the initialize result: {err}"))
        })?;
        connection.set_binary_output(result.rexec.as_ref().is_some_and(|r| r.binary_output));
        Ok(result)
    }

    /// Install an established connection, unless it already ended or the client closed.
    pub(crate) fn set_up(&self, connection: Arc<Connection>, resuming: bool) -> bool {
        let mut link = lock(&self.link);
        let expected = !resuming || matches!(*link, Link::Recovering);
        if !expected || self.is_closing() || connection.close_reason().is_some() {
            drop(link);
            self.discard(&connection, "superseded");
            return false;
        }
        *link = Link::Up(connection);
        drop(link);
        self.bump();
        true
    }

    /// Throw away a connection that never became (or no longer is) the link.
    pub(crate) fn discard(&self, connection: &Connection, reason: &str) {
        connection::fail_waiting(connection.close(reason), reason);
        connection.abort();
    }

    /// The current connection (connecting first if the client never did), waiting while
    /// the link recovers.
    pub(crate) async fn link(self: &Arc<Self>) -> Result<Arc<Connection>, ClientError> {
        self.ensure_connected().await?;
        let mut changes = self.link_changed.subscribe();
        loop {
            match &*lock(&self.link) {
                // A connection that just ended, or whose writer stopped, is about to be
                // replaced: wait for that.
                Link::Up(connection) if connection.is_usable() => {
                    return Ok(Arc::clone(connection));
                }
                Link::Up(_) => {}
                Link::Down(error) => return Err(error.clone()),
                Link::Recovering => {}
            }
            if changes.changed().await.is_err() {
                return Err(ClientError::Disconnected(
                    "the client was dropped".to_owned(),
                ));
            }
        }
    }

    pub(crate) async fn call<P: Serialize, R: DeserializeOwned>(
        self: &Arc<Self>,
        method: &str,
        params: &P,
    ) -> Result<R, ClientError> {
        let connection = self.link().await?;
        let (id, frame) = self.request(method, params);
        decode_pending(method, connection.call(id, frame).await)
    }

    /// A call whose answer `on_reply` applies on the reader before it is decoded here.
    pub(crate) async fn call_applied<P: Serialize, R: DeserializeOwned>(
        self: &Arc<Self>,
        method: &str,
        params: &P,
        on_reply: Box<dyn OnReply>,
    ) -> Result<R, ClientError> {
        let connection = self.link().await?;
        let (id, frame) = self.request(method, params);
        let raw = match connection.send_applied(id, frame, on_reply).await {
            Ok(reply) => reply.await,
            Err(err) => Err(err),
        };
        decode_pending(method, raw)
    }

    /// A call that is safe to repeat (a write with its writeId): retried after a resume
    /// when its response was lost with the connection.
    pub(crate) async fn call_retrying<P: Serialize, R: DeserializeOwned>(
        self: &Arc<Self>,
        method: &str,
        params: &P,
    ) -> Result<R, ClientError> {
        let mut attempt = 1;
        loop {
            match self.call(method, params).await {
                Err(ClientError::Disconnected(reason))
                    if attempt < MAX_WRITE_ATTEMPTS
                        && self.endpoint.can_resume()
                        && !self.is_closing()
                        && matches!(*lock(&self.link), Link::Recovering | Link::Up(_)) =>
                {
                    tracing::debug!(method, %reason, attempt, "retrying after reconnect");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// `connection`'s reader saw it end (EOF, error, close frame): resume or give up.
    pub(crate) fn on_connection_end(self: &Arc<Self>, connection: &Arc<Connection>, reason: &str) {
        let waiting = connection.close(reason);
        let resume = {
            let mut link = lock(&self.link);
            if !matches!(&*link, Link::Up(current) if Arc::ptr_eq(current, connection)) {
                drop(link);
                return connection::fail_waiting(waiting, reason);
            }
            let resume = self.endpoint.can_resume()
                && !self.options.resume_window.is_zero()
                && !self.is_closing();
            *link = if resume {
                Link::Recovering
            } else {
                Link::Down(ClientError::Disconnected(reason.to_owned()))
            };
            resume
        };
        self.bump();
        // The link says "recovering" before any waiter hears of the loss, so a retry waits
        // for the resumed connection instead of finding the dead one.
        connection::fail_waiting(waiting, reason);
        if resume {
            tracing::info!(%reason, endpoint = %self.endpoint, "connection lost; resuming the session");
            tokio::spawn(recovery::resume(Arc::clone(self), reason.to_owned()));
        } else {
            self.link_down(ClientError::Disconnected(reason.to_owned()));
        }
    }

    /// The session could not be resumed: fail everything with `error`.
    pub(crate) fn give_up(&self, error: ClientError) {
        tracing::warn!(%error, "giving up on the session");
        {
            let mut link = lock(&self.link);
            if matches!(*link, Link::Recovering) {
                *link = Link::Down(error.clone());
            }
        }
        self.bump();
        self.link_down(error);
    }

    fn link_down(&self, error: ClientError) {
        if let Some(inbound) = self.inbound() {
            inbound.on_link_down(error);
        }
    }
}

impl Drop for Rpc {
    fn drop(&mut self) {
        if let Link::Up(connection) = &*lock(&self.link) {
            connection.abort();
        }
    }
}

pub(crate) fn initialized_frame() -> String {
    notification_frame(method::INITIALIZED, &EmptyResult {})
}

/// A response's result as `R`, a lost connection naming the request it cost.
fn decode_pending<R: DeserializeOwned>(method: &str, reply: Reply) -> Result<R, ClientError> {
    let reply = reply.map_err(|err| match err {
        ClientError::Disconnected(reason) => {
            ClientError::Disconnected(format!("{reason} (while {method} was pending)"))
        }
        other => other,
    });
    decode(method, reply)
}

/// A response's result as `R`.
pub(crate) fn decode<R: DeserializeOwned>(method: &str, reply: Reply) -> Result<R, ClientError> {
    serde_json::from_str(reply?.get())
        .map_err(|err| ClientError::Protocol(format!("cannot decode the {method} result: {err}")))
}
