//! One transport connection ("generation") of a client: its writer and reader tasks and the
//! table of requests waiting for a response, matched by id.
//!
//! Many requests are in flight at once. When the connection ends, every waiting request is
//! failed at once with the same reason — nothing waits for its own timeout — and nothing is
//! replayed here: whether a request whose response was lost took effect is unknowable, so
//! only callers that are safe to retry (writes, with their `writeId`) do so.

use super::OnReply;
use super::link::Rpc;
use super::reader::read_loop;
use super::transport::{self, Outgoing, Transport};
use crate::error::ClientError;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

/// Frames queued for the writer before senders wait.
pub(crate) const OUTBOUND_QUEUE_FRAMES: usize = 256;
/// How long a graceful close waits for the writer to say goodbye.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub(crate) type Reply = Result<Box<RawValue>, ClientError>;

/// A request waiting for its response.
pub(crate) enum Pending {
    Call(oneshot::Sender<Reply>),
    /// This connection's `initialize`: success marks the connection established.
    Initialize(oneshot::Sender<Reply>),
    /// Applied by the layer above the moment the answer arrives, before the reader reads
    /// the frame behind it (a repair read, in wire order; a start, before the output
    /// behind it), then handed to the waiter if there is one.
    Applied(Box<dyn OnReply>, Option<oneshot::Sender<Reply>>),
}

/// What a new connection sends before anything else — the handshake and whatever rides in
/// the same flight — and the waiters of the requests among it. The waiters are in the
/// table before the reader starts, so no answer can arrive before its waiter.
#[derive(Default)]
pub(crate) struct Opening {
    pub(crate) frames: Vec<String>,
    pub(crate) pending: Vec<(i64, Pending)>,
}

impl Opening {
    pub(crate) fn notify(&mut self, frame: String) {
        self.frames.push(frame);
    }

    pub(crate) fn request(&mut self, id: i64, frame: String, pending: Pending) {
        self.frames.push(frame);
        self.pending.push((id, pending));
    }

    /// A request whose answer `on_reply` applies on the reader, then the returned receiver
    /// gets.
    pub(crate) fn applied(
        &mut self,
        id: i64,
        frame: String,
        on_reply: Box<dyn OnReply>,
    ) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        self.request(id, frame, Pending::Applied(on_reply, Some(tx)));
        rx
    }
}

#[derive(Default)]
struct Table {
    closed: Option<String>,
    waiting: HashMap<i64, Pending>,
}

pub(crate) struct Connection {
    outbound: mpsc::Sender<Outgoing>,
    table: Mutex<Table>,
    established: AtomicBool,
    /// The server granted `process/output.binary` on this connection (informational: the
    /// reader recognises binary output frames by their first byte either way).
    binary_output: AtomicBool,
    tasks: Mutex<Vec<AbortHandle>>,
    writer_done: Mutex<Option<oneshot::Receiver<()>>>,
    _child: Mutex<Option<Child>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connection {
    /// Start the writer and reader tasks of a freshly opened transport, whose first frames
    /// (already sent) are answered to `pending`.
    pub(crate) fn start(
        transport: Transport,
        rpc: Weak<Rpc>,
        pending: Vec<(i64, Pending)>,
    ) -> Arc<Self> {
        let Transport {
            sink,
            source,
            child,
        } = transport;
        let (outbound, queue) = mpsc::channel(OUTBOUND_QUEUE_FRAMES);
        let (done_tx, done_rx) = oneshot::channel();
        let connection = Arc::new(Self {
            outbound,
            table: Mutex::new(Table {
                closed: None,
                waiting: pending.into_iter().collect(),
            }),
            established: AtomicBool::new(false),
            binary_output: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            writer_done: Mutex::new(Some(done_rx)),
            _child: Mutex::new(child),
        });
        let writer = tokio::spawn({
            let connection = Arc::downgrade(&connection);
            let rpc = rpc.clone();
            async move {
                let outcome = transport::write_loop(sink, queue).await;
                let _ = done_tx.send(());
                if let (Err(reason), Some(connection)) = (outcome, connection.upgrade()) {
                    end(&connection, &rpc, &reason);
                }
            }
        });
        let reader = tokio::spawn(read_loop(Arc::clone(&connection), source, rpc));
        lock(&connection.tasks).extend([writer.abort_handle(), reader.abort_handle()]);
        connection
    }

    /// Why the connection ended, once it has.
    pub(crate) fn close_reason(&self) -> Option<String> {
        lock(&self.table).closed.clone()
    }

    /// Whether requests can still go out: not ended, and the writer still running (it
    /// may have stopped an instant before the connection is marked ended).
    pub(crate) fn is_usable(&self) -> bool {
        !self.outbound.is_closed() && self.close_reason().is_none()
    }

    pub(crate) fn is_established(&self) -> bool {
        self.established.load(Ordering::Acquire)
    }

    #[cfg(feature = "testing")]
    pub(crate) fn binary_output(&self) -> bool {
        self.binary_output.load(Ordering::Acquire)
    }

    pub(crate) fn set_binary_output(&self, granted: bool) {
        self.binary_output.store(granted, Ordering::Release);
    }

    pub(crate) fn register(&self, id: i64, pending: Pending) -> Result<(), ClientError> {
        let mut table = lock(&self.table);
        if let Some(reason) = &table.closed {
            return Err(ClientError::Disconnected(reason.clone()));
        }
        table.waiting.insert(id, pending);
        Ok(())
    }

    pub(super) fn unregister(&self, id: i64) -> Option<Pending> {
        lock(&self.table).waiting.remove(&id)
    }

    pub(crate) async fn send(&self, frame: String) -> Result<(), ClientError> {
        self.outbound
            .send(Outgoing::Frame(frame))
            .await
            .map_err(|_| ClientError::Disconnected("the connection's writer stopped".to_owned()))
    }

    /// Send a request and wait for its response.
    pub(crate) async fn call(&self, id: i64, frame: String) -> Reply {
        self.send_call(id, frame).await?.await
    }

    /// Send a request; its response comes through the returned future. Requests sent one
    /// after another this way leave in that order without waiting for each other.
    pub(crate) async fn send_call(
        &self,
        id: i64,
        frame: String,
    ) -> Result<impl Future<Output = Reply> + use<>, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.send_waiting(id, frame, Pending::Call(tx), rx).await
    }

    /// [`Connection::send_call`] for a request whose answer `on_reply` applies first.
    pub(crate) async fn send_applied(
        &self,
        id: i64,
        frame: String,
        on_reply: Box<dyn OnReply>,
    ) -> Result<impl Future<Output = Reply> + use<>, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.send_waiting(id, frame, Pending::Applied(on_reply, Some(tx)), rx)
            .await
    }

    async fn send_waiting(
        &self,
        id: i64,
        frame: String,
        pending: Pending,
        rx: oneshot::Receiver<Reply>,
    ) -> Result<impl Future<Output = Reply> + use<>, ClientError> {
        self.register(id, pending)?;
        if let Err(err) = self.send(frame).await {
            self.unregister(id);
            return Err(err);
        }
        Ok(async move {
            rx.await.unwrap_or_else(|_| {
                Err(ClientError::Disconnected(
                    "the connection ended before the response".to_owned(),
                ))
            })
        })
    }

    /// Queue a request whose answer only `on_reply` takes, without waiting (the reader
    /// calls this). `false` if the connection is gone (`on_reply` is then dropped unheard).
    pub(crate) fn send_unawaited(
        &self,
        id: i64,
        frame: String,
        on_reply: Box<dyn OnReply>,
    ) -> bool {
        if self.register(id, Pending::Applied(on_reply, None)).is_err() {
            return false;
        }
        if !self.queue(frame) {
            self.unregister(id);
            return false;
        }
        true
    }

    /// Queue a frame without waiting (the reader, event streams and dropped handles call
    /// this): behind a full writer it goes from a task of its own. `false` if the
    /// connection is gone, or the queue is full outside a runtime.
    pub(crate) fn queue(&self, frame: String) -> bool {
        match self.outbound.try_send(Outgoing::Frame(frame)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(item)) => {
                // A handle dropped outside the runtime cannot queue behind a full writer.
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return false;
                };
                let outbound = self.outbound.clone();
                runtime.spawn(async move { outbound.send(item).await });
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Take the waiter of a response; an `initialize` success marks the connection
    /// established before anything else from it is handled.
    pub(crate) fn take(&self, id: i64, success: bool) -> Option<Pending> {
        let pending = self.unregister(id)?;
        if success && matches!(pending, Pending::Initialize(_)) {
            self.established.store(true, Ordering::Release);
        }
        Some(pending)
    }

    /// Mark the connection ended and hand back everything still waiting (first call only).
    pub(crate) fn close(&self, reason: &str) -> Vec<Pending> {
        let mut table = lock(&self.table);
        if table.closed.is_some() {
            return Vec::new();
        }
        table.closed = Some(reason.to_owned());
        table.waiting.drain().map(|(_, p)| p).collect()
    }

    /// Stop both tasks at once (the socket or child is dropped with them).
    pub(crate) fn abort(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    /// Say goodbye to the server, give the writer a moment, then stop.
    pub(crate) async fn close_gracefully(&self) {
        let done = lock(&self.writer_done).take();
        if self.outbound.try_send(Outgoing::Close).is_ok()
            && let Some(done) = done
        {
            let _ = tokio::time::timeout(CLOSE_GRACE, done).await;
        }
        self.abort();
    }
}

/// Fail what a closed connection left waiting: waiters get the reason, answers the layer
/// above applies are told they are lost.
pub(crate) fn fail_waiting(pending: Vec<Pending>, reason: &str) {
    for waiting in pending {
        let (on_reply, tx) = match waiting {
            Pending::Call(tx) | Pending::Initialize(tx) => (None, Some(tx)),
            Pending::Applied(on_reply, tx) => (Some(on_reply), tx),
        };
        if let Some(on_reply) = on_reply {
            on_reply.on_lost();
        }
        if let Some(tx) = tx {
            let _ = tx.send(Err(ClientError::Disconnected(reason.to_owned())));
        }
    }
}

/// The connection ended (seen by the reader, or by the writer while the reader may still
/// be busy with frames received before the end): resume or give up, then stop both tasks.
pub(super) fn end(connection: &Arc<Connection>, rpc: &Weak<Rpc>, reason: &str) {
    tracing::debug!(%reason, "connection ended");
    match rpc.upgrade() {
        Some(rpc) => rpc.on_connection_end(connection, reason),
        None => fail_waiting(connection.close(reason), reason),
    }
    connection.abort();
}
