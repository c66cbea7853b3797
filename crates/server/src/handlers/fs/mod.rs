//! The `fs/*` methods: parsing, the sandbox plan, the error mapping, and dispatch.
//!
//! Admission (inline, in wire order) decodes params, resolves the request's `sandbox` into
//! a plan (a malformed or unenforceable one is -32602, before any disk access), and
//! reserves or looks up file handles, after claiming one of the connection's fs slots (all
//! taken: -32011 at once, see `limit`). Everything that touches the disk then runs
//! deferred, in its own request task, with the blocking call on tokio's blocking pool — or,
//! when sandboxed, on a thread confined to the plan (`confine`) — including serializing a
//! large result, so file I/O never stalls the runtime or the connection; the call has a
//! deadline (`--fs-timeout-ms`), and files are opened so that opening never blocks
//! (`open`). Errors follow upstream's `map_fs_error`: NotFound → -32004, InvalidInput and
//! PermissionDenied → -32600, anything else (a timeout included) → -32603, with the io text.

mod atomic;
mod confine;
mod copy;
mod handles;
mod limit;
mod metadata;
mod nofollow;
mod open;
mod paths;
mod walk;

use handles::BlockKind;
pub use handles::FileHandles;
pub use limit::MAX_FS_REQUESTS;

use super::{Admitted, Deferred, Reply, RequestContext};
use crate::sandbox::{Plan, policy};
use confine::Confinement;
use limit::Claim;
use rexec_protocol::fs::OpenMode;
use rexec_protocol::fs::{
    CanonicalizeParams, CanonicalizeResult, CloseParams, CopyParams, CreateDirectoryParams,
    GetMetadataBatchParams, GetMetadataBatchResult, GetMetadataParams, MAX_METADATA_BATCH_PATHS,
    MetadataOutcome, OpenParams, OpenResult, ReadBlockParams, ReadBlockResult, ReadDirectoryParams,
    ReadDirectoryResult, ReadFileParams, ReadFileResult, RemoveParams, SandboxContext, WalkParams,
    WriteBlockParams, WriteFileParams,
};
use rexec_protocol::jsonrpc::decode_params;
use rexec_protocol::process::EmptyResult;
use rexec_protocol::{ByteChunk, RpcError, method};
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// A decoded `fs/*` request.
pub enum FsRequest {
    ReadFile(ReadFileParams),
    WriteFile(WriteFileParams),
    CreateDirectory(CreateDirectoryParams),
    GetMetadata(GetMetadataParams),
    GetMetadataBatch(GetMetadataBatchParams),
    Canonicalize(CanonicalizeParams),
    ReadDirectory(ReadDirectoryParams),
    Walk(WalkParams),
    Remove(RemoveParams),
    Copy(CopyParams),
    Open(OpenParams),
    ReadBlock(ReadBlockParams),
    WriteBlock(WriteBlockParams),
    Close(CloseParams),
}

/// Decode an `fs/*` request; unknown `fs/` methods are answered like any unknown method.
pub fn parse(method_name: &str, params: Option<&RawValue>) -> Result<FsRequest, RpcError> {
    Ok(match method_name {
        method::FS_READ_FILE => FsRequest::ReadFile(decode_params(params)?),
        method::FS_WRITE_FILE => FsRequest::WriteFile(decode_params(params)?),
        method::FS_CREATE_DIRECTORY => FsRequest::CreateDirectory(decode_params(params)?),
        method::FS_GET_METADATA => FsRequest::GetMetadata(decode_params(params)?),
        method::FS_GET_METADATA_BATCH => FsRequest::GetMetadataBatch(decode_params(params)?),
        method::FS_CANONICALIZE => FsRequest::Canonicalize(decode_params(params)?),
        method::FS_READ_DIRECTORY => FsRequest::ReadDirectory(decode_params(params)?),
        method::FS_WALK => FsRequest::Walk(decode_params(params)?),
        method::FS_REMOVE => FsRequest::Remove(decode_params(params)?),
        method::FS_COPY => FsRequest::Copy(decode_params(params)?),
        method::FS_OPEN => FsRequest::Open(decode_params(params)?),
        method::FS_READ_BLOCK => FsRequest::ReadBlock(decode_params(params)?),
        method::FS_WRITE_BLOCK => FsRequest::WriteBlock(decode_params(params)?),
        method::FS_CLOSE => FsRequest::Close(decode_params(params)?),
        other => return Err(RpcError::method_not_found(other)),
    })
}

impl FsRequest {
    fn method(&self) -> &'static str {
        match self {
            Self::ReadFile(_) => method::FS_READ_FILE,
            Self::WriteFile(_) => method::FS_WRITE_FILE,
            Self::CreateDirectory(_) => method::FS_CREATE_DIRECTORY,
            Self::GetMetadata(_) => method::FS_GET_METADATA,
            Self::GetMetadataBatch(_) => method::FS_GET_METADATA_BATCH,
            Self::Canonicalize(_) => method::FS_CANONICALIZE,
            Self::ReadDirectory(_) => method::FS_READ_DIRECTORY,
            Self::Walk(_) => method::FS_WALK,
            Self::Remove(_) => method::FS_REMOVE,
            Self::Copy(_) => method::FS_COPY,
            Self::Open(_) => method::FS_OPEN,
            Self::ReadBlock(_) => method::FS_READ_BLOCK,
            Self::WriteBlock(_) => method::FS_WRITE_BLOCK,
            Self::Close(_) => method::FS_CLOSE,
        }
    }
}

/// An admitted `fs/*` request, to run in its own task with its claim.
pub struct FsTask {
    claim: Claim,
    work: Work,
}

enum Work {
    Path(FsRequest, Option<Arc<Plan>>),
    Open(handles::Admitted, OpenParams, Option<Arc<Plan>>),
    ReadBlock(handles::Admitted, ReadBlockParams),
    WriteBlock(handles::Admitted, WriteBlockParams),
    Close(handles::Admitted),
}

pub fn admit(ctx: &RequestContext, request: FsRequest) -> Admitted {
    match admit_task(ctx, request) {
        Ok(Some(task)) => Admitted::Deferred(Deferred::Fs(task)),
        Ok(None) => Admitted::Done(Reply::new(&EmptyResult {})),
        Err(err) => Admitted::Done(Err(err)),
    }
}

/// `Ok(None)`: done already (closing an unknown handle succeeds).
fn admit_task(ctx: &RequestContext, request: FsRequest) -> Result<Option<FsTask>, RpcError> {
    let files = &ctx.files;
    // First, so a refused request leaves no trace (no handle reserved, no turn taken).
    let claim = files
        .claim(request.method(), ctx.server.config.fs_timeout)
        .map_err(|limit::Busy| RpcError::busy("fs requests", MAX_FS_REQUESTS))?;
    let plan = match sandbox_of(&request) {
        Some(Some(sandbox)) => policy::resolve(sandbox, None, &server_tmpdir())?.map(Arc::new),
        _ => None,
    };
    let work = match request {
        FsRequest::Open(params) => Work::Open(files.admit_open(&params)?, params, plan),
        FsRequest::ReadBlock(params) => {
            let admitted = files.admit_block(&params.handle_id, BlockKind::Read, params.len)?;
            Work::ReadBlock(admitted, params)
        }
        FsRequest::WriteBlock(params) => {
            let len = params.chunk.0.len();
            let admitted = files.admit_block(&params.handle_id, BlockKind::Write, len)?;
            Work::WriteBlock(admitted, params)
        }
        FsRequest::Close(params) => match files.admit_close(&params.handle_id)? {
            Some(admitted) => Work::Close(admitted),
            None => return Ok(None),
        },
        FsRequest::GetMetadataBatch(params) if params.paths.len() > MAX_METADATA_BATCH_PATHS => {
            return Err(RpcError::invalid_request(format!(
                "metadata batch must not exceed {MAX_METADATA_BATCH_PATHS} paths"
            )));
        }
        other => Work::Path(other, plan),
    };
    Ok(Some(FsTask { claim, work }))
}

/// `tmpdir` special paths in an fs sandbox name the server's `$TMPDIR`.
fn server_tmpdir() -> BTreeMap<String, String> {
    std::env::var("TMPDIR")
        .map(|dir| BTreeMap::from([("TMPDIR".to_owned(), dir)]))
        .unwrap_or_default()
}

/// What a request writes, for the read-only paths a sandbox keeps inside writable trees.
fn confinement(plan: Option<Arc<Plan>>, request: &FsRequest) -> Option<Confinement> {
    let plan = plan?;
    let (writes, removes_tree) = match request {
        FsRequest::WriteFile(p) => (vec![p.path.as_path()], false),
        FsRequest::CreateDirectory(p) => (vec![p.path.as_path()], false),
        FsRequest::Remove(p) => (vec![p.path.as_path()], true),
        FsRequest::Copy(p) => (vec![p.destination_path.as_path()], false),
        _ => (Vec::new(), false),
    };
    Some(Confinement {
        plan,
        writes: writes.into_iter().map(PathBuf::from).collect(),
        removes_tree,
    })
}

fn sandbox_of(request: &FsRequest) -> Option<&SandboxContext> {
    Some(match request {
        FsRequest::ReadFile(p) => &p.sandbox,
        FsRequest::WriteFile(p) => &p.sandbox,
        FsRequest::CreateDirectory(p) => &p.sandbox,
        FsRequest::GetMetadata(p) => &p.sandbox,
        FsRequest::GetMetadataBatch(p) => &p.sandbox,
        FsRequest::Canonicalize(p) => &p.sandbox,
        FsRequest::ReadDirectory(p) => &p.sandbox,
        FsRequest::Walk(p) => &p.sandbox,
        FsRequest::Remove(p) => &p.sandbox,
        FsRequest::Copy(p) => &p.sandbox,
        FsRequest::Open(p) => &p.sandbox,
        FsRequest::ReadBlock(_) | FsRequest::WriteBlock(_) | FsRequest::Close(_) => return None,
    })
}

pub async fn run(task: FsTask) -> Result<Reply, RpcError> {
    let FsTask { claim, work } = task;
    match work {
        Work::Path(request, plan) => {
            let confinement = confinement(plan, &request);
            run_path(request, confinement, claim).await
        }
        Work::Open(admitted, params, plan) => {
            let handle_id = params.handle_id.clone();
            let confinement = plan.map(|plan| {
                let writes = match params.mode {
                    OpenMode::Replace => vec![params.path.as_path().to_path_buf()],
                    OpenMode::Read => Vec::new(),
                };
                Confinement {
                    plan,
                    writes,
                    removes_tree: false,
                }
            });
            admitted
                .open(params, confinement, claim)
                .await
                .map_err(io_error)?;
            Reply::new(&OpenResult { handle_id })
        }
        Work::ReadBlock(admitted, params) => {
            let block = admitted
                .read_block(params.offset, params.len, claim)
                .await
                .map_err(io_error)?;
            Reply::new(&ReadBlockResult {
                chunk: ByteChunk(block.bytes),
                eof: block.eof,
            })
        }
        Work::WriteBlock(admitted, params) => {
            admitted
                .write_block(params.offset, params.chunk.0, claim)
                .await
                .map_err(io_error)?;
            Reply::new(&EmptyResult {})
        }
        Work::Close(admitted) => {
            admitted.close(claim).await.map_err(io_error)?;
            Reply::new(&EmptyResult {})
        }
    }
}

async fn run_path(
    request: FsRequest,
    confinement: Option<Confinement>,
    claim: Claim,
) -> Result<Reply, RpcError> {
    match request {
        FsRequest::ReadFile(p) => {
            blocking(claim, confinement, move || {
                let follow = p.follow_symlinks.unwrap_or(true);
                let bytes = paths::read_file(p.path.as_path(), follow)?;
                Ok(ReadFileResult {
                    data_base64: ByteChunk(bytes),
                })
            })
            .await
        }
        FsRequest::WriteFile(p) => {
            blocking(claim, confinement, move || {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&p.data_base64)
                    .map_err(|err| {
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("fs/writeFile requires valid base64 dataBase64: {err}"),
                        )
                    })?;
                let follow = p.follow_symlinks.unwrap_or(true);
                paths::write_file(p.path.as_path(), &bytes, follow)?;
                Ok(EmptyResult {})
            })
            .await
        }
        FsRequest::CreateDirectory(p) => {
            blocking(claim, confinement, move || {
                let recursive = p.recursive.unwrap_or(true);
                let follow = p.follow_symlinks.unwrap_or(true);
                paths::create_directory(p.path.as_path(), recursive, follow)?;
                Ok(EmptyResult {})
            })
            .await
        }
        FsRequest::GetMetadata(p) => {
            blocking(claim, confinement, move || {
                metadata::get_metadata(p.path.as_path(), p.follow_symlinks.unwrap_or(true))
            })
            .await
        }
        FsRequest::GetMetadataBatch(p) => {
            blocking(claim, confinement, move || {
                let results = p
                    .paths
                    .iter()
                    .map(|path| match metadata::get_metadata(path.as_path(), true) {
                        Ok(metadata) => MetadataOutcome::Metadata(metadata),
                        Err(err) => MetadataOutcome::Error(io_error(err)),
                    })
                    .collect();
                Ok(GetMetadataBatchResult { results })
            })
            .await
        }
        FsRequest::Canonicalize(p) => {
            blocking(claim, confinement, move || {
                let path = paths::canonicalize(p.path.as_path())?;
                Ok(CanonicalizeResult {
                    path: rexec_protocol::PathUri::from_path(path),
                })
            })
            .await
        }
        FsRequest::ReadDirectory(p) => {
            blocking(claim, confinement, move || {
                let entries = metadata::read_directory(p.path.as_path())?;
                Ok(ReadDirectoryResult { entries })
            })
            .await
        }
        FsRequest::Walk(p) => {
            blocking(claim, confinement, move || {
                walk::walk(p.path.as_path(), &p.options)
            })
            .await
        }
        FsRequest::Remove(p) => {
            blocking(claim, confinement, move || {
                let recursive = p.recursive.unwrap_or(true);
                let force = p.force.unwrap_or(true);
                let follow = p.follow_symlinks.unwrap_or(true);
                paths::remove(p.path.as_path(), recursive, force, follow)?;
                Ok(EmptyResult {})
            })
            .await
        }
        FsRequest::Copy(p) => {
            blocking(claim, confinement, move || {
                copy::copy(
                    p.source_path.as_path(),
                    p.destination_path.as_path(),
                    p.recursive,
                )?;
                Ok(EmptyResult {})
            })
            .await
        }
        FsRequest::Open(_)
        | FsRequest::ReadBlock(_)
        | FsRequest::WriteBlock(_)
        | FsRequest::Close(_) => Err(RpcError::internal("file handle request outside its handle")),
    }
}

/// Run `work` off the runtime (confined to its sandbox, if any) under the request's claim,
/// and serialize its result there too (a large file's base64 would otherwise be encoded on
/// a runtime thread).
async fn blocking<T: Serialize + 'static>(
    claim: Claim,
    confinement: Option<Confinement>,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<Reply, RpcError> {
    claim
        .run(confinement, move || Ok(Reply::new(&work()?)))
        .await
        .map_err(io_error)?
}

/// Upstream's `map_fs_error`.
fn io_error(err: io::Error) -> RpcError {
    let message = err.to_string();
    match err.kind() {
        io::ErrorKind::NotFound => RpcError::not_found(message),
        io::ErrorKind::InvalidInput | io::ErrorKind::PermissionDenied => {
            RpcError::invalid_request(message)
        }
        _ => RpcError::internal(message),
    }
}
