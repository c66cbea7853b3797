//! The JSON-RPC envelope of the codex dialect: no `"jsonrpc"` member on output (a stray one
//! on input is ignored), ids that are integers or strings, and an optional W3C `trace`.
//!
//! Inbound frames are classified by [`IncomingMessage::parse`]; outbound frames are built by
//! [`response_frame`], [`error_frame`] and [`notification_frame`], which serialize straight to
//! a `String` ready for a WebSocket text frame or a stdio line.

use crate::error::RpcError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;

/// A request id: an integer or a string, echoed back exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Integer(i64),
    String(String),
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Integer(n) => write!(f, "{n}"),
            Self::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// The id used for errors about frames that could not be parsed at all.
pub const MALFORMED_FRAME_ID: RequestId = RequestId::Integer(-1);

/// Raw envelope, borrowed from the frame; `params` stays unparsed until dispatch.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    id: Option<RequestId>,
    #[serde(default, borrow)]
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<RpcError>,
}

/// One inbound message, classified.
#[derive(Debug)]
pub enum IncomingMessage<'a> {
    Request {
        id: RequestId,
        method: std::borrow::Cow<'a, str>,
        params: Option<&'a RawValue>,
    },
    Notification {
        method: std::borrow::Cow<'a, str>,
        params: Option<&'a RawValue>,
    },
    Response {
        id: RequestId,
        result: &'a RawValue,
    },
    Error {
        id: Option<RequestId>,
        error: RpcError,
    },
}

impl<'a> IncomingMessage<'a> {
    /// Classify a frame. The error is the serde message, for the id -1 reply.
    pub fn parse(frame: &'a [u8]) -> Result<Self, String> {
        let envelope: Envelope<'a> = serde_json::from_slice(frame).map_err(|e| e.to_string())?;
        match envelope {
            Envelope {
                method: Some(method),
                id: Some(id),
                params,
                ..
            } => Ok(Self::Request { id, method, params }),
            Envelope {
                method: Some(method),
                id: None,
                params,
                ..
            } => Ok(Self::Notification { method, params }),
            Envelope {
                id: Some(id),
                result: Some(result),
                ..
            } => Ok(Self::Response { id, result }),
            Envelope {
                id,
                error: Some(error),
                ..
            } => Ok(Self::Error { id, error }),
            _ => Err("message is neither a request, a notification nor a response".to_owned()),
        }
    }
}

/// Decode a method's params. Missing params are `null`; a method whose params fail to
/// decode from an empty object is retried with `null`, so unit-parameter methods accept
/// either `{}` or `null`. The error is the serde message, for a -32602 reply.
pub fn decode_params<T: DeserializeOwned>(params: Option<&RawValue>) -> Result<T, RpcError> {
    let raw = params.map_or("null", RawValue::get);
    match serde_json::from_str::<T>(raw) {
        Ok(value) => Ok(value),
        Err(err) => {
            if raw.trim() == "{}"
                && let Ok(value) = serde_json::from_str::<T>("null")
            {
                return Ok(value);
            }
            Err(RpcError::invalid_params(serde_message(&err)))
        }
    }
}

/// serde_json's message without its " at line L column C" suffix, which means nothing to a
/// caller who sent a one-line frame.
pub fn serde_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    match text.strip_suffix(&suffix) {
        Some(stripped) => stripped.to_owned(),
        None => text,
    }
}

#[derive(Serialize)]
struct ResponseFrame<'a, T: Serialize> {
    id: &'a RequestId,
    result: &'a T,
}

#[derive(Serialize)]
struct ErrorFrame<'a> {
    id: &'a RequestId,
    error: &'a RpcError,
}

#[derive(Serialize)]
struct NotificationFrame<'a, T: Serialize> {
    method: &'a str,
    params: &'a T,
}

#[derive(Serialize)]
struct RequestFrame<'a, T: Serialize> {
    id: &'a RequestId,
    method: &'a str,
    params: &'a T,
}

fn to_frame<T: Serialize>(value: &T) -> String {
    // Serializing our own wire types cannot fail: they hold no maps with non-string keys
    // and no fallible Serialize impls.
    serde_json::to_string(value).unwrap_or_else(|err| {
        format!(r#"{{"id":-1,"error":{{"code":-32603,"message":"serialization failed: {err}"}}}}"#)
    })
}

pub fn response_frame<T: Serialize>(id: &RequestId, result: &T) -> String {
    to_frame(&ResponseFrame { id, result })
}

pub fn error_frame(id: &RequestId, error: &RpcError) -> String {
    to_frame(&ErrorFrame { id, error })
}

pub fn notification_frame<T: Serialize>(method: &str, params: &T) -> String {
    to_frame(&NotificationFrame { method, params })
}

pub fn request_frame<T: Serialize>(id: &RequestId, method: &str, params: &T) -> String {
    to_frame(&RequestFrame { id, method, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_message_kind() {
        let req =
            br#"{"jsonrpc":"2.0","id":"a","method":"process/read","params":{"processId":"p"}}"#;
        assert!(matches!(
            IncomingMessage::parse(req),
            Ok(IncomingMessage::Request { id: RequestId::String(ref s), .. }) if s == "a"
        ));
        let note = br#"{"method":"initialized","params":{}}"#;
        assert!(matches!(
            IncomingMessage::parse(note),
            Ok(IncomingMessage::Notification { .. })
        ));
        let resp = br#"{"id":7,"result":{}}"#;
        assert!(matches!(
            IncomingMessage::parse(resp),
            Ok(IncomingMessage::Response {
                id: RequestId::Integer(7),
                ..
            })
        ));
        let err = br#"{"id":7,"error":{"code":-32600,"message":"x"}}"#;
        assert!(matches!(
            IncomingMessage::parse(err),
            Ok(IncomingMessage::Error { .. })
        ));
        assert!(IncomingMessage::parse(b"not-json").is_err());
        assert!(IncomingMessage::parse(b"{}").is_err());
    }

    #[test]
    fn frames_omit_jsonrpc_member() {
        let frame = response_frame(&RequestId::Integer(1), &serde_json::json!({}));
        assert_eq!(frame, r#"{"id":1,"result":{}}"#);
        let frame = error_frame(&MALFORMED_FRAME_ID, &RpcError::invalid_request("bad"));
        assert_eq!(
            frame,
            r#"{"id":-1,"error":{"code":-32600,"message":"bad"}}"#
        );
    }

    #[test]
    fn unit_params_accept_empty_object_and_null() {
        #[derive(Deserialize, Debug)]
        struct Unit;
        let empty = RawValue::from_string("{}".into()).expect("raw");
        decode_params::<Unit>(Some(&empty)).expect("{} accepted");
        decode_params::<Unit>(None).expect("missing accepted");
    }

    #[test]
    fn param_errors_name_the_field_without_position() {
        #[derive(Deserialize, Debug)]
        #[serde(rename_all = "camelCase")]
        #[allow(dead_code)]
        struct Write {
            write_id: String,
        }
        let raw = RawValue::from_string("{}".into()).expect("raw");
        let err = decode_params::<Write>(Some(&raw)).expect_err("must fail");
        assert_eq!(err.message, "missing field `writeId`");
        assert_eq!(err.code, -32602);
    }
}
