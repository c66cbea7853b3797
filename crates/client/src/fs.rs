//! The `fs/*` methods as typed calls on [`Client`], and [`RemoteFile`] for block-wise
//! transfers through `fs/open` / `fs/readBlock` / `fs/writeBlock` / `fs/close`.
//!
//! Paths are absolute paths on the server's host (sent as `file:` URIs). Every call is one
//! request; none is repeated after a reconnect (a lost response leaves it unknown whether it
//! took effect). File handles belong to the transport connection: after a reconnect the
//! server has forgotten them and block calls fail with -32004.

use crate::client::Client;
use crate::error::ClientError;
use rexec_protocol::fs::{
    CanonicalizeParams, CanonicalizeResult, CloseParams, CopyParams, CreateDirectoryParams,
    DirectoryEntry, GetMetadataBatchParams, GetMetadataBatchResult, GetMetadataParams,
    MAX_BLOCK_BYTES, Metadata, MetadataOutcome, OpenMode, OpenParams, OpenResult, ReadBlockParams,
    ReadBlockResult, ReadDirectoryParams, ReadDirectoryResult, ReadFileParams, ReadFileResult,
    RemoveParams, WalkOptions, WalkParams, WalkResult, WriteBlockParams, WriteFileParams,
};
use rexec_protocol::process::EmptyResult;
use rexec_protocol::{ByteChunk, PathUri, RpcError, method};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest content [`Client::write_file`] sends in one `fs/writeFile` (its base64 must fit
/// the server's frame limit, 64 MiB by default); use [`Client::open`] with
/// [`OpenMode::Replace`] for more.
pub const MAX_WRITE_FILE_BYTES: usize = 32 * 1024 * 1024;

/// Re-exported so callers need not depend on `rexec-protocol` for the common types.
pub use rexec_protocol::fs::{OpenMode as FileMode, WalkEntryKind};

static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

fn uri(path: &Path) -> Result<PathUri, ClientError> {
    if !path.is_absolute() {
        return Err(ClientError::InvalidInput(format!(
            "remote path `{}` is not absolute",
            path.display()
        )));
    }
    Ok(PathUri::from_path(path))
}

impl Client {
    /// `fs/readFile`: the whole file (at most 512 MiB; larger files are refused with
    /// -32600 — read them with [`Client::open`]).
    ///
    /// ```no_run
    /// # async fn demo(client: rexec_client::Client) -> Result<(), rexec_client::ClientError> {
    /// use std::path::Path;
    /// client.write_file(Path::new("/tmp/greeting"), b"hi\n").await?;
    /// let bytes = client.read_file(Path::new("/tmp/greeting")).await?;
    /// assert_eq!(bytes, b"hi\n");
    /// for entry in client.read_directory(Path::new("/tmp")).await? {
    ///     println!("{}", entry.file_name);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn read_file(&self, path: &Path) -> Result<Vec<u8>, ClientError> {
        let params = ReadFileParams {
            path: uri(path)?,
            follow_symlinks: None,
            sandbox: None,
        };
        let result: ReadFileResult = self.inner.rpc.call(method::FS_READ_FILE, &params).await?;
        Ok(result.data_base64.0)
    }

    /// `fs/writeFile`: replace the file's content (rexec does it atomically). At most
    /// [`MAX_WRITE_FILE_BYTES`].
    pub async fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
        if bytes.len() > MAX_WRITE_FILE_BYTES {
            return Err(ClientError::InvalidInput(format!(
                "{} bytes is more than fs/writeFile carries ({MAX_WRITE_FILE_BYTES}); \
                 write it block-wise with Client::open(path, FileMode::Replace)",
                bytes.len()
            )));
        }
        let params = WriteFileParams {
            path: uri(path)?,
            data_base64: base64_encode(bytes),
            follow_symlinks: None,
            sandbox: None,
        };
        let _: EmptyResult = self.inner.rpc.call(method::FS_WRITE_FILE, &params).await?;
        Ok(())
    }

    /// `fs/createDirectory`; `recursive` creates missing parents and accepts an existing
    /// directory.
    pub async fn create_directory(&self, path: &Path, recursive: bool) -> Result<(), ClientError> {
        let params = CreateDirectoryParams {
            path: uri(path)?,
            recursive: Some(recursive),
            follow_symlinks: None,
            sandbox: None,
        };
        let _: EmptyResult = self
            .inner
            .rpc
            .call(method::FS_CREATE_DIRECTORY, &params)
            .await?;
        Ok(())
    }

    /// `fs/getMetadata` (through symbolic links; `is_symlink` says whether it was one).
    pub async fn metadata(&self, path: &Path) -> Result<Metadata, ClientError> {
        let params = GetMetadataParams {
            path: uri(path)?,
            follow_symlinks: None,
            sandbox: None,
        };
        self.inner.rpc.call(method::FS_GET_METADATA, &params).await
    }

    /// `fs/getMetadataBatch`: one outcome per path, in order (rexec; at most 256 paths).
    pub async fn metadata_batch(
        &self,
        paths: &[PathBuf],
    ) -> Result<Vec<Result<Metadata, RpcError>>, ClientError> {
        let params = GetMetadataBatchParams {
            paths: paths.iter().map(|p| uri(p)).collect::<Result<_, _>>()?,
            sandbox: None,
        };
        let result: GetMetadataBatchResult = self
            .inner
            .rpc
            .call(method::FS_GET_METADATA_BATCH, &params)
            .await?;
        Ok(result
            .results
            .into_iter()
            .map(|outcome| match outcome {
                MetadataOutcome::Metadata(metadata) => Ok(metadata),
                MetadataOutcome::Error(error) => Err(error),
            })
            .collect())
    }

    /// `fs/canonicalize`: the absolute path with every link and `..` resolved.
    pub async fn canonicalize(&self, path: &Path) -> Result<PathBuf, ClientError> {
        let params = CanonicalizeParams {
            path: uri(path)?,
            sandbox: None,
        };
        let result: CanonicalizeResult = self
            .inner
            .rpc
            .call(method::FS_CANONICALIZE, &params)
            .await?;
        Ok(result.path.into_path())
    }

    /// `fs/readDirectory`: the entries (rexec sorts them by name; other servers may not).
    pub async fn read_directory(&self, path: &Path) -> Result<Vec<DirectoryEntry>, ClientError> {
        let params = ReadDirectoryParams {
            path: uri(path)?,
            sandbox: None,
        };
        let result: ReadDirectoryResult = self
            .inner
            .rpc
            .call(method::FS_READ_DIRECTORY, &params)
            .await?;
        Ok(result.entries)
    }

    /// `fs/walk`: a bounded breadth-first listing of the tree under `path`.
    pub async fn walk(&self, path: &Path, options: WalkOptions) -> Result<WalkResult, ClientError> {
        let params = WalkParams {
            path: uri(path)?,
            options,
            sandbox: None,
        };
        self.inner.rpc.call(method::FS_WALK, &params).await
    }

    /// `fs/remove`: a file, a link, or a directory (`recursive` for a non-empty one);
    /// `force` makes a missing path a success.
    pub async fn remove(
        &self,
        path: &Path,
        recursive: bool,
        force: bool,
    ) -> Result<(), ClientError> {
        let params = RemoveParams {
            path: uri(path)?,
            recursive: Some(recursive),
            force: Some(force),
            follow_symlinks: None,
            sandbox: None,
        };
        let _: EmptyResult = self.inner.rpc.call(method::FS_REMOVE, &params).await?;
        Ok(())
    }

    /// `fs/copy` on the server; `recursive` is required for a directory.
    pub async fn copy(
        &self,
        source: &Path,
        destination: &Path,
        recursive: bool,
    ) -> Result<(), ClientError> {
        let params = CopyParams {
            source_path: uri(source)?,
            destination_path: uri(destination)?,
            recursive,
            sandbox: None,
        };
        let _: EmptyResult = self.inner.rpc.call(method::FS_COPY, &params).await?;
        Ok(())
    }

    /// `fs/open`: a handle for block reads ([`FileMode::Read`]) or for writing a new content
    /// block by block ([`FileMode::Replace`]; on rexec it replaces the file atomically at
    /// [`RemoteFile::close`], and nothing changes if the handle is never closed).
    pub async fn open(&self, path: &Path, mode: OpenMode) -> Result<RemoteFile, ClientError> {
        let handle_id = format!("rexec-{}", NEXT_HANDLE.fetch_add(1, Ordering::Relaxed));
        let params = OpenParams {
            handle_id,
            path: uri(path)?,
            mode,
            sandbox: None,
        };
        let result: OpenResult = self.inner.rpc.call(method::FS_OPEN, &params).await?;
        Ok(RemoteFile {
            client: self.clone(),
            handle_id: result.handle_id,
        })
    }
}

/// An open remote file (see [`Client::open`]). Blocks are at most [`MAX_BLOCK_BYTES`]; a
/// rexec read handle closes itself once a block reaches end of file.
#[derive(Debug, Clone)]
pub struct RemoteFile {
    client: Client,
    handle_id: String,
}

impl RemoteFile {
    /// The handle id this client chose for `fs/open`.
    pub fn handle_id(&self) -> &str {
        &self.handle_id
    }

    /// `fs/readBlock`: up to `len` bytes at `offset`, and whether the end was reached.
    pub async fn read_block(
        &self,
        offset: u64,
        len: usize,
    ) -> Result<(Vec<u8>, bool), ClientError> {
        let params = ReadBlockParams {
            handle_id: self.handle_id.clone(),
            offset,
            len: len.min(MAX_BLOCK_BYTES),
        };
        let result: ReadBlockResult = self
            .client
            .inner
            .rpc
            .call(method::FS_READ_BLOCK, &params)
            .await?;
        Ok((result.chunk.0, result.eof))
    }

    /// `fs/writeBlock`: `bytes` (1..=[`MAX_BLOCK_BYTES`]) at `offset`.
    pub async fn write_block(&self, offset: u64, bytes: Vec<u8>) -> Result<(), ClientError> {
        let params = WriteBlockParams {
            handle_id: self.handle_id.clone(),
            offset,
            chunk: ByteChunk(bytes),
        };
        let _: EmptyResult = self
            .client
            .inner
            .rpc
            .call(method::FS_WRITE_BLOCK, &params)
            .await?;
        Ok(())
    }

    /// `fs/close`; for a replace handle, this is when the new content takes effect.
    pub async fn close(&self) -> Result<(), ClientError> {
        let params = CloseParams {
            handle_id: self.handle_id.clone(),
        };
        let _: EmptyResult = self
            .client
            .inner
            .rpc
            .call(method::FS_CLOSE, &params)
            .await?;
        Ok(())
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}
