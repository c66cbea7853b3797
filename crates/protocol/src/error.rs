//! JSON-RPC error codes and the upstream error texts.
//!
//! Clients match on codes; the texts follow codex exec-server so logs and tests read the same
//! against either server.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The error codes exec-server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    MethodNotFound,
    InvalidParams,
    Internal,
    NotFound,
    SessionAlreadyAttached,
    /// A per-connection limit on concurrent work is reached; the request did nothing and
    /// may be retried once something in flight finishes. (rexec only.)
    Busy,
}

impl ErrorCode {
    pub const fn code(self) -> i64 {
        match self {
            Self::InvalidRequest => -32600,
            Self::MethodNotFound => -32601,
            Self::InvalidParams => -32602,
            Self::Internal => -32603,
            Self::NotFound => -32004,
            Self::SessionAlreadyAttached => -32010,
            Self::Busy => -32011,
        }
    }
}

/// The `error` member of a JSON-RPC error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

/// The longest error message sent, in bytes: anything a client supplied and the text quotes (a
/// path, a serde message naming the value) is cut there, on a character boundary.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// How much of a client-supplied value (an id, a method name) an error quotes.
pub const MAX_QUOTED_BYTES: usize = 128;

/// `value`, or its first [`MAX_QUOTED_BYTES`] followed by how long it really was.
pub fn quoted(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() <= MAX_QUOTED_BYTES {
        return value.into();
    }
    let cut = char_boundary_at_most(value, MAX_QUOTED_BYTES);
    format!("{}… ({} bytes)", &value[..cut], value.len()).into()
}

/// The largest character boundary of `text` not above `at`.
fn char_boundary_at_most(text: &str, at: usize) -> usize {
    (0..=at.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE_BYTES {
            let cut = char_boundary_at_most(&message, MAX_MESSAGE_BYTES - '…'.len_utf8());
            message.truncate(cut);
            message.push('…');
        }
        Self {
            code: code.code(),
            message,
            data: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParams, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// Unknown method, with the upstream wording.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            ErrorCode::MethodNotFound,
            format!(
                "exec-server stub does not implement `{}` yet",
                quoted(method)
            ),
        )
    }

    pub fn session_already_attached(session_id: &str) -> Self {
        Self::new(
            ErrorCode::SessionAlreadyAttached,
            format!(
                "session {} is already attached to another connection",
                quoted(session_id)
            ),
        )
    }

    pub fn unknown_session(session_id: &str) -> Self {
        Self::invalid_request(format!("unknown session id {}", quoted(session_id)))
    }

    /// A resume by a principal other than the one that created the session (rexec).
    pub fn session_of_another_client(session_id: &str) -> Self {
        Self::invalid_request(format!(
            "session {} belongs to another client",
            quoted(session_id)
        ))
    }

    pub fn session_resumed_elsewhere() -> Self {
        Self::invalid_request("session has been resumed by another connection")
    }

    pub fn initialize_twice() -> Self {
        Self::invalid_request("initialize may only be sent once per connection")
    }

    pub fn not_initialized(method: &str) -> Self {
        Self::invalid_request(format!(
            "client must call initialize before invoking `{}`",
            quoted(method)
        ))
    }

    pub fn not_initialized_notification(method: &str) -> Self {
        Self::invalid_request(format!(
            "client must send initialized before invoking `{}`",
            quoted(method)
        ))
    }

    pub fn unknown_process(process_id: &str) -> Self {
        Self::invalid_request(format!("unknown process id {}", quoted(process_id)))
    }

    pub fn process_starting(process_id: &str) -> Self {
        Self::invalid_request(format!("process id {} is starting", quoted(process_id)))
    }

    pub fn process_exists(process_id: &str) -> Self {
        Self::invalid_request(format!("process {} already exists", quoted(process_id)))
    }

    pub fn start_cancelled(process_id: &str) -> Self {
        Self::invalid_request(format!(
            "process {} start was cancelled",
            quoted(process_id)
        ))
    }

    /// `what` (e.g. "process/read long polls") already fills all `limit` slots of this
    /// connection: the request was not started.
    pub fn busy(what: &str, limit: usize) -> Self {
        Self::new(
            ErrorCode::Busy,
            format!(
                "too many {what} in flight on this connection (limit {limit}); \
                 retry once one finishes"
            ),
        )
    }

    pub fn is(&self, code: ErrorCode) -> bool {
        self.code == code.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_values_are_quoted_short_and_messages_capped() {
        let id = "é".repeat(10_000);
        let error = RpcError::unknown_process(&id);
        assert!(error.message.len() < 300, "{}", error.message.len());
        assert!(error.message.contains("(20000 bytes)"), "{}", error.message);
        let error = RpcError::invalid_params(format!("bad: {id}"));
        assert!(error.message.len() <= MAX_MESSAGE_BYTES);
        assert_eq!(
            RpcError::unknown_process("p1").message,
            "unknown process id p1"
        );
    }
}
