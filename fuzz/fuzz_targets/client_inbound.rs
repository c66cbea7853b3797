//! The client's inbound path, as `dispatch.rs` runs it: each line of the input is one
//! frame from the server — a binary output frame when it starts with the format byte,
//! JSON otherwise (a notification, or a response taken as the answer to a repair read).
//! The decoded events and read results drive one process's ordered log, as the client's
//! reader task would, whatever the server says.
//!
//! Oracle: nothing panics, the one-pass `process/output` decode agrees with the general
//! decode on every frame it takes, and the delivered stream keeps the log's promise even
//! when the server lies: each event starts right after the previous one's last seq, nothing
//! follows `Closed` or `Failed`, and a repair read is only asked for when none is pending.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rexec_client::ProcessEvent;
use rexec_client::fuzzing::{
    Incoming, OrderedLog, Repair, decode_binary_output, decode_notification, decode_output_message,
};
use rexec_protocol::process::ReadResult;
use rexec_protocol::{IncomingMessage, binary_output};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, frames)) = data.split_first() else {
        return;
    };
    let mut client = Client::new(flags & 1 != 0);
    if flags & 2 != 0 {
        client.start();
    }
    for frame in frames.split(|&b| b == b'\n') {
        client.frame(frame);
        if client.log.is_terminal() {
            break;
        }
    }
    client.start();
});

struct Client {
    log: OrderedLog,
    started: bool,
    read_pending: bool,
    grace: Option<u64>,
    /// The last seq the delivered stream covers.
    covered: u64,
    /// Output bytes delivered or reported lost.
    ledger: u64,
    ended: bool,
}

impl Client {
    fn new(ordered_server: bool) -> Self {
        Self {
            log: OrderedLog::new(ordered_server),
            started: false,
            read_pending: false,
            grace: None,
            covered: 0,
            ledger: 0,
            ended: false,
        }
    }

    fn start(&mut self) {
        if !self.started {
            self.started = true;
            let mut out = Vec::new();
            let repair = self.log.on_started(&mut out);
            self.after(out, repair);
        }
    }

    fn frame(&mut self, frame: &[u8]) {
        if binary_output::is_output_frame(frame) {
            let message = Bytes::copy_from_slice(frame);
            if let Ok((_, event)) = decode_binary_output(&message) {
                self.event(event);
            }
            return;
        }
        // The client takes the one-pass decode for text messages only (UTF-8 already).
        if let Some((process_id, event)) = std::str::from_utf8(frame)
            .ok()
            .and_then(decode_output_message)
        {
            // The one-pass decode takes only what the general decode gives the same event.
            let general = match IncomingMessage::parse(frame) {
                Ok(IncomingMessage::Notification { method, params }) => {
                    decode_notification(&method, params).and_then(Result::ok)
                }
                _ => None,
            };
            assert_eq!(
                general.as_ref().map(|(id, event)| (id.as_str(), event)),
                Some((process_id.as_ref(), &event)),
                "the one-pass output decode disagrees with the general one"
            );
            self.event(event);
            return;
        }
        match IncomingMessage::parse(frame) {
            Ok(IncomingMessage::Notification { method, params }) => {
                if let Some(Ok((_, event))) = decode_notification(&method, params) {
                    self.event(event);
                }
            }
            Ok(IncomingMessage::Response { result, .. }) if self.read_pending => {
                self.read_pending = false;
                let mut out = Vec::new();
                let repair = match serde_json::from_str::<ReadResult>(result.get()) {
                    Ok(read) => self.log.on_read(read, self.ledger, &mut out),
                    Err(err) => {
                        self.log.on_read_failed(err.to_string(), &mut out);
                        Repair::None
                    }
                };
                self.after(out, repair);
            }
            Ok(IncomingMessage::Error { id: Some(_), error }) if self.read_pending => {
                self.read_pending = false;
                let mut out = Vec::new();
                self.log.on_read_failed(error.to_string(), &mut out);
                self.after(out, Repair::None);
            }
            _ => {
                // The grace timer fires between frames the client is not waiting for.
                if let Some(token) = self.grace.take() {
                    let mut out = Vec::new();
                    let repair = self.log.on_grace_expired(token, &mut out);
                    self.after(out, repair);
                }
            }
        }
    }

    fn event(&mut self, event: Incoming) {
        let mut out = Vec::new();
        let repair = self.log.on_event(event, &mut out);
        self.after(out, repair);
    }

    fn after(&mut self, out: Vec<ProcessEvent>, repair: Repair) {
        for event in out {
            assert!(!self.ended, "{event:?} delivered after the stream ended");
            match &event {
                ProcessEvent::Output { bytes, .. } => self.ledger += bytes.len() as u64,
                ProcessEvent::Gap { bytes_lost, .. } => self.ledger += bytes_lost,
                _ => {}
            }
            match event {
                ProcessEvent::Failed { .. } => self.ended = true,
                ProcessEvent::Closed { seq } => {
                    assert_eq!(
                        Some(seq),
                        self.covered.checked_add(1),
                        "closed out of order"
                    );
                    self.covered = seq;
                    self.ended = true;
                }
                other => {
                    let (first, last) = other.seq_range().expect("a seq-carrying event");
                    assert_eq!(
                        Some(first),
                        self.covered.checked_add(1),
                        "{other:?} after seq {}",
                        self.covered
                    );
                    assert!(last >= first, "{other:?}");
                    self.covered = last;
                }
            }
        }
        match repair {
            Repair::None => {}
            Repair::Read { after_seq } => {
                assert!(self.started, "a read before the start was answered");
                assert!(!self.read_pending, "a second read while one is pending");
                assert_eq!(after_seq, self.covered, "reads from the last delivered seq");
                self.read_pending = true;
            }
            Repair::ArmGrace { token } => self.grace = Some(token),
        }
    }
}
