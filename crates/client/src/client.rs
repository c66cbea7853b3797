//! `Client`: one logical connection to an exec-server — a session that outlives any single
//! transport connection — and the process calls on it: start, run, reattach, close.
//!
//! Requests, the link and reconnects are the `rpc` layer's; routes, ordered logs and event
//! streams the `procs` layer's (`Processes`, which owns the `Rpc`); this file puts them
//! together behind the public API.

use crate::error::ClientError;
use crate::event::Completion;
use crate::process::Process;
use crate::procs::{ProcessShared, Processes};
use crate::rpc::decode;
use crate::spec::ProcessSpec;
use bytes::Bytes;
use rexec_protocol::ByteChunk;
use rexec_protocol::environment::EnvironmentInfo;
use rexec_protocol::process::{StartParams, StartResult, WriteParams, WriteResult, WriteStatus};
use rexec_protocol::{extensions, method};
#[cfg(feature = "testing")]
use std::collections::BTreeMap;
use std::sync::Arc;

/// A session on an exec-server (rexec, or codex exec-server): it outlives any single
/// connection — a dropped WebSocket is resumed within the resume window — and connects on
/// first use. Cheap to clone; all clones share the session.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Processes>,
}

/// What a client has sent so far: a benchmark or a test can check that the happy path made
/// no `process/read` at all.
#[cfg(feature = "testing")]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests sent, by method name, including repair reads and re-sent writes.
    pub requests: BTreeMap<String, u64>,
}

#[cfg(feature = "testing")]
impl ClientStats {
    /// Requests sent with `method`.
    pub fn requests(&self, method: &str) -> u64 {
        self.requests.get(method).copied().unwrap_or(0)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.rpc.endpoint)
            .field("session_id", &self.inner.rpc.session().session_id)
            .finish()
    }
}

impl Client {
    /// The session id from `initialize` (what [`ClientOptions::resume_session`] takes to
    /// reattach after a restart); the empty string until the first connect succeeded.
    ///
    /// [`ClientOptions::resume_session`]: crate::ClientOptions::resume_session
    pub fn session_id(&self) -> String {
        self.inner.rpc.session().session_id.clone()
    }

    /// The server's environment, from the `initialize` result; `None` until the first
    /// connect succeeded.
    pub fn environment_info(&self) -> Option<EnvironmentInfo> {
        self.inner.rpc.session().environment.clone()
    }

    /// Whether the current connection receives process output as binary frames: asked for
    /// with [`ClientOptions::binary_output`] and granted by the server. `false` while the
    /// link is recovering.
    #[cfg(feature = "testing")]
    pub fn binary_output(&self) -> bool {
        self.inner
            .rpc
            .current_connection()
            .is_some_and(|connection| connection.binary_output())
    }

    /// Whether the server advertised a rexec extension (one of [`crate::extensions`]);
    /// `false` until the first connect succeeded.
    pub fn supports(&self, extension: &str) -> bool {
        self.inner.rpc.supports(extension)
    }

    /// Start a process. Its route exists before `process/start` is sent, so events that
    /// overtake the response are kept. The client's first call rides in the same flight as
    /// the handshake (with `spec.stdin` or a session to resume, one round trip later: it
    /// must know the server can close stdin, or that the session was resumed).
    ///
    /// ```no_run
    /// # async fn demo(client: rexec_client::Client) -> Result<(), rexec_client::ClientError> {
    /// use rexec_client::{ProcessEvent, ProcessSpec};
    /// let process = client.start(ProcessSpec::new(["tail", "-f", "/var/log/syslog"])).await?;
    /// let mut events = process.events();
    /// while let Some(ProcessEvent::Output { bytes, .. }) = events.next().await {
    ///     print!("{}", String::from_utf8_lossy(&bytes));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn start(&self, spec: ProcessSpec) -> Result<Process, ClientError> {
        // A resume may have to wait for the server to notice the session's old connection
        // is gone: that connect retries on its own, without a start in its flight.
        let rpc = &self.inner.rpc;
        let one_flight = spec.stdin.is_none() && rpc.options.resume_session.is_none();
        if one_flight && !rpc.is_connected() {
            let gate = rpc.first_connect.lock().await;
            if !rpc.is_connected() {
                return self.start_in_first_flight(spec, gate).await;
            }
        }
        rpc.ensure_connected().await?;
        if spec.stdin.is_some() && !self.supports(extensions::WRITE_CLOSE_STDIN) {
            return Err(ClientError::unsupported(extensions::WRITE_CLOSE_STDIN));
        }
        let ordered = rpc.supports(extensions::ORDERED_NOTIFICATIONS);
        let shared = self.add_route(&spec, ordered)?;
        let environment = self.inner.rpc.session().environment.clone();
        let params = match spec.start_params(shared.id.clone(), environment.as_ref()) {
            Ok(params) => params,
            Err(err) => {
                self.inner.remove_route(&shared);
                return Err(encoding_error(&err));
            }
        };
        match spec.stdin {
            None => {
                let on_reply = self.inner.start_answer(&shared);
                let started = rpc
                    .call_applied(method::PROCESS_START, &params, on_reply)
                    .await;
                self.finish_start(shared, started, &spec)
            }
            Some(ref stdin) => {
                self.start_with_stdin(shared, &params, stdin.clone(), &spec)
                    .await
            }
        }
    }

    /// `process/start` and one `process/write {closeStdin}` back to back on one connection,
    /// without waiting in between: the server handles a start before reading the next
    /// request, so the write finds the process.
    async fn start_with_stdin(
        &self,
        shared: Arc<ProcessShared>,
        params: &StartParams,
        stdin: Bytes,
        spec: &ProcessSpec,
    ) -> Result<Process, ClientError> {
        let write = write_params(&shared.id, &stdin, true);
        let rpc = &self.inner.rpc;
        let sent = async {
            let connection = rpc.link().await?;
            let (id, frame) = rpc.request(method::PROCESS_START, params);
            let started = connection
                .send_applied(id, frame, self.inner.start_answer(&shared))
                .await?;
            let (id, frame) = rpc.request(method::PROCESS_WRITE, &write);
            let written = connection.send_call(id, frame).await?;
            Ok((started, written))
        };
        let (started, written) = match sent.await {
            Ok(replies) => replies,
            Err(err) => return self.finish_start(shared, Err(err), spec),
        };
        let started = decode(method::PROCESS_START, started.await);
        let process = self.finish_start(shared, started, spec)?;
        let written = match decode::<WriteResult>(method::PROCESS_WRITE, written.await) {
            // The answer was lost in a cut: the writeId makes sending it again safe.
            Err(ClientError::Disconnected(_)) => {
                rpc.call_retrying(method::PROCESS_WRITE, &write).await
            }
            written => written,
        };
        match written {
            Ok(WriteResult {
                status: WriteStatus::Accepted,
            }) => Ok(process),
            // The child would wait for input that never comes: do not leave it running.
            outcome => {
                let _ = process.terminate().await;
                let why = match outcome {
                    Ok(result) => format!("status {:?}", result.status),
                    Err(err) => err.to_string(),
                };
                Err(ClientError::Protocol(format!(
                    "process {} did not take its stdin ({why})",
                    process.id()
                )))
            }
        }
    }

    /// The state and route of a process about to be started.
    pub(crate) fn add_route(
        &self,
        spec: &ProcessSpec,
        ordered: bool,
    ) -> Result<Arc<ProcessShared>, ClientError> {
        let process_id = spec
            .process_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let shared = Arc::new(ProcessShared::new(
            process_id.clone(),
            ordered,
            spec.output_budget,
            spec.on_output.clone(),
        ));
        if spec.lossless {
            shared.reserve_lossless_reader();
            shared.set_server_holds(self.supports(extensions::START_HOLD_OUTPUT));
        }
        self.inner.add_route(&shared)?;
        Ok(shared)
    }

    /// The `process/start` answer is in: hand out the process, or undo its route.
    pub(crate) fn finish_start(
        &self,
        shared: Arc<ProcessShared>,
        started: Result<StartResult, ClientError>,
        spec: &ProcessSpec,
    ) -> Result<Process, ClientError> {
        if let Err(err) = started {
            self.inner.remove_route(&shared);
            // A start whose answer was lost may have started the process: once the link
            // is back, terminate it so nothing runs unobserved.
            if matches!(err, ClientError::Disconnected(_)) {
                self.inner
                    .terminate_in_background(shared.id.clone(), "its start was ambiguous");
            }
            return Err(err);
        }
        let step = shared.on_started();
        self.inner.after_step(None, &shared, step);
        if let Some(limit) = spec.timeout {
            crate::process::arm_timeout(self, Arc::clone(&shared), limit);
        }
        Ok(Process::new(self.clone(), shared))
    }

    /// Start a process and wait for it to finish: the one-shot. A first call connects in
    /// the same flight (one round trip for the lot).
    ///
    /// ```no_run
    /// # async fn demo(client: rexec_client::Client) -> Result<(), rexec_client::ClientError> {
    /// use rexec_client::ProcessSpec;
    /// let done = client.run(ProcessSpec::new(["sh", "-c", "echo hi"])).await?;
    /// assert!(done.success());
    /// assert_eq!(done.stdout, b"hi\n");
    /// # Ok(()) }
    /// ```
    pub async fn run(&self, spec: ProcessSpec) -> Result<Completion, ClientError> {
        let process = self.start(spec).await?;
        process.release_lossless();
        process.wait().await
    }

    /// A handle on process `id` of this session — one this client started, or (with
    /// [`ClientOptions::resume_session`]) one the resumed session already has. A process
    /// this client does not know is followed from the first output the server still
    /// retains (one `process/read`, then live events); dropping its last handle terminates
    /// it, as for a started one. An id the server does not know ends its events with
    /// `Failed`. Call it inside a Tokio runtime (it spawns the attaching read).
    ///
    /// [`ClientOptions::resume_session`]: crate::ClientOptions::resume_session
    ///
    /// ```no_run
    /// # async fn demo(session: String) -> Result<(), rexec_client::ClientError> {
    /// use rexec_client::{Client, ClientOptions, Endpoint};
    /// let client = Client::new(
    ///     Endpoint::WebSocket("ws://127.0.0.1:7000".into()),
    ///     ClientOptions::default().resume_session(session),
    /// );
    /// let done = client.process("build-42").wait().await?;
    /// println!("exit {}", done.exit_code);
    /// # Ok(()) }
    /// ```
    pub fn process(&self, id: impl Into<String>) -> Process {
        let id = id.into();
        if let Some(shared) = self.inner.route(&id) {
            return Process::new(self.clone(), shared);
        }
        let ordered = self.supports(extensions::ORDERED_NOTIFICATIONS);
        let spec = ProcessSpec::new(Vec::<String>::new()).process_id(id.clone());
        let Ok(shared) = self.add_route(&spec, ordered) else {
            // A start routed it meanwhile: its state is the one.
            return self.process(id);
        };
        shared.on_started();
        let inner = Arc::clone(&self.inner);
        let attach = {
            let shared = Arc::clone(&shared);
            async move {
                if let Err(err) = inner.rpc.ensure_connected().await {
                    return shared.fail(err);
                }
                if let Some(after_seq) = shared.begin_resume() {
                    inner.send_repair(None, &shared, after_seq);
                }
            }
        };
        tokio::spawn(attach);
        Process::new(self.clone(), shared)
    }

    /// Requests sent so far, by method.
    #[cfg(feature = "testing")]
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            requests: self.inner.rpc.sent(),
        }
    }

    /// Close the connection: pending calls and live process streams fail with
    /// "the client closed the connection". The server keeps the session (and its processes)
    /// for its TTL.
    pub async fn close(&self) {
        let reason = "the client closed the connection";
        self.inner.rpc.close(reason).await;
        self.inner
            .fail_processes(ClientError::Disconnected(reason.to_owned()));
    }
}

/// `process/write` params with a fresh `writeId` (so a retry is applied at most once).
pub(crate) fn write_params(process_id: &str, bytes: &[u8], close_stdin: bool) -> WriteParams {
    WriteParams {
        process_id: process_id.to_owned(),
        chunk: ByteChunk(bytes.to_vec()),
        write_id: uuid::Uuid::new_v4().to_string(),
        close_stdin,
    }
}

/// A spec whose sandbox policy cannot be encoded (not expected: the types are plain data).
pub(crate) fn encoding_error(err: &serde_json::Error) -> ClientError {
    ClientError::Protocol(format!("encoding the sandbox policy: {err}"))
}
