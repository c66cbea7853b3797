//! `process/*` requests, results and notifications.

use crate::chunk::{ByteChunk, serialize_base64};
use crate::path_uri::PathUri;
use crate::sandbox::SandboxDenial;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `process/start` params (upstream `ExecParams`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartParams {
    pub process_id: String,
    pub argv: Vec<String>,
    /// Required upstream; rexec (`process/start.defaultCwd`) takes a missing `cwd` as its
    /// own working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathUri>,
    /// The child's whole environment unless `env_policy` says otherwise.
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_policy: Option<EnvPolicy>,
    pub tty: bool,
    #[serde(default)]
    pub pipe_stdin: bool,
    #[serde(default)]
    pub arg0: Option<String>,
    /// Kept as JSON here: the server decodes it with errors that name the field, and an
    /// unparsable context must fail the start, not the whole frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enforce_managed_network: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_network: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_proxy: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell_snapshot: Option<serde_json::Value>,
    /// Telemetry only; accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// rexec extension `process/start.holdOutput`: output the client has not acknowledged
    /// is never evicted; the server stops reading the child's output instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hold_output: bool,
}

/// Which of the server's own variables a child inherits (upstream shell-environment policy).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EnvPolicy {
    pub inherit: EnvInherit,
    #[serde(default)]
    pub ignore_default_excludes: bool,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub include_only: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EnvInherit {
    /// The server's core variables (HOME, PATH, USER, SHELL, TMPDIR): the default.
    #[default]
    Core,
    All,
    None,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum SandboxType {
    None,
    MacosSeatbelt,
    LinuxSeccomp,
    WindowsRestrictedToken,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartResult {
    pub process_id: String,
    #[serde(default)]
    pub sandbox_type: Option<SandboxType>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
    Pty,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadParams {
    pub process_id: String,
    #[serde(default)]
    pub after_seq: Option<u64>,
    #[serde(default)]
    pub max_bytes: Option<u64>,
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OutputChunk {
    pub seq: u64,
    pub stream: OutputStream,
    pub chunk: ByteChunk,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadResult {
    pub chunks: Vec<OutputChunk>,
    pub next_seq: u64,
    pub exited: bool,
    pub exit_code: Option<i32>,
    pub closed: bool,
    pub failure: Option<String>,
    #[serde(default)]
    pub sandbox_denied: bool,
    /// rexec extension: output chunks dropped from retention so far. Every one of them has
    /// a lower seq than any retained chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evicted_chunks: Option<u64>,
    /// rexec extension: bytes of those evicted chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evicted_bytes: Option<u64>,
    /// rexec extension: what the sandbox refused, when `sandbox_denied` and known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_denial: Option<SandboxDenial>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteParams {
    pub process_id: String,
    #[serde(default)]
    pub chunk: ByteChunk,
    pub write_id: String,
    /// rexec extension: close the child's stdin after writing `chunk`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub close_stdin: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum WriteStatus {
    Accepted,
    UnknownProcess,
    StdinClosed,
    Starting,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteResult {
    pub status: WriteStatus,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ProcessSignal {
    Interrupt,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalParams {
    pub process_id: String,
    pub signal: ProcessSignal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminateParams {
    pub process_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TerminateResult {
    pub running: bool,
}

/// rexec extension `process/resize`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResizeParams {
    pub process_id: String,
    pub rows: u16,
    pub cols: u16,
}

/// rexec notification `process/ack` (`process/start.holdOutput`): every event with a seq
/// up to `seq` has reached the client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AckParams {
    pub process_id: String,
    pub seq: u64,
}

/// An empty result object, `{}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EmptyResult {}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OutputNotification {
    pub process_id: String,
    pub seq: u64,
    pub stream: OutputStream,
    pub chunk: ByteChunk,
}

/// The borrowed form the server sends, so a retained chunk is encoded without a copy.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputNotificationRef<'a> {
    pub process_id: &'a str,
    pub seq: u64,
    pub stream: OutputStream,
    #[serde(serialize_with = "serialize_base64")]
    pub chunk: &'a [u8],
}

impl OutputNotificationRef<'_> {
    /// The whole `process/output` notification, byte for byte what
    /// [`crate::jsonrpc::notification_frame`] makes of it, but with the chunk's base64 written
    /// straight into the frame: it never needs escaping, so the JSON string escaper (the
    /// largest cost of the JSON output path) does not walk it.
    pub fn to_frame(&self) -> String {
        use std::fmt::Write as _;
        let base64 = base64_simd::STANDARD;
        // Built as a String throughout, so the frame is never scanned again as UTF-8.
        let mut frame = String::with_capacity(
            base64.encoded_length(self.chunk.len()) + self.process_id.len() + 96,
        );
        frame.push_str(r#"{"method":"process/output","params":{"processId":"#);
        // A string and a unit enum variant: serializing them cannot fail.
        frame.push_str(&serde_json::to_string(self.process_id).unwrap_or_default());
        let _ = write!(frame, r#","seq":{},"stream":"#, self.seq);
        frame.push_str(&serde_json::to_string(&self.stream).unwrap_or_default());
        frame.push_str(r#","chunk":""#);
        base64.encode_append(self.chunk, &mut frame);
        frame.push_str(r#""}}"#);
        frame
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExitedNotification {
    pub process_id: String,
    pub seq: u64,
    pub exit_code: i32,
    /// Legacy servers omit it; rexec always sends it.
    #[serde(default)]
    pub sandbox_denied: Option<bool>,
    /// rexec extension: what the sandbox refused, when `sandbox_denied` and known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_denial: Option<SandboxDenial>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClosedNotification {
    pub process_id: String,
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_params_decode_the_upstream_example() {
        let json = r#"{"processId":"proc-1","argv":["bash","-lc","printf 'ready\\n'"],
            "cwd":"file:///tmp","env":{"PATH":"/usr/bin:/bin"},"tty":false,"pipeStdin":false,"arg0":null}"#;
        let params: StartParams = serde_json::from_str(json).expect("decode");
        assert_eq!(params.argv[0], "bash");
        assert_eq!(
            params.cwd.as_ref().map(PathUri::as_path),
            Some(std::path::Path::new("/tmp"))
        );
        assert!(!params.tty);
        assert!(!params.hold_output, "upstream never asks to hold output");
        let encoded = serde_json::to_string(&params).expect("encode");
        assert!(
            !encoded.contains("holdOutput"),
            "an upstream peer is never sent the field unasked: {encoded}"
        );
    }

    #[test]
    fn exited_accepts_legacy_payload_without_sandbox_denied() {
        let legacy: ExitedNotification =
            serde_json::from_str(r#"{"processId":"p","seq":3,"exitCode":7}"#).expect("decode");
        assert_eq!(legacy.sandbox_denied, None);
    }

    #[test]
    fn output_ref_serializes_like_the_owned_form() {
        let owned = OutputNotification {
            process_id: "p".into(),
            seq: 1,
            stream: OutputStream::Stdout,
            chunk: ByteChunk(b"hi\n".to_vec()),
        };
        let borrowed = OutputNotificationRef {
            process_id: "p",
            seq: 1,
            stream: OutputStream::Stdout,
            chunk: b"hi\n",
        };
        assert_eq!(
            serde_json::to_string(&owned).expect("owned"),
            serde_json::to_string(&borrowed).expect("borrowed")
        );
    }

    #[test]
    fn the_output_frame_is_the_serialized_notification() {
        for (process_id, chunk) in [
            ("p", &b"hi\n"[..]),
            ("with \"quotes\" and \\ and \u{1}", &[0u8, 255, 10, 13][..]),
            ("", &[][..]),
            ("big", &[7u8; 100_003][..]),
        ] {
            for stream in [
                OutputStream::Stdout,
                OutputStream::Stderr,
                OutputStream::Pty,
            ] {
                let output = OutputNotificationRef {
                    process_id,
                    seq: u64::MAX,
                    stream,
                    chunk,
                };
                assert_eq!(
                    output.to_frame(),
                    crate::jsonrpc::notification_frame(crate::method::PROCESS_OUTPUT, &output)
                );
            }
        }
    }

    #[test]
    fn write_requires_write_id() {
        let err = serde_json::from_str::<WriteParams>(r#"{"processId":"p","chunk":""}"#)
            .expect_err("writeId is required");
        assert!(err.to_string().contains("missing field `writeId`"));
    }
}
