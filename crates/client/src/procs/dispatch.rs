//! What the RPC layer hands up ([`Inbound`], [`OnReply`]): output and notifications to
//! their process's ordered log, repair reads' and starts' answers applied in wire order,
//! and the backpressure lossless subscribers need.
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
//! handled completely before the next one is read. Repair reads are queued without waiting.

use super::ordered::Incoming;
use super::routes::{Processes, ack_frame, lock};
use super::shared::ProcessShared;
use crate::error::ClientError;
use crate::event::ProcessEvent;
use crate::rpc::{Backpressure, Connection, Frame, Inbound, OnReply, Opening, SessionInfo};
use bytes::Bytes;
use rexec_protocol::binary_output;
use rexec_protocol::process::{
    ClosedNotification, ExitedNotification, OutputNotification, OutputStream, ReadResult,
};
use rexec_protocol::{RpcError, extensions, method};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::{Arc, Weak};

impl Inbound for Processes {
    fn on_output_frame(&self, connection: &Arc<Connection>, frame: &Frame) -> bool {
        if let Frame::Binary(message) = frame
            && binary_output::is_output_frame(message)
        {
            match decode_binary_output(message) {
                Ok((process_id, event)) => self.deliver(connection, process_id, event),
                Err(err) => tracing::warn!(%err, "ignoring an undecodable binary output frame"),
            }
            return true;
        }
        let Some((process_id, event)) = frame.as_text().and_then(decode_output_message) else {
            return false;
        };
        self.deliver(connection, &process_id, event);
        true
    }

    fn on_notification(&self, connection: &Arc<Connection>, name: &str, params: Option<&RawValue>) {
        if name == method::SHELL_OUTPUT {
            return self.shell_taps.deliver(params);
        }
        match decode_notification(name, params) {
            Some(Ok((process_id, event))) => self.deliver(connection, &process_id, event),
            Some(Err(err)) => {
                tracing::warn!(method = name, %err, "ignoring an undecodable notification");
            }
            None => tracing::debug!(method = name, "ignoring a notification"),
        }
    }

    fn backpressure(&self) -> Option<Backpressure> {
        let held_back = std::mem::take(&mut *lock(&self.held_back));
        if held_back.is_empty() {
            return None;
        }
        // Backpressure for lossless subscribers: read nothing more until they have room
        // (the server then holds the process's output).
        Some(Box::pin(async move {
            for process in held_back {
                process.wait_for_lossless_readers().await;
            }
        }))
    }

    fn on_connected(&self, session: &SessionInfo) {
        let supports = |name| session.extensions.iter().any(|e| e == name);
        let ordered = supports(extensions::ORDERED_NOTIFICATIONS);
        let holds = supports(extensions::START_HOLD_OUTPUT);
        // Processes routed before the connect (a start in this flight, a reattach).
        for process in self.live_processes() {
            process.set_ordered_server(ordered);
            process.set_server_holds(holds);
        }
    }

    fn on_resume(&self, opening: &mut Opening) {
        for process in self.live_processes() {
            if let Some(after_seq) = process.begin_resume() {
                self.queue_repair(opening, &process, after_seq);
            }
            // The last acknowledgement may have been lost with the old connection.
            if let Some(seq) = process.last_ack() {
                opening.notify(ack_frame(&process.id, seq));
            }
        }
    }

    fn on_link_down(&self, error: ClientError) {
        self.fail_processes(error);
    }
}

impl Processes {
    /// Feed one event to its process's ordered log.
    fn deliver(&self, connection: &Arc<Connection>, process_id: &str, event: Incoming) {
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

    /// A repair read's answer, applied by the reader in wire order.
    pub(super) fn repair_read(&self, process: &Arc<ProcessShared>) -> Box<dyn OnReply> {
        Box::new(RepairRead {
            processes: self.this.clone(),
            process: Arc::clone(process),
        })
    }

    /// A `process/start` answer: the reader marks the process started the moment it
    /// arrives, before it reads the output behind it (which a gap would otherwise hold in
    /// the reorder buffer until the starting task runs again).
    pub(crate) fn start_answer(&self, process: &Arc<ProcessShared>) -> Box<dyn OnReply> {
        Box::new(StartAnswer {
            processes: self.this.clone(),
            process: Arc::clone(process),
        })
    }
}

struct RepairRead {
    processes: Weak<Processes>,
    process: Arc<ProcessShared>,
}

impl OnReply for RepairRead {
    fn on_reply(&self, connection: &Arc<Connection>, result: Result<&RawValue, &RpcError>) {
        let process = &self.process;
        let step = match result {
            Ok(raw) => match serde_json::from_str::<ReadResult>(raw.get()) {
                Ok(read) => process.on_read(read),
                Err(err) => {
                    process.on_read_failed(format!("cannot decode a process/read result: {err}"))
                }
            },
            Err(error) if connection.is_established() => process.on_read_failed(format!(
                "process/read failed while repairing the stream: {error}"
            )),
            // A resume attempt whose initialize failed: the next attempt repairs.
            Err(_) => return process.on_read_lost(),
        };
        if let Some(processes) = self.processes.upgrade() {
            processes.after_step(Some(connection), process, step);
        }
    }

    fn on_lost(&self) {
        self.process.on_read_lost();
    }
}

struct StartAnswer {
    processes: Weak<Processes>,
    process: Arc<ProcessShared>,
}

impl OnReply for StartAnswer {
    fn on_reply(&self, connection: &Arc<Connection>, result: Result<&RawValue, &RpcError>) {
        if result.is_ok()
            && let Some(processes) = self.processes.upgrade()
        {
            let step = self.process.on_started();
            processes.after_step(Some(connection), &self.process, step);
        }
    }

    fn on_lost(&self) {}
}

/// A process notification's target and event; `None` for a method that is not one.
pub fn decode_notification(
    name: &str,
    params: Option<&RawValue>,
) -> Option<Result<(String, Incoming), serde_json::Error>> {
    let raw = params.map_or("null", RawValue::get);
    Some(match name {
        method::PROCESS_OUTPUT => serde_json::from_str::<OutputNotification>(raw).map(|n| {
            let event = ProcessEvent::Output {
                seq: n.seq,
                stream: n.stream,
                bytes: Bytes::from(n.chunk.0),
            };
            (n.process_id, event.into())
        }),
        method::PROCESS_EXITED => serde_json::from_str::<ExitedNotification>(raw).map(|n| {
            let event = ProcessEvent::Exited {
                seq: n.seq,
                code: n.exit_code,
                sandbox_denied: n.sandbox_denied.unwrap_or(false),
                denial: n.sandbox_denial.map(Box::new),
            };
            let incoming = Incoming {
                event,
                awaits_verdict: n.sandbox_denied.is_none(),
            };
            (n.process_id, incoming)
        }),
        method::PROCESS_CLOSED => serde_json::from_str::<ClosedNotification>(raw)
            .map(|n| (n.process_id, ProcessEvent::Closed { seq: n.seq }.into())),
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
    let event = ProcessEvent::Output {
        seq,
        stream,
        bytes: Bytes::from(bytes),
    };
    Some((process_id, event.into()))
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
    let event = ProcessEvent::Output {
        seq: frame.seq,
        stream: frame.stream,
        bytes,
    };
    Ok((frame.process_id, event.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rexec_protocol::IncomingMessage;
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
