//! The outbound side of a connection: a bounded queue of serialized frames drained by the
//! transport's writer task.
//!
//! The queue is bounded ([`crate::config::OUTBOUND_QUEUE_FRAMES`]) and producers *wait* when
//! it is full. A client that stops reading therefore stalls its own processes' output pumps,
//! which stop reading their pipes, which blocks the children: memory stays bounded and no
//! byte is dropped. Detached sessions have no queue; their events are only retained.

use crate::sync::lock;
use bytes::Bytes;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// One serialized message.
#[derive(Debug)]
pub enum OutboundFrame {
    /// A JSON-RPC message: a WebSocket text frame or a stdio line.
    Text(String),
    /// A binary output frame (`rexec_protocol::binary_output`); only ever queued for a
    /// WebSocket connection that negotiated it.
    Binary(Bytes),
}

pub type FrameSender = mpsc::Sender<OutboundFrame>;
pub type FrameReceiver = mpsc::Receiver<OutboundFrame>;

pub fn channel() -> (FrameSender, FrameReceiver) {
    mpsc::channel(crate::config::OUTBOUND_QUEUE_FRAMES)
}

/// Take every frame already queued behind `first`, so the writer sends them with one flush.
pub fn drain_ready(
    first: OutboundFrame,
    receiver: &mut FrameReceiver,
    batch: &mut Vec<OutboundFrame>,
) {
    batch.push(first);
    while batch.len() < crate::config::OUTBOUND_QUEUE_FRAMES {
        match receiver.try_recv() {
            Ok(frame) => batch.push(frame),
            Err(_) => break,
        }
    }
}

/// The attached connection's outbound queue and how it wants output.
#[derive(Clone)]
pub struct NotificationSink {
    pub frames: FrameSender,
    /// The connection negotiated `process/output.binary`: output goes as binary frames.
    pub binary_output: bool,
}

/// Where a session's notifications go right now: the attached connection's sink, or
/// nowhere while detached. A resume replaces the sink, so the output format follows the
/// connection that is attached now.
#[derive(Default)]
pub struct NotificationRoute {
    sink: Mutex<Option<NotificationSink>>,
}

impl NotificationRoute {
    pub fn current(&self) -> Option<NotificationSink> {
        lock(&self.sink).clone()
    }

    pub(crate) fn set(&self, sink: Option<NotificationSink>) {
        *lock(&self.sink) = sink;
    }
}
