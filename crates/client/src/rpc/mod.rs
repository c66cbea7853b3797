//! The RPC layer: JSON-RPC requests and their responses over one transport connection at a
//! time, the `initialize` handshake, the first connect, and resuming the session over a new
//! connection when one drops. It knows nothing about processes.
//!
//! What is not an answer to a plain request goes up through one interface, called
//! synchronously on the connection's reader task: [`Inbound`] for notifications and output
//! frames, [`OnReply`] for the answers the layer above applies itself (a repair read, a
//! start). A frame is handled completely before the next one is read, so a repair read's
//! answer is applied between the notifications around it, in wire order.

mod connect;
mod connection;
mod link;
mod reader;
mod recovery;
mod tls;
mod transport;
mod upgrade;

pub(crate) use connection::{Connection, Opening};
pub(crate) use link::{Rpc, SessionInfo, decode, initialized_frame};
pub(crate) use transport::Frame;

use crate::error::ClientError;
use rexec_protocol::RpcError;
use serde_json::value::RawValue;
use std::pin::Pin;
use std::sync::Arc;

/// A wait the reader sits out before it reads the next frame.
pub(crate) type Backpressure = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The layer above, as the RPC layer calls it. Every method but `on_link_down` runs on a
/// connection's reader task or in a connection's first flight, and must not block.
pub(crate) trait Inbound: Send + Sync {
    /// A frame in a form the layer above reads without JSON-RPC classification (process
    /// output: a binary frame, or a `process/output` text read in one pass): `true` if
    /// it took the frame, else the frame is parsed as JSON-RPC.
    fn on_output_frame(&self, connection: &Arc<Connection>, frame: &Frame) -> bool;

    /// A notification from the server.
    fn on_notification(
        &self,
        connection: &Arc<Connection>,
        method: &str,
        params: Option<&RawValue>,
    );

    /// After each frame: what the reader must wait for before it reads the next one.
    fn backpressure(&self) -> Option<Backpressure>;

    /// The first connect succeeded, with these extensions.
    fn on_connected(&self, session: &SessionInfo);

    /// A resume attempt's first flight: what must ride in it behind `initialized`.
    fn on_resume(&self, opening: &mut Opening);

    /// The link is gone for good (the session could not be resumed, or resuming is off).
    fn on_link_down(&self, error: ClientError);
}

/// A response the layer above applies on the reader task, before the request's waiter (if
/// it has one) hears of it.
pub(crate) trait OnReply: Send + Sync {
    /// The answer arrived on `connection`.
    fn on_reply(&self, connection: &Arc<Connection>, result: Result<&RawValue, &RpcError>);

    /// The connection ended before the answer.
    fn on_lost(&self);
}
