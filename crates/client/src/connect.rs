//! The first connection of a [`Client`]: made by whichever call needs it first (or at once
//! by [`Client::connect`]), shared by concurrent first calls, and retried by the next call
//! when it fails.
//!
//! When the first call is a start, it rides in the same flight as the handshake: the
//! upgrade request, `initialize`, `initialized` and `process/start` leave together and the
//! server answers them in wire order (one round trip for a one-shot). A gate held for the
//! whole connect makes the other first calls wait for it; only the holder may put its
//! start in the flight.

use crate::client::{Client, ClientInner, SessionInfo};
use crate::connection::{self, Opening};
use crate::error::ClientError;
use crate::link::{decode, initialized_frame};
use crate::options::{ClientOptions, Endpoint};
use crate::process::Process;
use crate::recovery::RESUME_RETRY_INTERVAL;
use crate::spec::ProcessSpec;
use rexec_protocol::{ErrorCode, extensions, method};
use std::sync::Arc;
use tokio::sync::{MutexGuard, oneshot};
use tokio::time::Instant;

impl Client {
    /// A client for `endpoint`, not connected yet: the first call that needs the server
    /// connects (a first [`Client::start`] or [`Client::run`] in the same flight as the
    /// handshake), and a call whose connect fails gets the error; the next call tries
    /// again. No I/O happens here.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), rexec_client::ClientError> {
    /// use rexec_client::{Client, ClientOptions, Endpoint, ProcessSpec};
    /// let client = Client::new(
    ///     Endpoint::WebSocket("ws://127.0.0.1:7000".into()),
    ///     ClientOptions::default(),
    /// );
    /// // Connects, initializes and starts in one round trip.
    /// let done = client.run(ProcessSpec::new(["uname", "-a"])).await?;
    /// print!("{}", String::from_utf8_lossy(&done.stdout));
    /// # Ok(()) }
    /// ```
    pub fn new(endpoint: Endpoint, options: ClientOptions) -> Client {
        Client {
            inner: ClientInner::new(endpoint, options),
        }
    }

    /// [`Client::new`], connected now: connect errors (a refused token, an unreachable
    /// server) surface here, and the server's environment and extensions are known.
    /// `initialize` and `initialized` are written right behind the WebSocket upgrade
    /// request, without waiting for its answer.
    pub async fn connect(
        endpoint: Endpoint,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let client = Client::new(endpoint, options);
        client.inner.ensure_connected().await?;
        Ok(client)
    }

    /// The first start, in the same flight as the handshake (the caller holds the gate).
    /// Without `spec.cwd` the start omits `cwd` (rexec's `process/start.defaultCwd`: the
    /// server's own); a server without that extension (codex) refuses it, and the start is
    /// sent again with the cwd from the `initialize` result, one round trip later.
    pub(crate) async fn start_in_first_flight(
        &self,
        spec: ProcessSpec,
        gate: MutexGuard<'_, ()>,
    ) -> Result<Process, ClientError> {
        let inner = &self.inner;
        let mut opening = Opening::default();
        let reply = inner.handshake(&mut opening, None);
        // Whether the server orders its notifications is known with the initialize
        // result; until then a gap gets the reorder grace (events arrive behind it anyway).
        let shared = self.add_route(&spec, false)?;
        let params = match spec.start_params(shared.id.clone(), None) {
            Ok(params) => params,
            Err(err) => {
                inner.remove_route(&shared);
                return Err(crate::client::encoding_error(&err));
            }
        };
        let (id, frame) = inner.request(method::PROCESS_START, &params);
        let started = opening.start(id, frame, Arc::clone(&shared));
        let established = inner.establish(opening, reply).await;
        drop(gate);
        if let Err(err) = established {
            inner.remove_route(&shared);
            return Err(err);
        }
        let started = started.await.unwrap_or_else(|_| {
            Err(ClientError::Disconnected(
                "the connection ended before the response".to_owned(),
            ))
        });
        match decode(method::PROCESS_START, started) {
            // Refused for the missing cwd (no process was started): now it is known.
            Err(ClientError::Rpc(_))
                if spec.cwd.is_none() && !self.supports(extensions::START_DEFAULT_CWD) =>
            {
                inner.remove_route(&shared);
                Box::pin(self.start(spec)).await
            }
            started => self.finish_start(shared, started, &spec),
        }
    }
}

impl ClientInner {
    /// Whether the first connect succeeded (the link may have been lost since).
    pub(crate) fn is_connected(&self) -> bool {
        self.session.get().is_some()
    }

    /// Connect unless a first connect already succeeded; concurrent callers share one.
    pub(crate) async fn ensure_connected(self: &Arc<Self>) -> Result<(), ClientError> {
        if self.is_connected() {
            return Ok(());
        }
        let _gate = self.first_connect.lock().await;
        if self.is_connected() {
            return Ok(());
        }
        let deadline = Instant::now() + self.options.connect_timeout;
        loop {
            let mut opening = Opening::default();
            // A refused resume must be heard: the server closes a connection whose
            // `initialized` follows a failed `initialize`, possibly before the error leaves.
            let resume = self.options.resume_session.as_deref();
            let reply = match resume {
                None => self.handshake(&mut opening, None),
                Some(id) => self.initialize(&mut opening, Some(id)),
            };
            match self.establish(opening, reply).await {
                // The server has not yet noticed that the session's previous connection
                // (a harness that just restarted) is gone.
                Err(ClientError::Rpc(error))
                    if error.is(ErrorCode::SessionAlreadyAttached)
                        && Instant::now() + RESUME_RETRY_INTERVAL < deadline =>
                {
                    tokio::time::sleep(RESUME_RETRY_INTERVAL).await;
                }
                outcome => return outcome,
            }
        }
    }

    /// Open the first connection with `opening` (which holds the handshake answered to
    /// `reply`), note the session, and make the connection the link.
    async fn establish(
        self: &Arc<Self>,
        opening: Opening,
        reply: oneshot::Receiver<connection::Reply>,
    ) -> Result<(), ClientError> {
        if self.is_closing() {
            return Err(ClientError::Disconnected(
                "the client closed the connection".to_owned(),
            ));
        }
        let connection = self
            .open_connection(self.options.connect_timeout, opening)
            .await?;
        let limit = self.options.initialize_timeout;
        let mut result = self.await_handshake(&connection, reply, limit).await;
        if result.is_ok() && self.options.resume_session.is_some() {
            result = connection.send(initialized_frame()).await.and(result);
        }
        let result = match result {
            Ok(result) => result,
            Err(err) => {
                self.discard(&connection, "initialize failed");
                return Err(err);
            }
        };
        let extensions = result.rexec.map(|r| r.extensions).unwrap_or_default();
        let ordered = extensions
            .iter()
            .any(|e| e == extensions::ORDERED_NOTIFICATIONS);
        let holds = extensions
            .iter()
            .any(|e| e == extensions::START_HOLD_OUTPUT);
        let _ = self.session.set(SessionInfo {
            session_id: result.session_id,
            environment: result.environment_info,
            extensions,
        });
        // Processes routed before the connect (a start in this flight, a reattach).
        for process in self.live_processes() {
            process.set_ordered_server(ordered);
            process.set_server_holds(holds);
        }
        if !self.set_up(connection, false) {
            return Err(ClientError::Disconnected(
                "the connection ended right after initialize".to_owned(),
            ));
        }
        Ok(())
    }
}
