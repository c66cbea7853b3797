//! The server's inbound frame path, as `connection.rs` runs it: the JSON value budget, the
//! envelope, then the params of the method the frame names — decoding only, so no process
//! is spawned and no file is touched. Also the binary output frame codec.
//!
//! Input: the first byte picks a method name (every request, notification and `fs/*` name,
//! plus an unknown one) and the rest is its params; the last choice instead takes the rest
//! as a whole frame, so the envelope itself is fuzzed too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rexec_protocol::environment::InitializeParams;
use rexec_protocol::jsonrpc::decode_params;
use rexec_protocol::{
    IncomingMessage, MAX_JSONRPC_VALUE_NODES, RpcError, binary_output, check_value_budget, method,
};
use serde_json::value::RawValue;

const METHODS: &[&str] = &[
    method::INITIALIZE,
    method::INITIALIZED,
    method::ENVIRONMENT_INFO,
    method::ENVIRONMENT_STATUS,
    method::PROCESS_START,
    method::PROCESS_READ,
    method::PROCESS_WRITE,
    method::PROCESS_SIGNAL,
    method::PROCESS_TERMINATE,
    method::PROCESS_RESIZE,
    method::PROCESS_OUTPUT,
    method::PROCESS_EXITED,
    method::PROCESS_CLOSED,
    method::FS_READ_FILE,
    method::FS_WRITE_FILE,
    method::FS_CREATE_DIRECTORY,
    method::FS_GET_METADATA,
    method::FS_GET_METADATA_BATCH,
    method::FS_CANONICALIZE,
    method::FS_READ_DIRECTORY,
    method::FS_WALK,
    method::FS_REMOVE,
    method::FS_COPY,
    method::FS_OPEN,
    method::FS_READ_BLOCK,
    method::FS_WRITE_BLOCK,
    method::FS_CLOSE,
    "fs/unknown",
    "no/such-method",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let choice = usize::from(selector) % (METHODS.len() + 1);
    match METHODS.get(choice) {
        Some(name) => {
            let mut frame = format!(r#"{{"id":7,"method":"{name}","params":"#).into_bytes();
            frame.extend_from_slice(rest);
            frame.push(b'}');
            inbound_frame(&frame);
        }
        None => inbound_frame(rest),
    }
    binary_frame(rest);
});

/// `Connection::handle_frame` up to the point where a request would take effect.
fn inbound_frame(frame: &[u8]) {
    let budget = check_value_budget(frame, MAX_JSONRPC_VALUE_NODES);
    // The budget walk accepts exactly the JSON serde_json accepts (fuzz inputs are far
    // below the value limit), minus duplicate keys.
    let as_value = serde_json::from_slice::<serde_json::Value>(frame);
    if budget.is_ok() {
        assert!(as_value.is_ok(), "budget passed JSON serde rejects");
    }
    if as_value.is_err() {
        assert!(budget.is_err(), "budget passed invalid JSON");
    }
    if budget.is_err() {
        return;
    }
    let Ok(message) = IncomingMessage::parse(frame) else {
        return;
    };
    let (name, params) = match &message {
        IncomingMessage::Request { method, params, .. } => (method.as_ref(), *params),
        // The server only logs a notification's name; responses close the connection.
        IncomingMessage::Notification { .. }
        | IncomingMessage::Response { .. }
        | IncomingMessage::Error { .. } => return,
    };
    if name == method::INITIALIZE {
        if let Err(error) = decode_params::<InitializeParams>(params) {
            assert_params_error(&error);
        }
        return;
    }
    if let Err(error) = rexec_server::fuzzing::parse_request(name, params) {
        if METHODS[..METHODS.len() - 2].contains(&name) && !is_notification(name) {
            assert_params_error(&error);
        } else {
            assert_eq!(error.code, -32601, "{name}: {error}");
        }
    }
    check_raw(params);
}

fn is_notification(name: &str) -> bool {
    [
        method::INITIALIZED,
        method::PROCESS_OUTPUT,
        method::PROCESS_EXITED,
        method::PROCESS_CLOSED,
    ]
    .contains(&name)
}

/// Params that decode badly are -32602 with a message.
fn assert_params_error(error: &RpcError) {
    assert_eq!(error.code, -32602, "{error}");
    assert!(!error.message.is_empty());
}

/// A borrowed params value is itself one JSON value.
fn check_raw(params: Option<&RawValue>) {
    if let Some(raw) = params {
        assert!(serde_json::from_str::<&RawValue>(raw.get()).is_ok());
    }
}

/// Decoding never panics, and a decoded frame encodes back to the same bytes.
fn binary_frame(message: &[u8]) {
    if let Ok(frame) = binary_output::decode(message) {
        let encoded = binary_output::encode(&frame).expect("a decoded processId fits");
        assert_eq!(encoded, message);
    }
}
