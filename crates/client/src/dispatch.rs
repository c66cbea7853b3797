//! Inbound frames: responses to their waiters, notifications to their process's ordered
//! log, and the repairs those steps ask for.
//!
//! Output arrives either as a `process/output` notification (JSON, base64 chunk) or as a
//! binary output frame (`rexec_protocol::binary_output`, raw bytes) on a connection that
//! negotiated it; both become the same `Incoming::Output`, so ordering, repair, history and
//! completion do not know the difference. A binary message is an output frame when its
//! first byte is the format byte (never the start of JSON), otherwise JSON as before; the
//! grant is not consulted, because on a resume the server may redirect output to the new
//! connection before the `initialize` response that reports the grant.
//!
//! Runs on the connection's reader task, so everything here is synchronous: a frame is
//! handled completely before the next one is read, which keeps repair reads and the
//! notifications around them in wire order. Repair reads are queued without waiting.

use crate::client::{ClientInner, lock, read_params};
use crate::connection::{Connection, Opening, Pending};
use crate::error::ClientError;
use crate::ordered::{Incoming, REORDER_GRACE, Repair};
use crate::shared::{ProcessShared, Step};
use crate::transport::Frame;
use bytes::Bytes;
use rexec_protocol::binary_output;
use rexec_protocol::jsonrpc::notification_frame;
use rexec_protocol::process::{
    AckParams, ClosedNotification, ExitedNotification, OutputNotification, OutputStream, ReadResult,
};
use rexec_protocol::{IncomingMessage, RequestId, RpcError, method};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::Arc;

impl ClientInner {
    pub(crate) fn on_frame(self: &Arc<Self>, connection: &Arc<Connection>, frame: Frame) {
        if let Frame::Binary(message) = &frame
            && binary_output::is_output_frame(message)
        {
            return self.on_binary_output(connection, message);
        }
        if let Some((process_id, event)) = frame.as_text().and_then(decode_output_message) {
            return self.deliver(connection, &process_id, event);
        }
        match IncomingMessage::parse(frame.as_ref()) {
            Ok(IncomingMessage::Response { id, result }) => {
                self.complete(connection, &id, Ok(result));
            }
            Ok(IncomingMessage::Error {
                id: Some(id),
                error,
            }) => self.complete(connection, &id, Err(error)),
            Ok(IncomingMessage::Error { id: None, error }) => {
                tracing::warn!(%error, "the server reported an error without a request id");
            }
            Ok(IncomingMessage::Notification { method, params }) => {
                self.on_notification(connection, &method, params);
            }
            Ok(IncomingMessage::Request { method, .. }) => {
                tracing::debug!(%method, "ignoring a request from the server");
            }
            Err(err) => tracing::warn!(%err, "ignoring a message that is not JSON-RPC"),
        }
    }

    fn complete(
        self: &Arc<Self>,
        connection: &Arc<Connection>,
        id: &RequestId,
        result: Result<&RawValue, RpcError>,
    ) {
        let RequestId::Integer(id) = id else {
            tracing::debug!(%id, "response with an id this client never uses");
            return;
        };
        let Some(pending) = connection.take(*id, result.is_ok()) else {
            tracing::debug!(id, "response to no pending request");
            return;
        };
        match pending {
            Pending::Call(tx) | Pending::Initialize(tx) => {
                let _ = tx.send(result.map(ToOwned::to_owned).map_err(ClientError::Rpc));
            }
            Pending::Start(tx, process) => {
                if result.is_ok() {
                    let step = process.on_started();
                    self.after_step(Some(connection), &process, step);
                }
                let _ = tx.send(result.map(ToOwned::to_owned).map_err(ClientError::Rpc));
            }
            Pending::Repair(process) => {
                let step = match result {
                    Ok(raw) => match serde_json::from_str::<ReadResult>(raw.get()) {
                        Ok(read) => process.on_read(read),
                        Err(err) => process
                            .on_read_failed(format!("cannot decode a process/read result: {err}")),
                    },
                    Err(error) if connection.is_established() => process.on_read_failed(format!(
                        "process/read failed while repairing the stream: {error}"
                    )),
                    // A resume attempt whose initialize failed: the next attempt repairs.
                    Err(_) => return process.on_read_lost(),
                };
                self.after_step(Some(connection), &process, step);
            }
        }
    }

    fn on_notification(
        self: &Arc<Self>,
        connection: &Arc<Connection>,
        name: &str,
        params: Option<&RawValue>,
    ) {
        let (process_id, event) = match decode_notification(name, params) {
            Some(Ok(decoded)) => decoded,
            Some(Err(err)) => {
                tracing::warn!(method = name, %err, "ignoring an undecodable notification");
                return;
            }
            None => {
                tracing::debug!(method = name, "ignoring a notification");
                return;
            }
        };
        self.deliver(connection, &process_id, event);
    }

    /// A binary output frame: the same event as a `process/output` notification.
    fn on_binary_output(self: &Arc<Self>, connection: &Arc<Connection>, message: &Bytes) {
        match decode_binary_output(message) {
            Ok((process_id, event)) => self.deliver(connection, process_id, event),
            Err(err) => tracing::warn!(%err, "ignoring an undecodable binary output frame"),
        }
    }

    /// Feed one event to its process's ordered log.
    fn deliver(self: &Arc<Self>, connection: &Arc<Connection>, process_id: &str, event: Incoming) {
        let Some(process) = self.route(process_id) else {
            tracing::debug!(process = %process_id, "notification for no live process");
            return;
        };
        let step = process.on_event(event);
        self.after_step(Some(connection), &process, step);
        if process.holds_back() {
            lock(&self.held_back).push(process);
        }
    }

    /// Carry out what a step of a process's log asked for. `connection` is the one the
    /// step's input came from (reads go back on it), or `None` for the current link.
    pub(crate) fn after_step(
        self: &Arc<Self>,
        connection: Option<&Arc<Connection>>,
        process: &Arc<ProcessShared>,
        step: Step,
    ) {
        if step.terminal {
            self.remove_route(process);
        }
        if let Some(seq) = step.ack {
            self.send_ack(connection, &process.id, seq);
        }
        match step.repair {
            Repair::None => {}
            Repair::Read { after_seq } => self.send_repair(connection, process, after_seq),
            Repair::ArmGrace { token } => {
                let inner = Arc::downgrade(self);
                let process = Arc::clone(process);
                tokio::spawn(async move {
                    tokio::time::sleep(REORDER_GRACE).await;
                    if let Some(inner) = inner.upgrade() {
                        let step = process.on_grace_expired(token);
                        inner.after_step(None, &process, step);
                    }
                });
            }
        }
    }

    /// `process/ack {processId, seq}` for held output, on `connection` or the current one.
    /// While the link is down it is dropped: a resume sends the last one again.
    pub(crate) fn send_ack(
        &self,
        connection: Option<&Arc<Connection>>,
        process_id: &str,
        seq: u64,
    ) {
        let frame = self.ack_frame(process_id, seq);
        let current;
        let connection = match connection {
            Some(connection) => connection,
            None => match self.current_connection() {
                Some(connection) => {
                    current = connection;
                    &current
                }
                None => return,
            },
        };
        if !connection.send_notification(frame) {
            tracing::debug!(process = %process_id, seq, "acknowledgement dropped with the connection");
        }
    }

    pub(crate) fn ack_frame(&self, process_id: &str, seq: u64) -> String {
        notification_frame(
            method::PROCESS_ACK,
            &AckParams {
                process_id: process_id.to_owned(),
                seq,
            },
        )
    }

    /// Put a repair read into a new connection's first flight (a resume).
    pub(crate) fn queue_repair(
        &self,
        opening: &mut Opening,
        process: &Arc<ProcessShared>,
        after_seq: u64,
    ) {
        let (id, frame) = self.request(method::PROCESS_READ, &read_params(&process.id, after_seq));
        tracing::debug!(process = %process.id, after_seq, "repair read on resume");
        opening.request(id, frame, Pending::Repair(Arc::clone(process)));
    }

    /// Queue `process/read {afterSeq, waitMs: 0}` whose result the reader applies.
    pub(crate) fn send_repair(
        &self,
        connection: Option<&Arc<Connection>>,
        process: &Arc<ProcessShared>,
        after_seq: u64,
    ) {
        let Some(connection) = connection.cloned().or_else(|| self.current_connection()) else {
            // The link is recovering: the resume repairs every live process.
            return process.on_read_lost();
        };
        let (id, frame) = self.request(method::PROCESS_READ, &read_params(&process.id, after_seq));
        tracing::debug!(process = %process.id, after_seq, "repair read");
        if !connection.send_repair(id, Arc::clone(process), frame) {
            process.on_read_lost();
        }
    }
}

/// A process notification's target and event; `None` for a method that is not one.
pub fn decode_notification(
    name: &str,
    params: Option<&RawValue>,
) -> Option<Result<(String, Incoming), serde_json::Error>> {
    let raw = params.map_or("null", RawValue::get);
    Some(match name {
        method::PROCESS_OUTPUT => serde_json::from_str::<OutputNotification>(raw).map(|n| {
            let event = Incoming::Output {
                seq: n.seq,
                stream: n.stream,
                bytes: Bytes::from(n.chunk.0),
            };
            (n.process_id, event)
        }),
        method::PROCESS_EXITED => serde_json::from_str::<ExitedNotification>(raw).map(|n| {
            let event = Incoming::Exited {
                seq: n.seq,
                code: n.exit_code,
                sandbox_denied: n.sandbox_denied,
                denial: n.sandbox_denial.map(Box::new),
            };
            (n.process_id, event)
        }),
        method::PROCESS_CLOSED => serde_json::from_str::<ClosedNotification>(raw)
            .map(|n| (n.process_id, Incoming::Closed { seq: n.seq })),
        _ => return None,
    })
}

/// A `process/output` notification as one text message, read in one pass: the chunk's
/// base64 borrowed from the frame (not copied) and decoded straight into the event's bytes. `None` for anything else, or anything this path does not take
/// (escapes inside the chunk, say): the caller then decodes the frame the general way,
/// which gives the same event for every message both accept.
pub fn decode_output_message(frame: &str) -> Option<(Cow<'_, str>, Incoming)> {
    // Another member (an `id`, a `jsonrpc`) makes it something to classify the general way.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Message<'a> {
        #[serde(borrow)]
        method: &'a str,
        #[serde(borrow)]
        params: Params<'a>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Params<'a> {
        #[serde(borrow)]
        process_id: Cow<'a, str>,
        seq: u64,
        stream: OutputStream,
        #[serde(borrow)]
        chunk: &'a [u8],
    }
    if !frame.starts_with(OUTPUT_MESSAGE_PREFIX) {
        return None;
    }
    let message: Message<'_> = serde_json::from_str(frame).ok()?;
    if message.method != method::PROCESS_OUTPUT {
        return None;
    }
    let Params {
        process_id,
        seq,
        stream,
        chunk,
    } = message.params;
    let bytes = base64_simd::STANDARD.decode_to_vec(chunk).ok()?;
    let event = Incoming::Output {
        seq,
        stream,
        bytes: Bytes::from(bytes),
    };
    Some((process_id, event))
}

/// How rexec and codex both start a `process/output` notification.
const OUTPUT_MESSAGE_PREFIX: &str = r#"{"method":"process/output","params":{"#;

/// A binary output frame's target and event, the payload sliced out of the message
/// without a copy.
pub fn decode_binary_output(
    message: &Bytes,
) -> Result<(&str, Incoming), binary_output::BinaryOutputError> {
    let frame = binary_output::decode(message)?;
    // The payload is the message's tail, so this range is always in bounds.
    let bytes = message.slice(message.len() - frame.chunk.len()..);
    let event = Incoming::Output {
        seq: frame.seq,
        stream: frame.stream,
        bytes,
    };
    Ok((frame.process_id, event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rexec_protocol::process::OutputNotificationRef;

    fn general(frame: &str) -> Option<(String, Incoming)> {
        match IncomingMessage::parse(frame.as_bytes()).ok()? {
            IncomingMessage::Notification { method, params } => {
                decode_notification(&method, params)?.ok()
            }
            _ => None,
        }
    }

    #[test]
    fn the_one_pass_output_decode_agrees_with_the_general_one() {
        for process_id in ["p1", "with \"quotes\" and \u{7}"] {
            let frame = OutputNotificationRef {
                process_id,
                seq: 42,
                stream: OutputStream::Stderr,
                chunk: &[0, 1, 2, 255, b'\n'],
            }
            .to_frame();
            let (id, event) = decode_output_message(&frame).expect("the fast path");
            assert_eq!(Some((id.into_owned(), event)), general(&frame), "{frame}");
        }
    }

    #[test]
    fn both_decodes_refuse_the_same_base64() {
        for chunk in [
            "aGk=", "aGl=", "aGk", "aGk==", "a===", "", "====", "aG k=", "aGk=aGk=",
        ] {
            let frame = format!(
                r#"{{"method":"process/output","params":{{"processId":"p","seq":1,"stream":"stdout","chunk":"{chunk}"}}}}"#
            );
            let fast = decode_output_message(&frame).map(|(id, event)| (id.into_owned(), event));
            assert_eq!(fast, general(&frame), "{chunk:?}");
        }
    }

    #[test]
    fn anything_else_is_left_to_the_general_decode() {
        for frame in [
            // An escaped slash in the chunk (valid JSON, not borrowable).
            r#"{"method":"process/output","params":{"processId":"p","seq":1,"stream":"stdout","chunk":"a\/8="}}"#,
            // A request, not a notification.
            r#"{"method":"process/output","params":{"processId":"p","seq":1,"stream":"stdout","chunk":"aGk="},"id":3}"#,
            r#"{"method":"process/exited","params":{"processId":"p","seq":1,"exitCode":0}}"#,
            r#"{"method":"process/output","params":{"processId":"p","seq":1,"stream":"stdout","chunk":"***"}}"#,
        ] {
            assert!(decode_output_message(frame).is_none(), "{frame}");
        }
        let escaped = r#"{"method":"process/output","params":{"processId":"p","seq":1,"stream":"stdout","chunk":"a\/8="}}"#;
        assert!(
            general(escaped).is_some(),
            "the general path still takes it"
        );
    }
}
