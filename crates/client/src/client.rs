//! `Client`: one logical connection to an exec-server — a session that outlives any single
//! transport connection.
//!
//! `ClientInner` owns the link state (`Up` on a connection, `Recovering`, or `Down` with the
//! reason), the session identity from `initialize`, and the routes from `processId` to each
//! live process's shared state. Requests issued while the link is recovering wait for it;
//! requests in flight when a connection drops fail at once (see `connection`). The link and
//! requests are in `link`, inbound frames in `dispatch`, reconnects in `recovery`.

use crate::connection;
use crate::error::ClientError;
use crate::event::Completion;
use crate::link::Link;
use crate::link::decode;
use crate::options::{ClientOptions, Endpoint};
use crate::process::Process;
use crate::shared::ProcessShared;
use crate::spec::ProcessSpec;
use bytes::Bytes;
use rexec_protocol::ByteChunk;
use rexec_protocol::environment::EnvironmentInfo;
use rexec_protocol::jsonrpc::request_frame;
use rexec_protocol::process::{
    ReadParams, ReadResult, StartParams, StartResult, TerminateParams, TerminateResult,
    WriteParams, WriteResult, WriteStatus,
};
use rexec_protocol::{RequestId, extensions, method};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use tokio::sync::watch;

/// A session on an exec-server (rexec, or codex exec-server): it outlives any single
/// connection — a dropped WebSocket is resumed within the resume window — and connects on
/// first use. Cheap to clone; all clones share the session.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<ClientInner>,
}

pub(crate) struct SessionInfo {
    pub session_id: String,
    pub environment: Option<EnvironmentInfo>,
    pub extensions: Vec<String>,
}

pub(crate) struct ClientInner {
    pub(crate) endpoint: Endpoint,
    pub(crate) options: ClientOptions,
    pub(crate) session: OnceLock<SessionInfo>,
    pub(crate) link: Mutex<Link>,
    pub(crate) link_changed: watch::Sender<u64>,
    routes: Mutex<HashMap<String, Arc<ProcessShared>>>,
    next_id: AtomicI64,
    pub(crate) closing: AtomicBool,
    /// Held for the whole first connect (see `connect`).
    pub(crate) first_connect: tokio::sync::Mutex<()>,
    /// Requests sent, by method (what `Client::stats` reports).
    sent: Mutex<BTreeMap<String, u64>>,
    /// Processes whose lossless subscribers the connection reader must wait for before it
    /// reads the next frame.
    pub(crate) held_back: Mutex<Vec<Arc<ProcessShared>>>,
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

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.endpoint)
            .field("session_id", &self.inner.session().session_id)
            .finish()
    }
}

impl Client {
    /// The session id from `initialize` (what [`ClientOptions::resume_session`] takes to
    /// reattach after a restart); the empty string until the first connect succeeded.
    ///
    /// [`ClientOptions::resume_session`]: crate::ClientOptions::resume_session
    pub fn session_id(&self) -> String {
        self.inner.session().session_id.clone()
    }

    /// The server's environment, from the `initialize` result; `None` until the first
    /// connect succeeded.
    pub fn environment_info(&self) -> Option<EnvironmentInfo> {
        self.inner.session().environment.clone()
    }

    /// Whether the current connection receives process output as binary frames: asked for
    /// with [`ClientOptions::binary_output`] and granted by the server. `false` while the
    /// link is recovering.
    #[cfg(feature = "testing")]
    pub fn binary_output(&self) -> bool {
        self.inner
            .current_connection()
            .is_some_and(|connection| connection.binary_output())
    }

    /// Whether the server advertised a rexec extension (one of [`crate::extensions`]);
    /// `false` until the first connect succeeded.
    pub fn supports(&self, extension: &str) -> bool {
        self.inner.supports(extension)
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
        let one_flight = spec.stdin.is_none() && self.inner.options.resume_session.is_none();
        if one_flight && !self.inner.is_connected() {
            let gate = self.inner.first_connect.lock().await;
            if !self.inner.is_connected() {
                return self.start_in_first_flight(spec, gate).await;
            }
        }
        self.inner.ensure_connected().await?;
        if spec.stdin.is_some() && !self.supports(extensions::WRITE_CLOSE_STDIN) {
            return Err(ClientError::unsupported(extensions::WRITE_CLOSE_STDIN));
        }
        let ordered = self.inner.supports(extensions::ORDERED_NOTIFICATIONS);
        let shared = self.add_route(&spec, ordered)?;
        let environment = self.inner.session().environment.clone();
        let params = match spec.start_params(shared.id.clone(), environment.as_ref()) {
            Ok(params) => params,
            Err(err) => {
                self.inner.remove_route(&shared);
                return Err(encoding_error(&err));
            }
        };
        match spec.stdin {
            None => {
                let started = self.inner.call_start(&params, &shared).await;
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
        let sent = async {
            let connection = self.inner.link().await?;
            let (id, frame) = self.inner.request(method::PROCESS_START, params);
            let started = connection
                .send_start(id, frame, Arc::clone(&shared))
                .await?;
            let (id, frame) = self.inner.request(method::PROCESS_WRITE, &write);
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
                self.inner
                    .call_retrying(method::PROCESS_WRITE, &write)
                    .await
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
            shared.set_server_holds(self.inner.supports(extensions::START_HOLD_OUTPUT));
        }
        let mut routes = lock(&self.inner.routes);
        if routes.contains_key(&process_id) {
            return Err(ClientError::InvalidInput(format!(
                "process id {process_id} is already in use by a live process of this client"
            )));
        }
        routes.insert(process_id, Arc::clone(&shared));
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
            if matches!(err, ClientError::Disconnected(_)) {
                self.inner.terminate_orphan(shared.id.clone());
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
                if let Err(err) = inner.ensure_connected().await {
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
            requests: lock(&self.inner.sent).clone(),
        }
    }

    /// Close the connection: pending calls and live process streams fail with
    /// "the client closed the connection". The server keeps the session (and its processes)
    /// for its TTL.
    pub async fn close(&self) {
        let reason = "the client closed the connection";
        self.inner.closing.store(true, Ordering::SeqCst);
        let previous = std::mem::replace(
            &mut *lock(&self.inner.link),
            Link::Down(ClientError::Disconnected(reason.to_owned())),
        );
        self.inner.bump();
        if let Link::Up(connection) = previous {
            connection::fail_waiting(connection.close(reason), reason);
            connection.close_gracefully().await;
        }
        self.inner
            .fail_processes(ClientError::Disconnected(reason.to_owned()));
    }

    /// `process/read {afterSeq, waitMs: 0}` for an event stream that lagged.
    pub(crate) async fn read_retained(
        &self,
        process_id: &str,
        after_seq: u64,
    ) -> Result<ReadResult, ClientError> {
        self.inner
            .call(method::PROCESS_READ, &read_params(process_id, after_seq))
            .await
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

pub(crate) fn read_params(process_id: &str, after_seq: u64) -> ReadParams {
    ReadParams {
        process_id: process_id.to_owned(),
        after_seq: Some(after_seq),
        max_bytes: None,
        wait_ms: Some(0),
    }
}

impl ClientInner {
    pub(crate) fn new(endpoint: Endpoint, options: ClientOptions) -> Arc<Self> {
        Arc::new(ClientInner {
            endpoint,
            options,
            session: OnceLock::new(),
            link: Mutex::new(Link::Down(ClientError::Disconnected(
                "not connected yet".to_owned(),
            ))),
            link_changed: watch::Sender::new(0),
            routes: Mutex::new(HashMap::new()),
            next_id: AtomicI64::new(1),
            closing: AtomicBool::new(false),
            first_connect: tokio::sync::Mutex::new(()),
            sent: Mutex::default(),
            held_back: Mutex::default(),
        })
    }

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

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    pub(crate) fn bump(&self) {
        self.link_changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn route(&self, process_id: &str) -> Option<Arc<ProcessShared>> {
        lock(&self.routes).get(process_id).cloned()
    }

    pub(crate) fn remove_route(&self, process: &Arc<ProcessShared>) {
        let mut routes = lock(&self.routes);
        if routes
            .get(&process.id)
            .is_some_and(|current| Arc::ptr_eq(current, process))
        {
            routes.remove(&process.id);
        }
    }

    pub(crate) fn live_processes(&self) -> Vec<Arc<ProcessShared>> {
        lock(&self.routes).values().cloned().collect()
    }

    /// End every live process's stream with `error`.
    pub(crate) fn fail_processes(&self, error: ClientError) {
        let processes: Vec<_> = lock(&self.routes).drain().map(|(_, p)| p).collect();
        for process in processes {
            process.fail(error.clone());
        }
    }

    /// `process/terminate`: whether the process was still running.
    pub(crate) async fn terminate(self: &Arc<Self>, process_id: &str) -> Result<bool, ClientError> {
        let params = TerminateParams {
            process_id: process_id.to_owned(),
        };
        let result: TerminateResult = self.call(method::PROCESS_TERMINATE, &params).await?;
        Ok(result.running)
    }

    /// A start whose response was lost may have started the process: once the link is
    /// back, terminate it so nothing runs unobserved.
    fn terminate_orphan(self: &Arc<Self>, process_id: String) {
        let inner = Arc::downgrade(self);
        tokio::spawn(async move {
            let Some(inner) = inner.upgrade() else { return };
            let result = inner.terminate(&process_id).await;
            tracing::debug!(process = %process_id, ?result, "terminated a process whose start was ambiguous");
        });
    }
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        if let Link::Up(connection) = &*lock(&self.link) {
            connection.abort();
        }
    }
}

/// A spec whose sandbox policy cannot be encoded (not expected: the types are plain data).
pub(crate) fn encoding_error(err: &serde_json::Error) -> ClientError {
    ClientError::Protocol(format!("encoding the sandbox policy: {err}"))
}
