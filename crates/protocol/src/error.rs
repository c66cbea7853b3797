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

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code.code(),
            message: message.into(),
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
            format!("exec-server stub does not implement `{method}` yet"),
        )
    }

    pub fn session_already_attached(session_id: &str) -> Self {
        Self::new(
            ErrorCode::SessionAlreadyAttached,
            format!("session {session_id} is already attached to another connection"),
        )
    }

    pub fn unknown_session(session_id: &str) -> Self {
        Self::invalid_request(format!("unknown session id {session_id}"))
    }

    pub fn session_resumed_elsewhere() -> Self {
        Self::invalid_request("session has been resumed by another connection")
    }

    pub fn initialize_twice() -> Self {
        Self::invalid_request("initialize may only be sent once per connection")
    }

    pub fn not_initialized(method: &str) -> Self {
        Self::invalid_request(format!(
            "client must call initialize before invoking `{method}`"
        ))
    }

    pub fn not_initialized_notification(method: &str) -> Self {
        Self::invalid_request(format!(
            "client must send initialized before invoking `{method}`"
        ))
    }

    pub fn unknown_process(process_id: &str) -> Self {
        Self::invalid_request(format!("unknown process id {process_id}"))
    }

    pub fn process_starting(process_id: &str) -> Self {
        Self::invalid_request(format!("process id {process_id} is starting"))
    }

    pub fn process_exists(process_id: &str) -> Self {
        Self::invalid_request(format!("process {process_id} already exists"))
    }

    pub fn start_cancelled(process_id: &str) -> Self {
        Self::invalid_request(format!("process {process_id} start was cancelled"))
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
