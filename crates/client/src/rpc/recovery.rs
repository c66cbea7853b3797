//! Reconnect and resume: when the link drops, open a new connection, `initialize` with
//! `resumeSessionId`, and put in the same flight what the layer above asks for
//! ([`Inbound::on_resume`]: one `process/read(afterSeq = last delivered)` per live process).
//!
//! Attempts repeat every 100 ms until the resume window (25 s by default, inside the
//! server's 30 s detached-session TTL) runs out. Connect failures, timeouts and -32010
//! (the server has not noticed the old connection is gone) are retried; any other refusal
//! (an unknown or expired session, a rejected token) ends recovery at once. The flight's
//! requests are registered before `initialize` is sent and pipelined right behind
//! `initialized`, all of it behind the WebSocket upgrade request (one round trip in all),
//! so the notifications the resume redirects to the new connection wait in the reorder
//! buffers behind the repair reads, and no other read is issued meanwhile. Requests whose
//! response was lost are not replayed here (writes retry themselves with the same writeId).
//!
//! [`Inbound::on_resume`]: super::Inbound::on_resume

use super::connection::{Connection, Opening};
use super::link::Rpc;
use crate::error::ClientError;
use rexec_protocol::ErrorCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Pause between resume attempts (upstream's interval).
pub(crate) const RESUME_RETRY_INTERVAL: Duration = Duration::from_millis(100);

enum Attempt {
    Retry(String),
    Fatal(ClientError),
}

pub(super) async fn resume(inner: Arc<Rpc>, lost: String) {
    let window = inner.options.resume_window;
    let deadline = Instant::now() + window;
    let session_id = inner.session().session_id.clone();
    tracing::debug!(session = %session_id, %lost, "resuming");
    let mut last_error: String;
    loop {
        if inner.is_closing() {
            return;
        }
        match attempt(&inner, &session_id, deadline).await {
            Ok(connection) => {
                if inner.set_up(connection, true) {
                    tracing::info!(session = %session_id, "session resumed");
                    return;
                }
                last_error = "the new connection ended at once".to_owned();
            }
            Err(Attempt::Retry(reason)) => last_error = reason,
            Err(Attempt::Fatal(error)) => return inner.give_up(error),
        }
        if Instant::now() + RESUME_RETRY_INTERVAL >= deadline {
            return inner.give_up(ClientError::Disconnected(format!(
                "could not resume session {session_id} within {window:?}: {last_error}"
            )));
        }
        tokio::time::sleep(RESUME_RETRY_INTERVAL).await;
    }
}

async fn attempt(
    inner: &Arc<Rpc>,
    session_id: &str,
    deadline: Instant,
) -> Result<Arc<Connection>, Attempt> {
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let mut opening = Opening::default();
    let reply = inner.handshake(&mut opening, Some(session_id));
    if let Some(inbound) = inner.inbound() {
        inbound.on_resume(&mut opening);
    }
    let limit = inner.options.connect_timeout.min(remaining());
    let connection = match inner.open_connection(limit, opening).await {
        Ok(connection) => connection,
        Err(error @ (ClientError::Unauthorized { .. } | ClientError::Certificate { .. })) => {
            return Err(Attempt::Fatal(error));
        }
        Err(error) => return Err(Attempt::Retry(error.to_string())),
    };
    let limit = inner.options.initialize_timeout.min(remaining());
    let outcome = inner.await_handshake(&connection, reply, limit).await;
    let failure = match outcome {
        Ok(result) if result.session_id == session_id => return Ok(connection),
        Ok(result) => Attempt::Fatal(ClientError::Protocol(format!(
            "asked to resume session {session_id}, the server attached session {}",
            result.session_id
        ))),
        Err(ClientError::Rpc(error)) if error.is(ErrorCode::SessionAlreadyAttached) => {
            Attempt::Retry(error.to_string())
        }
        Err(ClientError::Rpc(error)) => Attempt::Fatal(ClientError::Disconnected(format!(
            "the server refused to resume session {session_id}: {error}"
        ))),
        Err(error) => Attempt::Retry(error.to_string()),
    };
    inner.discard(&connection, "resume attempt failed");
    Err(failure)
}
