//! Params and results of the `fs/*` methods, with the upstream limits.
//!
//! Shapes follow codex exec-server (`codex-rs/exec-server-protocol`) as 0.169.0 answers
//! them: paths are [`PathUri`]s, bytes are base64 ([`ByteChunk`]), optional booleans keep
//! their upstream defaults (applied by the server, documented on each field). Every method
//! accepts an optional `sandbox` (a `FileSystemSandboxContext`), carried here as raw JSON.

use crate::chunk::ByteChunk;
use crate::path_uri::PathUri;
use serde::{Deserialize, Serialize};

/// `fs/readFile` refuses files larger than this (upstream's `MAX_READ_FILE_BYTES`).
pub const MAX_READ_FILE_BYTES: u64 = 512 * 1024 * 1024;
/// Largest `len` of `fs/readBlock` and chunk of `fs/writeBlock` (upstream's
/// `FILE_READ_BLOCK_SIZE`).
pub const MAX_BLOCK_BYTES: usize = 1024 * 1024;
/// Open `fs/open` handles per connection.
pub const MAX_OPEN_HANDLES: usize = 128;
/// Longest `handleId`, in bytes.
pub const MAX_HANDLE_ID_BYTES: usize = 32;
/// Most paths in one `fs/getMetadataBatch`. Upstream has such a limit but its value was not
/// retrievable (0.169.0 does not implement the method); this is rexec's choice.
pub const MAX_METADATA_BATCH_PATHS: usize = 256;

/// The sandbox intent every fs method may carry (`FileSystemSandboxContext` or null).
pub type SandboxContext = Option<serde_json::Value>;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadFileParams {
    pub path: PathUri,
    /// Default true. False refuses a path with a symbolic link in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_symlinks: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: SandboxContext,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadFileResult {
    pub data_base64: ByteChunk,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteFileParams {
    pub path: PathUri,
    /// Decoded by the handler so a bad value gets upstream's -32600 text.
    pub data_base64: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_symlinks: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: SandboxContext,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateDirectoryParams {
    pub path: PathUri,
    /// Default true: create missing parents, and succeed if the directory exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_symlinks: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: SandboxContext,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetMetadataParams {
    pub path: PathUri,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_symlinks: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: SandboxContext,
}

/// `fs/getMetadata` result. For a symbolic link `isSymlink` is true and the other fields
/// describe its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub is_directory: bool,
    pub is_file: bool,
    pub is_symlink: bool,
    pub size: u64,
    /// Milliseconds since the Unix epoch; 0 when the platform does not know.
    pub created_at_ms: i64,
    pub modified_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetMetadataBatchParams {
    pub paths: Vec<PathUri>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: SandboxContext,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetMetadataBatchResult {
    /// One entry per requested path, in order.
    pub results: Vec<MetadataOutcome>,
}

/// `{"metadata": {...}}` or `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MetadataOutcome {
    Metadata(Metadata),
    Error(crate::RpcError),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanonicalizeParams {
    pub path: PathUri,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: SandboxContext,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanonicalizeResult {
    pub path: PathUri,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadDirectoryParams {
    pub path: PathUri,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: SandboxContext,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadDirectoryResult {
    pub entries: Vec<DirectoryEntry>,
}

/// One entry of `fs/readDirectory`; the flags describe a symbolic link's target. Entries
/// whose target cannot be read (dangling links) are left out, as upstream does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryEntry {
    pub file_name: String,
    pub is_directory: bool,
    pub is_file: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalkParams {
    pub path: PathUri,
    pub options: WalkOptions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: SandboxContext,
}

/// Bounds of `fs/walk`. All three limits must be at least 1 except `maxDepth` (0 lists the
/// root's children only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalkOptions {
    /// How many levels below the root's children to descend.
    pub max_depth: u64,
    /// Most directories read (the root counts); an unread one left over sets `truncated`.
    pub max_directories: u64,
    /// Most entries considered (every entry that can be stat'ed, listed or not); more sets
    /// `truncated`.
    pub max_entries: u64,
    /// List and descend into symbolic links to directories (each real directory once).
    pub follow_directory_symlinks: bool,
    /// List directories whose name starts with `.` but do not descend into them.
    #[serde(default)]
    pub prune_hidden_directories: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalkResult {
    /// Breadth first; each directory's entries sorted by name.
    pub entries: Vec<WalkEntry>,
    /// Directories below the root that could not be read.
    pub errors: Vec<WalkError>,
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalkEntry {
    pub path: PathUri,
    pub kind: WalkEntryKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WalkEntryKind {
    Directory,
    File,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalkError {
    pub path: PathUri,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveParams {
    pub path: PathUri,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
    /// Default true: a missing path is not an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_symlinks: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: SandboxContext,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyParams {
    pub source_path: PathUri,
    pub destination_path: PathUri,
    /// Required; must be true to copy a directory.
    pub recursive: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: SandboxContext,
}

/// How `fs/open` opens its file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OpenMode {
    /// Read blocks with `fs/readBlock`.
    #[default]
    Read,
    /// Write blocks with `fs/writeBlock`; the file's new content replaces the old one.
    Replace,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenParams {
    /// Chosen by the client, at most [`MAX_HANDLE_ID_BYTES`], unique among its open handles.
    pub handle_id: String,
    pub path: PathUri,
    #[serde(default)]
    pub mode: OpenMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: SandboxContext,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenResult {
    pub handle_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadBlockParams {
    pub handle_id: String,
    pub offset: u64,
    /// 1..=[`MAX_BLOCK_BYTES`].
    pub len: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadBlockResult {
    pub chunk: ByteChunk,
    /// Fewer than `len` bytes were left.
    pub eof: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteBlockParams {
    pub handle_id: String,
    pub offset: u64,
    /// 1..=[`MAX_BLOCK_BYTES`] bytes.
    pub chunk: ByteChunk,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseParams {
    pub handle_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn walk_options_require_upstream_fields() {
        let err = serde_json::from_value::<WalkOptions>(json!({"maxDepth": 1}))
            .expect_err("missing fields");
        assert!(err.to_string().contains("maxDirectories"), "{err}");
        let options: WalkOptions = serde_json::from_value(json!({
            "maxDepth": 0, "maxDirectories": 1, "maxEntries": 1, "followDirectorySymlinks": false
        }))
        .expect("decode");
        assert!(!options.prune_hidden_directories);
    }

    #[test]
    fn open_mode_defaults_to_read_and_names_upstream_variants() {
        let params: OpenParams =
            serde_json::from_value(json!({"handleId": "h", "path": "file:///tmp/x"}))
                .expect("decode");
        assert_eq!(params.mode, OpenMode::Read);
        let err = serde_json::from_value::<OpenParams>(
            json!({"handleId": "h", "path": "file:///tmp/x", "mode": "write"}),
        )
        .expect_err("bad mode");
        assert!(
            err.to_string()
                .contains("unknown variant `write`, expected `read` or `replace`"),
            "{err}"
        );
    }

    #[test]
    fn metadata_outcomes_are_tagged_by_field_name() {
        let ok = MetadataOutcome::Metadata(Metadata {
            is_directory: false,
            is_file: true,
            is_symlink: false,
            size: 3,
            created_at_ms: 0,
            modified_at_ms: 1,
        });
        assert_eq!(
            serde_json::to_value(&ok).expect("json")["metadata"]["size"],
            3
        );
        let err = MetadataOutcome::Error(crate::RpcError::not_found("gone"));
        assert_eq!(
            serde_json::to_value(&err).expect("json"),
            json!({"error": {"code": -32004, "message": "gone"}})
        );
    }
}
