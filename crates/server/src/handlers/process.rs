//! `process/start`, `read`, `write`, `signal`, `terminate` and rexec's `resize`.

use super::{Admitted, Deferred, Reply, RequestContext};
use crate::process::Process;
use crate::process::containment::Descendants;
use crate::process::env::child_env;
use crate::process::pump::Pump;
use crate::process::read::long_poll;
use crate::process::shell_snapshot as snapshot;
use crate::process::spawn::{SpawnRequest, spawn};
use crate::process::stdin::{StdinPort, WriteOutcome};
use crate::process::table::{Lookup, ProcessTable};
use crate::process::write_order::Turn;
use crate::sandbox::{HelperCommand, Plan, Sandbox, SetupError, policy};
use crate::session::Session;
use rexec_protocol::RpcError;
use rexec_protocol::jsonrpc::decode_params;
use rexec_protocol::process::{
    AckParams, EmptyResult, ReadParams, ResizeParams, SandboxType, SignalParams, StartParams,
    StartResult, TerminateParams, TerminateResult, WriteParams, WriteResult, WriteStatus,
};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::oneshot;

pub async fn start(ctx: &RequestContext, params: StartParams) -> Result<Reply, RpcError> {
    if params.argv.is_empty() {
        return Err(RpcError::invalid_params("argv must not be empty"));
    }
    reject_unenforceable(&params)?;
    let env = child_env(&params.env, params.env_policy.as_ref(), server_env());
    // `process/start.defaultCwd`: no cwd is the server's own.
    let cwd = params
        .cwd
        .as_ref()
        .or(ctx.server.environment.cwd.as_ref())
        .ok_or_else(|| RpcError::invalid_params("cwd is required: the server has no cwd"))?
        .as_path();
    let plan = match &params.sandbox {
        Some(sandbox) => policy::resolve(sandbox, Some(cwd), &env)?,
        None => None,
    };
    let sandbox_type = if plan.is_some() {
        SandboxType::LinuxSeccomp
    } else {
        SandboxType::None
    };
    let table = &ctx.session.processes;
    table.reserve(&params.process_id)?;
    // Released on every way out, including this future being dropped while a sandboxed
    // start waits for its helper (a no-op once the process is active).
    let _reservation = Reservation {
        table,
        id: &params.process_id,
    };
    let helper_path = match (&plan, &ctx.server.config.sandbox_helper) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(RpcError::invalid_params(
                "sandbox runtime paths are not configured",
            ));
        }
        (Some(_), Some(helper)) => Some(helper.as_path()),
    };
    let rewrite = ctx
        .session
        .shell_snapshots
        .prepare(&snapshot::Start {
            params: &params,
            cwd,
            env: &env,
            sandbox: helper_path.zip(plan.as_ref()),
        })
        .await?;
    let (argv, env) = match rewrite {
        Some(rewrite) => (rewrite.argv, rewrite.env),
        None => (params.argv.clone(), env),
    };
    let helper = match helper_path.zip(plan) {
        None => None,
        Some((helper, plan)) => Some((
            HelperCommand::new(helper, &plan, &argv, params.arg0.as_deref()).map_err(|err| {
                RpcError::internal(format!("failed to prepare process sandbox: {err}"))
            })?,
            plan,
        )),
    };
    let process = launch(ctx, &params, &argv, cwd, &env, helper).await?;
    let Some((process, release)) = process else {
        return Err(RpcError::start_cancelled(&params.process_id));
    };
    let mut reply = Reply::new(&StartResult {
        process_id: process.id.clone(),
        sandbox_type: Some(sandbox_type),
    })?;
    reply.on_queued = Some(release);
    Ok(reply)
}

/// A started process and the trigger that lets its pump send notifications.
type Launched = (Arc<Process>, oneshot::Sender<()>);

/// Spawn the child (through the sandbox helper when there is a plan), wait for the helper
/// to exec it, and start its pump. `None` when a terminate cancelled the start.
async fn launch(
    ctx: &RequestContext,
    params: &StartParams,
    argv: &[String],
    cwd: &Path,
    env: &BTreeMap<String, String>,
    helper: Option<(HelperCommand, Plan)>,
) -> Result<Option<Launched>, RpcError> {
    let spawned = spawn(&SpawnRequest {
        argv,
        arg0: params.arg0.as_deref(),
        cwd,
        env,
        tty: params.tty,
        pipe_stdin: params.pipe_stdin,
        helper: helper.as_ref().map(|(command, _)| command),
    })
    .map_err(|err| RpcError::internal(err.to_string()))?;
    let sandbox = match helper {
        None => None,
        Some((command, plan)) => {
            // Until the helper reports, an error or a dropped start must not leave it
            // (or the command it may already have exec'd) running unwatched.
            let mut unwatched = KillOnDrop(Some(&spawned.descendants));
            let sandbox = Sandbox::launch(command, plan, cwd)
                .await
                .map_err(|err| match err {
                    SetupError::Sandbox(why) => RpcError::invalid_params(format!(
                        "failed to prepare process sandbox: {why}"
                    )),
                    SetupError::Spawn(err) => RpcError::internal(err.to_string()),
                })?;
            unwatched.0 = None;
            Some(sandbox)
        }
    };
    let stdin = match spawned.stdin {
        Some(fd) => StdinPort::open(fd, params.tty),
        None => Ok(StdinPort::closed()),
    };
    let process = Arc::new(Process::new(
        params.process_id.clone(),
        spawned.descendants,
        spawned.pty_master,
        stdin.map_err(|err| RpcError::internal(format!("failed to open process stdin: {err}")))?,
        sandbox,
        params.hold_output,
    ));
    let table = &ctx.session.processes;
    if !table.activate(&process) {
        process.kill_group();
        return Ok(None);
    }
    let (release, released) = oneshot::channel();
    let pump = Pump {
        process: Arc::clone(&process),
        child: spawned.child,
        outputs: spawned.outputs,
        route: Arc::clone(&ctx.session.route),
        table: Arc::clone(table),
        release: released,
    };
    if let Err(err) = pump.start() {
        process.kill_group();
        table.remove_closed(&process);
        return Err(RpcError::internal(format!(
            "failed to watch process output: {err}"
        )));
    }
    Ok(Some((process, release)))
}

/// A `Starting` reservation, released when the start ends without activating it.
struct Reservation<'a> {
    table: &'a ProcessTable,
    id: &'a str,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.table.release_reservation(self.id);
    }
}

/// SIGKILLs a child and its descendants on drop unless defused (set to `None`). The
/// dropped `Child` is reaped by tokio in the background.
struct KillOnDrop<'a>(Option<&'a Descendants>);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(descendants) = self.0 {
            descendants.kill();
        }
    }
}

/// Refuse what this server cannot enforce, rather than silently running without it.
fn reject_unenforceable(params: &StartParams) -> Result<(), RpcError> {
    if params.enforce_managed_network || params.managed_network.is_some() {
        return Err(RpcError::invalid_params(
            "managed network cannot be enforced on this executor",
        ));
    }
    if params.network_proxy.is_some() {
        return Err(RpcError::invalid_params(
            "networkProxy is not supported by this executor (capability networkProxyLaunch is false)",
        ));
    }
    Ok(())
}

/// The server's own environment, for `envPolicy` inheritance (non-UTF-8 entries skipped).
pub(super) fn server_env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

fn running(ctx: &RequestContext, process_id: &str) -> Result<Arc<Process>, RpcError> {
    match ctx.session.processes.lookup(process_id) {
        Lookup::Running(process) => Ok(process),
        Lookup::Starting => Err(RpcError::process_starting(process_id)),
        Lookup::Unknown => Err(RpcError::unknown_process(process_id)),
    }
}

pub async fn read(ctx: &RequestContext, params: ReadParams) -> Result<Reply, RpcError> {
    let process = running(ctx, &params.process_id)?;
    // A read never acknowledges held output: a client reads ahead of its slowest
    // subscriber (a repair of its ordered log), so only `process/ack` releases it.
    let result = long_poll(&process, &params, ctx.takeovers.clone()).await?;
    Reply::new(&result)
}

/// `process/ack {processId, seq}`, a notification: nothing is answered, so malformed
/// params and unknown processes are ignored (and change nothing).
pub fn acknowledge(session: &Session, params: Option<&RawValue>) {
    let params: AckParams = match decode_params(params) {
        Ok(params) => params,
        Err(error) => {
            tracing::debug!(session = %session.id, %error, "ignoring a malformed process/ack");
            return;
        }
    };
    if let Lookup::Running(process) = session.processes.lookup(&params.process_id) {
        process.acknowledge(params.seq);
    }
}

/// A write admitted for a running process, holding its place in the process's write order.
pub struct PendingWrite {
    params: WriteParams,
    process: Arc<Process>,
    turn: Turn,
}

impl PendingWrite {
    /// The stdin bytes this write holds until the child takes them.
    pub fn stdin_bytes(&self) -> usize {
        self.params.chunk.0.len()
    }
}

/// Validate a write and, for a running process, take its turn now (wire order).
pub fn admit_write(ctx: &RequestContext, params: WriteParams) -> Admitted {
    if params.write_id.is_empty() {
        return Admitted::Done(Err(RpcError::invalid_params("writeId must not be empty")));
    }
    let status = match ctx.session.processes.lookup(&params.process_id) {
        Lookup::Unknown => WriteStatus::UnknownProcess,
        Lookup::Starting => WriteStatus::Starting,
        Lookup::Running(process) => {
            let turn = process.stdin.take_turn();
            return Admitted::Deferred(Deferred::Write(PendingWrite {
                params,
                process,
                turn,
            }));
        }
    };
    Admitted::Done(Reply::new(&WriteResult { status }))
}

pub async fn write(pending: PendingWrite) -> Result<Reply, RpcError> {
    let PendingWrite {
        params,
        process,
        turn,
    } = pending;
    let status = match process
        .stdin
        .write(turn, &params.write_id, params.chunk.0, params.close_stdin)
        .await
    {
        WriteOutcome::Accepted => WriteStatus::Accepted,
        WriteOutcome::StdinClosed => WriteStatus::StdinClosed,
        WriteOutcome::WriterGone => {
            return Err(RpcError::internal("failed to write to process stdin"));
        }
    };
    Reply::new(&WriteResult { status })
}

pub fn signal(ctx: &RequestContext, params: SignalParams) -> Result<Reply, RpcError> {
    if let Lookup::Running(process) = ctx.session.processes.lookup(&params.process_id) {
        process
            .interrupt()
            .map_err(|err| RpcError::internal(format!("failed to signal process: {err}")))?;
    }
    Reply::new(&EmptyResult {})
}

pub fn terminate(ctx: &RequestContext, params: TerminateParams) -> Result<Reply, RpcError> {
    let table = &ctx.session.processes;
    let running = match table.lookup(&params.process_id) {
        Lookup::Unknown => false,
        Lookup::Starting => table.cancel_start(&params.process_id),
        Lookup::Running(process) => {
            let running = !process.has_exited();
            // Also reaps descendants still holding the output pipes after an exit.
            process.kill_group();
            running
        }
    };
    Reply::new(&TerminateResult { running })
}

pub fn resize(ctx: &RequestContext, params: ResizeParams) -> Result<Reply, RpcError> {
    if params.rows == 0 || params.cols == 0 {
        return Err(RpcError::invalid_params("rows and cols must be at least 1"));
    }
    let process = running(ctx, &params.process_id)?;
    match process.resize(params.rows, params.cols) {
        None => Err(RpcError::invalid_request(format!(
            "process {} has no terminal to resize",
            params.process_id
        ))),
        Some(Err(err)) => Err(RpcError::internal(format!(
            "failed to resize terminal: {err}"
        ))),
        Some(Ok(())) => Reply::new(&EmptyResult {}),
    }
}
