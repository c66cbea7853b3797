//! rexec's named shells (`shell/*`): long-lived PTY shells that run one command line at a
//! time and report each command's exact end (exit code, working directory, duration).
//!
//! A shell belongs to the principal that created it, not to a connection: it outlives
//! disconnects and is closed by the server after its idle timeout. While a command runs,
//! the connection that waits on it gets `shell/output` notifications and, at its end, one
//! `shell/finished`; both carry the command's own `seq`, one sequence, so output numbered
//! below the finish record belongs to the command.
//!
//! A command's output chunks have consecutive seqs from 1, and each says its `offset` (the
//! bytes of the command's output before it). Output printed while nobody waits (between an
//! `awaitingInput` answer and the next `shell/wait`) may reach a connection that does not
//! want it, so the server keeps each command's most recent output chunks
//! ([`REPLAY_BYTES`], at least the newest chunk) and a `shell/wait` with `afterSeq` first
//! sends again, as `shell/output`, every kept chunk numbered above it. When the chunk right
//! after `afterSeq` is no longer kept, the first chunk sent says `afterGap`, and its
//! `offset` tells how many bytes are missing. A caller streaming a command therefore takes
//! a chunk when its seq follows the last one it took, or when it says `afterGap`; any other
//! chunk arrived ahead of the replay that carries it again. An answer's `seq` is the last
//! one it counts, for a caller that read the answer instead of streaming.

use crate::ByteChunk;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Which shell a name runs; chosen when the shell is created.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ShellKind {
    #[default]
    Bash,
    Sh,
    Zsh,
}

/// `shell/run`: run `command` in the shell `name`, creating it on first use. Commands of
/// one shell run one after another, in the order they arrived.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShellRunParams {
    pub name: String,
    /// One command line; it may span lines (a heredoc, a loop).
    pub command: String,
    /// Interrupt the command after this long: SIGINT to the terminal's foreground process
    /// group, SIGKILL after a grace. The shell survives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Answer `awaitingInput: true` once the running command printed nothing this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// Used only when this call creates the shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<ShellKind>,
    /// Used only when this call creates the shell (default: the server's cwd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Used only when this call creates the shell: added to the server's core variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Used only when this call creates the shell: the policy of the whole shell (the
    /// `process/start.sandbox` shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<serde_json::Value>,
}

/// How much of a command's latest output the server keeps to send again
/// (`shell/wait.afterSeq`).
pub const REPLAY_BYTES: usize = 256 * 1024;

/// `shell/wait`: keep waiting for a command that answered `awaitingInput`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShellWaitParams {
    pub name: String,
    pub command_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// The caller has the command's output up to this seq (0: none of it): first send
    /// again the kept chunks numbered above it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
}

/// `shell/write`: bytes for the shell's terminal, as typed (a line for `read`, `\u0003`
/// for Ctrl-C).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShellWriteParams {
    pub name: String,
    pub data: String,
}

/// `shell/list` takes no parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShellListParams {}

/// A command's end: the last record of its sequence.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CommandFinished {
    pub command_id: String,
    pub seq: u64,
    /// The status `$?` after the command, or the shell's own exit status when it ended.
    pub exit_code: i32,
    /// The shell's working directory after the command (unknown when the shell ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    pub duration_ms: u64,
}

/// The first and last bytes of a command's output, and exactly how many lie between.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OutputSummary {
    pub head: ByteChunk,
    pub tail: ByteChunk,
    pub omitted_bytes: u64,
    pub total_bytes: u64,
}

/// The answer to `shell/run` and `shell/wait`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShellCommandResult {
    pub name: String,
    pub command_id: String,
    /// Absent while the command still runs (`awaitingInput`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<CommandFinished>,
    pub timed_out: bool,
    pub awaiting_input: bool,
    /// The command ended the shell (`exit`, `exec`, a kill); the next command starts a
    /// new one.
    pub shell_exited: bool,
    pub output: OutputSummary,
    /// The command's last seq this answer counts (its output up to here is in `output`).
    #[serde(default)]
    pub seq: u64,
}

/// `shell/output`: a chunk of the running command's terminal output, markers removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShellOutputNotification {
    pub name: String,
    pub command_id: String,
    pub seq: u64,
    /// Bytes of the command's output before this chunk.
    #[serde(default)]
    pub offset: u64,
    /// A replayed chunk whose predecessors above `afterSeq` are no longer kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub after_gap: bool,
    pub chunk: ByteChunk,
}

/// `shell/finished`: the command's end, in the same sequence as its output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShellFinishedNotification {
    pub name: String,
    #[serde(flatten)]
    pub finished: CommandFinished,
    pub timed_out: bool,
    pub shell_exited: bool,
}

/// `shell/list`: the caller's shells.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShellListResult {
    pub shells: Vec<ShellEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShellEntry {
    pub name: String,
    pub shell: ShellKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Since the last request that used it.
    pub idle_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<RunningCommand>,
    /// Commands waiting behind the running one.
    pub queued: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningCommand {
    pub command_id: String,
    pub command: String,
    pub running_ms: u64,
}

/// `shell/write` and similar calls that answer nothing but success.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShellWriteResult {}
