//! `ClientError`: every way a client call can fail, one variant per thing a caller may want
//! to handle differently. Messages say what failed and with which input.

use rexec_protocol::RpcError;
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The endpoint could not be reached: refused, unreachable, bad URL, spawn failed.
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    /// The WebSocket upgrade was answered with HTTP 401: a missing or wrong bearer token.
    #[error("{endpoint} refused the connection: a valid bearer token is required (HTTP 401)")]
    Unauthorized { endpoint: String },
    /// The TLS handshake failed on a certificate: the server's (wrong name, expired,
    /// unknown CA) or the client's (missing, or refused by the server).
    #[error("cannot connect to {endpoint}: {reason}")]
    Certificate { endpoint: String, reason: String },
    /// The server answered the request with a JSON-RPC error.
    #[error("server error: {0}")]
    Rpc(RpcError),
    /// The connection ended while the call was pending, or could not be resumed.
    #[error("exec-server connection lost: {0}")]
    Disconnected(String),
    /// A connect or initialize step did not finish in time.
    #[error("{what} timed out after {after:?}")]
    Timeout { what: String, after: Duration },
    /// The peer sent something this client cannot interpret, or lacks a needed extension.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The caller's input cannot be sent (a relative remote path, content too large for
    /// one request); nothing was sent.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The process's event stream failed (its events can no longer be followed).
    #[error("process failed: {0}")]
    ProcessFailed(String),
}

impl From<RpcError> for ClientError {
    fn from(error: RpcError) -> Self {
        Self::Rpc(error)
    }
}
