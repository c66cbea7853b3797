//! `Processes`: a session's live processes by `processId` (the routes every notification
//! is delivered through), and carrying out what a step of a process's log asks for —
//! acknowledgements, repair reads, the reorder grace — on the RPC layer below.
//!
//! `HandleGuard` is what every handle of one process shares: the last to go terminates it.

use super::ordered::{REORDER_GRACE, Repair};
use super::shared::{ProcessShared, Step};
use super::shell_output::ShellTaps;
use crate::error::ClientError;
use crate::options::{ClientOptions, Endpoint};
use crate::rpc::{Connection, Inbound, Opening, Rpc};
use rexec_protocol::jsonrpc::notification_frame;
use rexec_protocol::method;
use rexec_protocol::process::{
    AckParams, ReadParams, ReadResult, TerminateParams, TerminateResult,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

pub(crate) struct Processes {
    pub(crate) rpc: Arc<Rpc>,
    /// This, for the tasks and answers that call back in later.
    pub(super) this: Weak<Processes>,
    routes: Mutex<HashMap<String, Arc<ProcessShared>>>,
    /// Processes whose lossless subscribers the connection reader must wait for before it
    /// reads the next frame.
    pub(super) held_back: Mutex<Vec<Arc<ProcessShared>>>,
    /// Calls that stream a named shell's output (`shell/output`).
    pub(crate) shell_taps: Arc<ShellTaps>,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Processes {
    /// A session's processes, on a new RPC layer that calls back into them.
    pub(crate) fn new(endpoint: Endpoint, options: ClientOptions) -> Arc<Self> {
        Arc::new_cyclic(|this: &Weak<Self>| {
            let inbound: Weak<dyn Inbound> = this.clone();
            Self {
                rpc: Rpc::new(endpoint, options, inbound),
                this: this.clone(),
                routes: Mutex::default(),
                held_back: Mutex::default(),
                shell_taps: Arc::default(),
            }
        })
    }

    pub(crate) fn route(&self, process_id: &str) -> Option<Arc<ProcessShared>> {
        lock(&self.routes).get(process_id).cloned()
    }

    /// Route `process` (before its start is sent, so events that overtake the answer are
    /// kept); refused while a live process has its id.
    pub(crate) fn add_route(&self, process: &Arc<ProcessShared>) -> Result<(), ClientError> {
        let mut routes = lock(&self.routes);
        if routes.contains_key(&process.id) {
            return Err(ClientError::InvalidInput(format!(
                "process id {} is already in use by a live process of this client",
                process.id
            )));
        }
        routes.insert(process.id.clone(), Arc::clone(process));
        Ok(())
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

    /// Carry out what a step of a process's log asked for. `connection` is the one the
    /// step's input came from (reads go back on it), or `None` for the current link.
    pub(crate) fn after_step(
        &self,
        connection: Option<&Arc<Connection>>,
        process: &Arc<ProcessShared>,
        step: Step,
    ) {
        if step.terminal {
            self.remove_route(process);
        }
        if let Some(seq) = step.ack {
            self.send_ack(connection, &process.id, seq);
        }
        match step.repair {
            Repair::None => {}
            Repair::Read { after_seq } => self.send_repair(connection, process, after_seq),
            Repair::ArmGrace { token } => {
                let processes = self.this.clone();
                let process = Arc::clone(process);
                tokio::spawn(async move {
                    tokio::time::sleep(REORDER_GRACE).await;
                    if let Some(processes) = processes.upgrade() {
                        let step = process.on_grace_expired(token);
                        processes.after_step(None, &process, step);
                    }
                });
            }
        }
    }

    /// `process/ack {processId, seq}` for held output, on `connection` or the current one.
    /// While the link is down it is dropped: a resume sends the last one again.
    pub(crate) fn send_ack(
        &self,
        connection: Option<&Arc<Connection>>,
        process_id: &str,
        seq: u64,
    ) {
        let Some(connection) = connection
            .cloned()
            .or_else(|| self.rpc.current_connection())
        else {
            return;
        };
        if !connection.queue(ack_frame(process_id, seq)) {
            tracing::debug!(process = %process_id, seq, "acknowledgement dropped with the connection");
        }
    }

    /// Nobody can subscribe to `process` losslessly any more (a `run`, every handle gone):
    /// give up its reserved reader, acknowledging what the server holds for it.
    pub(crate) fn release_lossless(&self, process: &ProcessShared) {
        if let Some(ack) = process.release_reserved_reader() {
            self.send_ack(None, &process.id, ack);
        }
    }

    /// Put a repair read into a new connection's first flight (a resume).
    pub(super) fn queue_repair(
        &self,
        opening: &mut Opening,
        process: &Arc<ProcessShared>,
        after_seq: u64,
    ) {
        let (id, frame) = self
            .rpc
            .request(method::PROCESS_READ, &read_params(&process.id, after_seq));
        tracing::debug!(process = %process.id, after_seq, "repair read on resume");
        // Nobody awaits the receiver: the reader applies the answer.
        drop(opening.applied(id, frame, self.repair_read(process)));
    }

    /// Queue `process/read {afterSeq, waitMs: 0}` whose result the reader applies.
    pub(crate) fn send_repair(
        &self,
        connection: Option<&Arc<Connection>>,
        process: &Arc<ProcessShared>,
        after_seq: u64,
    ) {
        let Some(connection) = connection
            .cloned()
            .or_else(|| self.rpc.current_connection())
        else {
            // The link is recovering: the resume repairs every live process.
            return process.on_read_lost();
        };
        let (id, frame) = self
            .rpc
            .request(method::PROCESS_READ, &read_params(&process.id, after_seq));
        tracing::debug!(process = %process.id, after_seq, "repair read");
        if !connection.send_unawaited(id, frame, self.repair_read(process)) {
            process.on_read_lost();
        }
    }

    /// `process/read {afterSeq, waitMs: 0}` for an event stream that lagged.
    pub(crate) async fn read_retained(
        &self,
        process_id: &str,
        after_seq: u64,
    ) -> Result<ReadResult, ClientError> {
        self.rpc
            .call(method::PROCESS_READ, &read_params(process_id, after_seq))
            .await
    }

    /// `process/terminate`: whether the process was still running.
    pub(crate) async fn terminate(&self, process_id: &str) -> Result<bool, ClientError> {
        let params = TerminateParams {
            process_id: process_id.to_owned(),
        };
        let result: TerminateResult = self.rpc.call(method::PROCESS_TERMINATE, &params).await?;
        Ok(result.running)
    }

    /// Terminate `process_id` in a task of its own, not awaited (a start whose answer was
    /// lost, a dropped handle); nothing if the runtime is gone.
    pub(crate) fn terminate_in_background(&self, process_id: String, why: &'static str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let processes = self.this.clone();
        runtime.spawn(async move {
            let Some(processes) = processes.upgrade() else {
                return;
            };
            let result = processes.terminate(&process_id).await;
            tracing::debug!(process = %process_id, ?result, why, "terminated");
        });
    }
}

pub(super) fn ack_frame(process_id: &str, seq: u64) -> String {
    notification_frame(
        method::PROCESS_ACK,
        &AckParams {
            process_id: process_id.to_owned(),
            seq,
        },
    )
}

fn read_params(process_id: &str, after_seq: u64) -> ReadParams {
    ReadParams {
        process_id: process_id.to_owned(),
        after_seq: Some(after_seq),
        max_bytes: None,
        wait_ms: Some(0),
    }
}

/// Shared by every handle of one process: the last one to go terminates it.
pub(crate) struct HandleGuard {
    pub(crate) processes: Arc<Processes>,
    pub(crate) shared: Arc<ProcessShared>,
}

impl Drop for HandleGuard {
    fn drop(&mut self) {
        // Nobody can subscribe any more: a lossless hold would stall the connection (or,
        // held by the server, the child).
        self.processes.release_lossless(&self.shared);
        if self.shared.is_detached() || self.shared.is_finished() {
            return;
        }
        self.processes
            .terminate_in_background(self.shared.id.clone(), "its last handle was dropped");
    }
}
