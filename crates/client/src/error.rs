//! `ClientError`: every way a client call can fail, one variant per thing a caller may want
//! to handle differently. Messages say what failed and with which input.

use rexec_protocol::RpcError;
use std::time::Duration;

/// Why a client call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The endpoint could not be reached: refused, unreachable, bad URL, spawn failed.
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect {
        /// The endpoint, as written.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// The WebSocket upgrade was answered with HTTP 401: a missing or wrong bearer token.
    #[error("{endpoint} refused the connection: a valid bearer token is required (HTTP 401)")]
    Unauthorized {
        /// The endpoint, as written.
        endpoint: String,
    },
    /// The TLS handshake failed on a certificate: the server's (wrong name, expired,
    /// unknown CA) or the client's (missing, or refused by the server).
    #[error("cannot connect to {endpoint}: {reason}")]
    Certificate {
        /// The endpoint, as written.
        endpoint: String,
        /// Which certificate, and what is wrong with it.
        reason: String,
    },
    /// The server answered the request with a JSON-RPC error.
    #[error("server error: {0}")]
    Rpc(RpcError),
    /// The connection ended while the call was pending, or could not be resumed.
    #[error("exec-server connection lost: {0}")]
    Disconnected(String),
    /// A connect or initialize step did not finish in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// The step.
        what: String,
        /// Its time limit.
        after: Duration,
    },
    /// The server lacks a protocol extension the call needs (a codex exec-server has none
    /// of rexec's); nothing was sent.
    #[error("the server does not support {extension}")]
    Unsupported {
        /// The extension's name (one of [`crate::extensions`]).
        extension: String,
    },
    /// The peer sent something this client cannot interpret.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The caller's input cannot be sent (a relative remote path, content too large for
    /// one request, a process id already in use); nothing was sent.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The process's event stream failed (its events can no longer be followed).
    #[error("process failed: {0}")]
    ProcessFailed(String),
}

impl ClientError {
    pub(crate) fn unsupported(extension: &str) -> Self {
        Self::Unsupported {
            extension: extension.to_owned(),
        }
    }
}

impl From<RpcError> for ClientError {
    fn from(error: RpcError) -> Self {
        Self::Rpc(error)
    }
}
