//! A connection's reader task: every inbound frame in wire order — output frames and
//! notifications up to the layer above, responses to their waiters — then whatever
//! backpressure the layer above asks for before the next frame is read.

use super::connection::{Connection, Pending, end};
use super::link::Rpc;
use super::transport::{self, Frame};
use crate::error::ClientError;
use rexec_protocol::{IncomingMessage, RequestId, RpcError};
use serde_json::value::RawValue;
use std::sync::{Arc, Weak};

pub(super) async fn read_loop(
    connection: Arc<Connection>,
    mut source: transport::FrameSource,
    rpc: Weak<Rpc>,
) {
    let reason = loop {
        match source.next().await {
            Some(Ok(frame)) => {
                let Some(rpc) = rpc.upgrade() else {
                    break "the client was dropped".to_owned();
                };
                let Some(inbound) = rpc.inbound() else {
                    break "the client was dropped".to_owned();
                };
                drop(rpc);
                on_frame(&connection, &*inbound, frame);
                let backpressure = inbound.backpressure();
                drop(inbound);
                if let Some(wait) = backpressure {
                    wait.await;
                }
            }
            Some(Err(err)) => break err,
            None => break "the server closed the connection".to_owned(),
        };
    };
    end(&connection, &rpc, &reason);
}

fn on_frame(connection: &Arc<Connection>, inbound: &dyn super::Inbound, frame: Frame) {
    if inbound.on_output_frame(connection, &frame) {
        return;
    }
    match IncomingMessage::parse(frame.as_ref()) {
        Ok(IncomingMessage::Response { id, result }) => complete(connection, &id, Ok(result)),
        Ok(IncomingMessage::Error {
            id: Some(id),
            error,
        }) => complete(connection, &id, Err(error)),
        Ok(IncomingMessage::Error { id: None, error }) => {
            tracing::warn!(%error, "the server reported an error without a request id");
        }
        Ok(IncomingMessage::Notification { method, params }) => {
            inbound.on_notification(connection, &method, params);
        }
        Ok(IncomingMessage::Request { method, .. }) => {
            tracing::debug!(%method, "ignoring a request from the server");
        }
        Err(err) => tracing::warn!(%err, "ignoring a message that is not JSON-RPC"),
    }
}

fn complete(connection: &Arc<Connection>, id: &RequestId, result: Result<&RawValue, RpcError>) {
    let RequestId::Integer(id) = id else {
        tracing::debug!(%id, "response with an id this client never uses");
        return;
    };
    let Some(pending) = connection.take(*id, result.is_ok()) else {
        tracing::debug!(id, "response to no pending request");
        return;
    };
    let tx = match pending {
        Pending::Call(tx) | Pending::Initialize(tx) => Some(tx),
        Pending::Applied(on_reply, tx) => {
            on_reply.on_reply(connection, result.as_ref().map(|raw| *raw));
            tx
        }
    };
    if let Some(tx) = tx {
        let _ = tx.send(result.map(ToOwned::to_owned).map_err(ClientError::Rpc));
    }
}
