//! Method dispatch after the handshake. Params are parsed in wire order, so malformed
//! requests are answered at once. Requests that never wait (start, signal, terminate,
//! resize, environment) are handled inline too, so their effects happen in wire order: a
//! `process/read` pipelined right behind its `process/start` finds the process. Requests that
//! may wait (`process/read` long-polls, `process/write` into a full stdin queue) run in their
//! own task. `fs/*` requests are admitted inline (sandbox gate, file-handle order) and
//! always run in their own task: they do file I/O. `http/request` and `fs/watchMissing`
//! are admitted inline too (bound, duplicate and stale-id checks in wire order) and run in
//! their own task, as is `process/waitFor` (process lookup, validation, the session's
//! bound). `shell/run` is queued inline (wire order is run order) and waits for its command
//! in a task.

mod environment;
pub mod fs;
pub mod http;
mod process;
mod shell;
pub mod watch_missing;

pub use process::acknowledge;

use crate::Server;
use crate::session::Session;
use rexec_protocol::RpcError;
use rexec_protocol::http::HttpRequestParams;
use rexec_protocol::jsonrpc::decode_params;
use rexec_protocol::method;
use rexec_protocol::process::{
    ReadParams, ResizeParams, SignalParams, StartParams, TerminateParams, WriteParams,
};
use rexec_protocol::shell::{ShellRunParams, ShellWaitParams, ShellWriteParams};
use rexec_protocol::wait::WaitForParams;
use rexec_protocol::watch::WatchMissingParams;
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use tokio::sync::{oneshot, watch};

/// A decoded request.
pub enum Request {
    EnvironmentInfo,
    EnvironmentStatus,
    Start(Box<StartParams>),
    Read(ReadParams),
    Write(WriteParams),
    Signal(SignalParams),
    Terminate(TerminateParams),
    Resize(ResizeParams),
    Fs(fs::FsRequest),
    Http(Box<HttpRequestParams>),
    WatchMissing(WatchMissingParams),
    WaitFor(WaitForParams),
    ShellRun(Box<ShellRunParams>),
    ShellWait(ShellWaitParams),
    ShellWrite(ShellWriteParams),
    ShellList,
}

/// What a request runs with.
pub struct RequestContext {
    pub server: Arc<Server>,
    pub session: Arc<Session>,
    /// Observed at admission: a takeover after it fails long polls.
    pub takeovers: watch::Receiver<u64>,
    /// The connection's open files (`fs/open`).
    pub files: Arc<fs::FileHandles>,
    /// The connection's `http/request`s and body streams.
    pub http: Arc<http::HttpRequests>,
    /// The connection's `fs/watchMissing` watch.
    pub watches: Arc<watch_missing::MissingWatches>,
}

/// A successful result, serialized, plus an optional signal fired once it is queued.
pub struct Reply {
    pub result: Box<RawValue>,
    pub on_queued: Option<oneshot::Sender<()>>,
}

impl Reply {
    pub fn new<T: Serialize>(result: &T) -> Result<Self, RpcError> {
        serde_json::value::to_raw_value(result)
            .map(|result| Self {
                result,
                on_queued: None,
            })
            .map_err(|err| RpcError::internal(format!("failed to serialize result: {err}")))
    }
}

pub fn parse(method_name: &str, params: Option<&RawValue>) -> Result<Request, RpcError> {
    Ok(match method_name {
        method::ENVIRONMENT_INFO => Request::EnvironmentInfo,
        method::ENVIRONMENT_STATUS => Request::EnvironmentStatus,
        method::PROCESS_START => Request::Start(Box::new(decode_params(params)?)),
        method::PROCESS_READ => Request::Read(decode_params(params)?),
        method::PROCESS_WRITE => Request::Write(decode_params(params)?),
        method::PROCESS_SIGNAL => Request::Signal(decode_params(params)?),
        method::PROCESS_TERMINATE => Request::Terminate(decode_params(params)?),
        method::PROCESS_RESIZE => Request::Resize(decode_params(params)?),
        method::HTTP_REQUEST => Request::Http(Box::new(decode_params(params)?)),
        method::FS_WATCH_MISSING => Request::WatchMissing(decode_params(params)?),
        method::PROCESS_WAIT_FOR => Request::WaitFor(decode_params(params)?),
        method::SHELL_RUN => Request::ShellRun(Box::new(decode_params(params)?)),
        method::SHELL_WAIT => Request::ShellWait(decode_params(params)?),
        method::SHELL_WRITE => Request::ShellWrite(decode_params(params)?),
        method::SHELL_LIST => Request::ShellList,
        fs_method if fs_method.starts_with("fs/") => Request::Fs(fs::parse(fs_method, params)?),
        other => return Err(RpcError::method_not_found(other)),
    })
}

/// A request that may wait, to run in its own task.
pub enum Deferred {
    Read(ReadParams),
    Write(process::PendingWrite),
    Fs(fs::FsTask),
    Http(http::HttpTask),
    Watch(watch_missing::WatchTask),
    WaitFor(crate::process::wait::PendingWait),
    Shell(shell::ShellTask),
}

pub enum Admitted {
    Done(Result<Reply, RpcError>),
    Deferred(Deferred),
}

/// Handle a request now if it never waits; otherwise hand it back for a task. A sandboxed
/// start waits here (a few milliseconds) for its helper: later requests of the connection
/// must see the process, as they would an unsandboxed one.
pub async fn admit(ctx: &RequestContext, request: Request) -> Admitted {
    Admitted::Done(match request {
        Request::EnvironmentInfo => Reply::new(&ctx.server.environment),
        Request::EnvironmentStatus => environment::status(),
        Request::Start(params) => process::start(ctx, *params).await,
        Request::Signal(params) => process::signal(ctx, params),
        Request::Terminate(params) => process::terminate(ctx, params),
        Request::Resize(params) => process::resize(ctx, params),
        Request::Read(params) => return Admitted::Deferred(Deferred::Read(params)),
        Request::Write(params) => return process::admit_write(ctx, params),
        Request::Fs(request) => return fs::admit(ctx, request),
        Request::Http(params) => return http::admit(&ctx.http, *params),
        Request::WatchMissing(params) => return watch_missing::admit(&ctx.watches, params),
        Request::WaitFor(params) => {
            let session = &ctx.session;
            match crate::process::wait::admit(&session.processes, &session.waits, &params) {
                Ok(pending) => return Admitted::Deferred(Deferred::WaitFor(pending)),
                Err(error) => Err(error),
            }
        }
        Request::ShellRun(params) => return shell::admit_run(ctx, *params),
        Request::ShellWait(params) => return shell::admit_wait(ctx, params),
        Request::ShellWrite(params) => return shell::admit_write(ctx, params),
        Request::ShellList => shell::list(ctx),
    })
}

pub async fn handle_deferred(ctx: &RequestContext, request: Deferred) -> Result<Reply, RpcError> {
    match request {
        Deferred::Read(params) => process::read(ctx, params).await,
        Deferred::Write(pending) => process::write(pending).await,
        Deferred::Fs(task) => fs::run(task).await,
        Deferred::Http(task) => http::run(task).await,
        Deferred::Watch(task) => watch_missing::run(task).await,
        Deferred::WaitFor(pending) => {
            Reply::new(&crate::process::wait::run(pending, ctx.takeovers.clone()).await?)
        }
        Deferred::Shell(task) => shell::run(task).await,
    }
}
