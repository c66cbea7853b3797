//! `process/waitFor` (rexec extension): answer once a condition holds on a process's event
//! log, evaluated by the server as the log changes.
//!
//! A request names one or more conditions; the first to hold, in the log's sequence order,
//! wins. Evaluation starts after `afterSeq` (default 0: the first retained output, so a
//! wait sent right behind its `process/start` misses nothing still retained). The close
//! ends every wait: when no requested condition held before it, the answer is `closed`
//! with no `condition` index.
//!
//! Offsets count output bytes from the process's start, evicted bytes included: per stream
//! for `matched` (the stream it matched on) and for a `bytes` condition restricted to one
//! stream, across all streams otherwise.

use crate::chunk::ByteChunk;
use crate::process::OutputStream;
use serde::{Deserialize, Serialize};

/// The timeout of a wait that names none.
pub const DEFAULT_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// The longest `timeoutMs` accepted (24 h); more is refused.
pub const MAX_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;
/// How many bytes a match may span, when a `match` condition names no `windowBytes`.
pub const DEFAULT_MATCH_WINDOW: u64 = 64 * 1024;
/// The largest `windowBytes` accepted (the server's output retention).
pub const MAX_MATCH_WINDOW: u64 = 1024 * 1024;
/// At most this much of a match is sent back in `matchText` (`matchLen` is exact).
pub const MAX_MATCH_TEXT: usize = 4096;
/// At most this many conditions in one request.
pub const MAX_CONDITIONS: usize = 16;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitForParams {
    pub process_id: String,
    /// Evaluate events after this seq (0: from the first retained output).
    #[serde(default)]
    pub after_seq: u64,
    pub conditions: Vec<WaitCondition>,
    /// Default [`DEFAULT_TIMEOUT_MS`], at most [`MAX_TIMEOUT_MS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// One condition, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum WaitCondition {
    /// The process exited.
    Exit,
    /// The process exited and its output streams closed.
    Closed,
    /// Output matches `regex` (Rust `regex` syntax, over bytes), on one stream or any.
    /// Each stream is matched on its own, across chunk boundaries, over its last
    /// `windowBytes` (default [`DEFAULT_MATCH_WINDOW`]): a longer match is not found.
    /// `$` and `\b` at the end of the window see the end of the output so far.
    Match {
        regex: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream: Option<OutputStream>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window_bytes: Option<u64>,
    },
    /// No output for `ms` milliseconds while the process runs, counted from the wait's
    /// arrival or the last output, whichever is later.
    Idle { ms: u64 },
    /// `count` more output bytes after `afterSeq`, on one stream or all.
    Bytes {
        count: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream: Option<OutputStream>,
    },
}

/// Which condition ended the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WaitFired {
    /// A `match` condition found its regex.
    Matched,
    /// The process exited.
    Exited,
    /// The process closed (also the answer when the close came before any condition).
    Closed,
    /// The output went quiet while the process ran.
    Idle,
    /// A `bytes` condition's count was reached.
    Bytes,
    /// No condition held within `timeoutMs`.
    TimedOut,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitForResult {
    pub fired: WaitFired,
    /// Index of the condition that fired; absent for `timedOut` and an unrequested close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<usize>,
    /// The event it fired at (the output chunk that completed a match or the byte count,
    /// the exit, the close); for `idle` and `timedOut`, the last event the wait had seen
    /// (or `afterSeq`). A later `process/read` or wait may continue from here.
    pub seq: u64,
    /// `matched`: where the match starts in its stream; `bytes`: where the counted bytes
    /// end; otherwise the output bytes so far (all streams).
    pub offset: u64,
    /// The stream of a match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<OutputStream>,
    /// The matched bytes, at most [`MAX_MATCH_TEXT`] of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_text: Option<ByteChunk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_len: Option<u64>,
    /// The exit code, once the process exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Retention had evicted output after `afterSeq` before the wait saw it: a match or
    /// byte count may have been in it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missed_output: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_are_tagged_by_type_in_camel_case() {
        let params: WaitForParams = serde_json::from_value(json!({
            "processId": "p",
            "conditions": [
                {"type": "exit"},
                {"type": "match", "regex": "listening", "stream": "stderr", "windowBytes": 10},
                {"type": "idle", "ms": 5},
                {"type": "bytes", "count": 3},
            ],
        }))
        .expect("valid params");
        assert_eq!(params.after_seq, 0);
        assert_eq!(
            params.conditions[1],
            WaitCondition::Match {
                regex: "listening".into(),
                stream: Some(OutputStream::Stderr),
                window_bytes: Some(10),
            }
        );
        assert_eq!(params.conditions[2], WaitCondition::Idle { ms: 5 });
        let unknown = serde_json::from_value::<WaitForParams>(json!({
            "processId": "p", "conditions": [{"type": "soon"}],
        }));
        assert!(unknown.is_err());
    }

    #[test]
    fn fired_names_are_the_documented_ones() {
        let names: Vec<_> = [WaitFired::Matched, WaitFired::TimedOut]
            .iter()
            .map(|f| serde_json::to_value(f).expect("serializes"))
            .collect();
        assert_eq!(names, [json!("matched"), json!("timedOut")]);
    }
}
