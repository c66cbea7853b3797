//! The first connection: made by whichever call needs it first, shared by concurrent first
//! calls (a gate held for the whole connect), and retried by the next call when it fails.

use super::connection::{Opening, Reply};
use super::initialized_frame;
use super::link::{Rpc, SessionInfo};
use super::recovery::RESUME_RETRY_INTERVAL;
use crate::error::ClientError;
use rexec_protocol::ErrorCode;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::time::Instant;

impl Rpc {
    /// Whether the first connect succeeded (the link may have been lost since).
    pub(crate) fn is_connected(&self) -> bool {
        self.session.get().is_some()
    }

    /// Connect unless a first connect already succeeded; concurrent callers share one.
    pub(crate) async fn ensure_connected(self: &Arc<Self>) -> Result<(), ClientError> {
        if self.is_connected() {
            return Ok(());
        }
        let _gate = self.first_connect.lock().await;
        if self.is_connected() {
            return Ok(());
        }
        let deadline = Instant::now() + self.options.connect_timeout;
        loop {
            let mut opening = Opening::default();
            // A refused resume must be heard: the server closes a connection whose
            // `initialized` follows a failed `initialize`, possibly before the error leaves.
            let resume = self.options.resume_session.as_deref();
            let reply = match resume {
                None => self.handshake(&mut opening, None),
                Some(id) => self.initialize(&mut opening, Some(id)),
            };
            match self.establish(opening, reply).await {
                // The server has not yet noticed that the session's previous connection
                // (a harness that just restarted) is gone.
                Err(ClientError::Rpc(error))
                    if error.is(ErrorCode::SessionAlreadyAttached)
                        && Instant::now() + RESUME_RETRY_INTERVAL < deadline =>
                {
                    tokio::time::sleep(RESUME_RETRY_INTERVAL).await;
                }
                outcome => return outcome,
            }
        }
    }

    /// Open the first connection with `opening` (which holds the handshake answered to
    /// `reply`), note the session, and make the connection the link. The caller holds the
    /// first-connect gate.
    pub(crate) async fn establish(
        self: &Arc<Self>,
        opening: Opening,
        reply: oneshot::Receiver<Reply>,
    ) -> Result<(), ClientError> {
        if self.is_closing() {
            return Err(ClientError::Disconnected(
                "the client closed the connection".to_owned(),
            ));
        }
        let connection = self
            .open_connection(self.options.connect_timeout, opening)
            .await?;
        let limit = self.options.initialize_timeout;
        let mut result = self.await_handshake(&connection, reply, limit).await;
        if result.is_ok() && self.options.resume_session.is_some() {
            result = connection.send(initialized_frame()).await.and(result);
        }
        let result = match result {
            Ok(result) => result,
            Err(err) => {
                self.discard(&connection, "initialize failed");
                return Err(err);
            }
        };
        let session = SessionInfo {
            session_id: result.session_id,
            environment: result.environment_info,
            extensions: result.rexec.map(|r| r.extensions).unwrap_or_default(),
        };
        let session = self.session.get_or_init(|| session);
        if let Some(inbound) = self.inbound() {
            inbound.on_connected(session);
        }
        if !self.set_up(connection, false) {
            return Err(ClientError::Disconnected(
                "the connection ended right after initialize".to_owned(),
            ));
        }
        Ok(())
    }
}
