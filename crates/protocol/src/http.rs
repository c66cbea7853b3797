//! `http/request` and its `http/request/bodyDelta` notifications: an HTTP request made by
//! the server, on behalf of a client that cannot reach the target itself.

use crate::ByteChunk;
use serde::{Deserialize, Serialize};

/// Largest body slice one `http/request/bodyDelta` carries.
pub const MAX_BODY_DELTA_BYTES: usize = 1024 * 1024;

/// One header. On a request, `valueEnvVar` names a variable of the server's environment
/// whose value is appended to `value` (so `value` is a prefix such as `"Bearer "`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_env_var: Option<String>,
}

/// Whether redirects are followed (the client's usual limit of 10) or returned as is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HttpRedirectPolicy {
    #[default]
    Follow,
    Stop,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequestParams {
    /// `GET`, `POST`, … (any token).
    pub method: String,
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// In order; repeated names are kept.
    #[serde(default)]
    pub headers: Vec<HttpHeader>,
    #[serde(default, rename = "bodyBase64")]
    pub body: Option<ByteChunk>,
    /// Deadline for the whole exchange, body included; absent or null: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub redirect_policy: HttpRedirectPolicy,
    /// Names the body stream; unique on a connection while a streamed request is active.
    pub request_id: String,
    /// Answer once the head arrives and send the body as `http/request/bodyDelta`s.
    #[serde(default)]
    pub stream_response: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequestResult {
    pub status: u16,
    /// In order; values that are not visible ASCII are left out.
    pub headers: Vec<HttpHeader>,
    /// The whole body; empty when the body is streamed.
    #[serde(rename = "bodyBase64")]
    pub body: ByteChunk,
}

/// One slice of a streamed body. `seq` starts at 1 and has no gaps; the last delta has
/// `done: true`, with `error` set when the body could not be read to its end.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpBodyDelta {
    pub request_id: String,
    pub seq: u64,
    #[serde(rename = "deltaBase64")]
    pub delta: ByteChunk,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub error: Option<String>,
}
