//! `Process`: the handle of a started process — its event streams, its completion, and the
//! control requests (write, close stdin, interrupt, terminate, resize) — and what the client
//! does on its own: terminate it at its timeout, or when its last handle is dropped.

use crate::client::{Client, write_params};
use crate::error::ClientError;
use crate::event::Completion;
use crate::procs::{EventStream, HandleGuard, ProcessShared};
use rexec_protocol::process::{
    EmptyResult, ProcessSignal, ReadParams, ReadResult, ResizeParams, SignalParams, WriteResult,
    WriteStatus,
};
use rexec_protocol::{extensions, method};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A started process. Cheap to clone.
///
/// **Kill on drop**: when the last handle — the `Process` clones and the [`EventStream`]s
/// taken from them — is dropped before the process completed, the client terminates it
/// (one `process/terminate`, not awaited), unless [`Process::detach`] was called.
///
/// ```no_run
/// # async fn demo(client: rexec_client::Client) -> Result<(), rexec_client::ClientError> {
/// use rexec_client::ProcessSpec;
/// let process = client.start(ProcessSpec::new(["cat"]).pipe_stdin(true)).await?;
/// process.write(b"hello\n").await?;
/// process.close_stdin().await?;
/// let done = process.wait().await?;
/// assert_eq!(done.stdout, b"hello\n");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Process {
    client: Client,
    shared: Arc<ProcessShared>,
    handle: Arc<HandleGuard>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("id", &self.shared.id)
            .finish()
    }
}

impl Process {
    pub(crate) fn new(client: Client, shared: Arc<ProcessShared>) -> Self {
        let handle = shared.handle_guard(|| HandleGuard {
            processes: Arc::clone(&client.inner),
            shared: Arc::clone(&shared),
        });
        Self {
            client,
            shared,
            handle,
        }
    }

    /// The process id (the spec's, or the generated UUID).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Leave the process running when its handles are dropped (see [`Process`]); it can be
    /// found again with [`Client::process`](crate::Client::process), from this session or
    /// one that resumes it.
    pub fn detach(&self) {
        self.shared.detach();
    }

    /// `Client::run` never subscribes: a lossless hold would only stall the connection.
    pub(crate) fn release_lossless(&self) {
        self.client.inner.release_lossless(&self.shared);
    }

    /// A new subscription: replays what the bounded history still holds (256 events /
    /// 1 MiB), repairs anything older with one read, then follows live events. The first
    /// subscription of a [`ProcessSpec::lossless`](crate::ProcessSpec::lossless) process is
    /// lossless.
    ///
    /// ```no_run
    /// # async fn demo(process: rexec_client::Process) {
    /// use futures_util::StreamExt as _;
    /// use rexec_client::ProcessEvent;
    /// let exits = process
    ///     .events()
    ///     .filter(|event| std::future::ready(matches!(event, ProcessEvent::Exited { .. })))
    ///     .count()
    ///     .await;
    /// assert_eq!(exits, 1);
    /// # }
    /// ```
    pub fn events(&self) -> EventStream {
        EventStream::new(
            Arc::clone(&self.client.inner),
            Arc::clone(&self.shared),
            Arc::clone(&self.handle),
        )
    }

    /// An explicit `process/read` of the server's retained output. Following a process never
    /// needs it (`events` and `wait` repair by themselves); it is here to inspect what the
    /// server retains, and to measure the old read-to-complete pattern.
    pub async fn read(
        &self,
        after_seq: Option<u64>,
        max_bytes: Option<u64>,
        wait_ms: Option<u64>,
    ) -> Result<ReadResult, ClientError> {
        let params = ReadParams {
            process_id: self.shared.id.clone(),
            after_seq,
            max_bytes,
            wait_ms,
        };
        self.client
            .inner
            .rpc
            .call(method::PROCESS_READ, &params)
            .await
    }

    /// Wait until the process is complete: `closed` delivered with every lower seq before
    /// it, and the exit with its denial verdict known.
    ///
    /// ```no_run
    /// # async fn demo(process: rexec_client::Process) -> Result<(), rexec_client::ClientError> {
    /// let done = process.wait().await?;
    /// println!("exit {} after {:?}", done.exit_code, done.timings.total);
    /// # Ok(()) }
    /// ```
    pub async fn wait(&self) -> Result<Completion, ClientError> {
        let mut changes = self.shared.subscribe();
        loop {
            if let Some(outcome) = self.shared.outcome() {
                return outcome;
            }
            if changes.changed().await.is_err() {
                return Err(ClientError::Disconnected(
                    "the process state was dropped".to_owned(),
                ));
            }
        }
    }

    /// Like `wait`, but gives up at `deadline` with `Ok(None)`; the process keeps running
    /// and can be waited on again.
    pub async fn wait_until(&self, deadline: Instant) -> Result<Option<Completion>, ClientError> {
        match tokio::time::timeout_at(deadline, self.wait()).await {
            Ok(outcome) => outcome.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Write to the child's stdin (the spec needs `pipe_stdin` or `tty`). The generated
    /// writeId makes the write safe to retry: if the connection drops before the answer,
    /// the same write is sent again after the session resumes and the server applies it
    /// at most once.
    ///
    /// ```no_run
    /// # async fn demo(client: rexec_client::Client) -> Result<(), rexec_client::ClientError> {
    /// use rexec_client::{ProcessSpec, WriteStatus};
    /// let process = client.start(ProcessSpec::new(["wc", "-l"]).pipe_stdin(true)).await?;
    /// assert_eq!(process.write(b"one\ntwo\n").await?, WriteStatus::Accepted);
    /// process.close_stdin().await?;
    /// assert_eq!(process.wait().await?.stdout, b"2\n");
    /// # Ok(()) }
    /// ```
    pub async fn write(&self, bytes: &[u8]) -> Result<WriteStatus, ClientError> {
        self.send_write(bytes, false).await
    }

    /// Close the child's stdin (EOF; Ctrl-D on a tty). Needs the
    /// `process/write.closeStdin` extension.
    pub async fn close_stdin(&self) -> Result<WriteStatus, ClientError> {
        self.require(extensions::WRITE_CLOSE_STDIN)?;
        self.send_write(&[], true).await
    }

    /// Write the last bytes of the child's stdin and close it, in one request. Needs the
    /// `process/write.closeStdin` extension.
    pub async fn write_last(&self, bytes: &[u8]) -> Result<WriteStatus, ClientError> {
        self.require(extensions::WRITE_CLOSE_STDIN)?;
        self.send_write(bytes, true).await
    }

    /// SIGINT to the child's process group.
    pub async fn interrupt(&self) -> Result<(), ClientError> {
        let params = SignalParams {
            process_id: self.shared.id.clone(),
            signal: ProcessSignal::Interrupt,
        };
        let _: EmptyResult = self
            .client
            .inner
            .rpc
            .call(method::PROCESS_SIGNAL, &params)
            .await?;
        Ok(())
    }

    /// Kill the process. `true` if it was still running.
    pub async fn terminate(&self) -> Result<bool, ClientError> {
        self.client.inner.terminate(&self.shared.id).await
    }

    /// Set a tty process's window size. Needs the `process/resize` extension.
    pub async fn resize(&self, rows: u16, cols: u16) -> Result<(), ClientError> {
        self.require(extensions::PROCESS_RESIZE)?;
        let params = ResizeParams {
            process_id: self.shared.id.clone(),
            rows,
            cols,
        };
        let _: EmptyResult = self
            .client
            .inner
            .rpc
            .call(method::PROCESS_RESIZE, &params)
            .await?;
        Ok(())
    }

    async fn send_write(
        &self,
        bytes: &[u8],
        close_stdin: bool,
    ) -> Result<WriteStatus, ClientError> {
        let params = write_params(&self.shared.id, bytes, close_stdin);
        let result: WriteResult = self
            .client
            .inner
            .rpc
            .call_retrying(method::PROCESS_WRITE, &params)
            .await?;
        Ok(result.status)
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn require(&self, extension: &str) -> Result<(), ClientError> {
        if self.client.supports(extension) {
            Ok(())
        } else {
            Err(ClientError::unsupported(extension))
        }
    }
}

/// Terminate `process` once `limit` has passed since its start was called, unless it
/// completes first.
pub(crate) fn arm_timeout(client: &Client, process: Arc<ProcessShared>, limit: Duration) {
    let inner = Arc::downgrade(&client.inner);
    let deadline = process.started_at() + limit;
    tokio::spawn(async move {
        let mut changes = process.subscribe();
        let expired = async {
            loop {
                if process.is_finished() {
                    return false;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => return true,
                    changed = changes.changed() => if changed.is_err() { return false },
                }
            }
        };
        if !expired.await || process.is_finished() {
            return;
        }
        process.mark_timed_out();
        if let Some(processes) = inner.upgrade() {
            processes.terminate_in_background(process.id.clone(), "its timeout passed");
        }
    });
}
