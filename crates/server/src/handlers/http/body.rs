//! A response body: read whole for a plain `http/request`, or pumped as ordered
//! `http/request/bodyDelta` notifications for `streamResponse`.

use super::StreamReservation;
use crate::outbound::{FrameSender, OutboundFrame};
use futures_util::StreamExt;
use rexec_protocol::http::{HttpBodyDelta, MAX_BODY_DELTA_BYTES};
use rexec_protocol::jsonrpc::notification_frame;
use rexec_protocol::{ByteChunk, RpcError, method};
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::oneshot;

/// Largest body a plain (not streamed) `http/request` returns: its base64 must fit in a
/// client's 64 MiB frame. Larger bodies need `streamResponse`.
pub const MAX_BUFFERED_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The whole body, up to [`MAX_BUFFERED_BODY_BYTES`].
pub async fn read_all(response: reqwest::Response) -> Result<Vec<u8>, RpcError> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|err| {
            RpcError::internal(format!("failed to read http/request response body: {err}"))
        })?;
        if body.len() + chunk.len() > MAX_BUFFERED_BODY_BYTES {
            return Err(RpcError::internal(format!(
                "http/request response body is larger than {MAX_BUFFERED_BODY_BYTES} bytes; \
                 ask for streamResponse"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What a body stream holds until its last delta is queued.
pub struct Stream {
    pub response: reqwest::Response,
    pub outbound: FrameSender,
    pub reservation: StreamReservation,
    pub place: OwnedSemaphorePermit,
}

/// Send the body as deltas once the `http/request` response is queued (`response_queued`),
/// ending with `done: true` (and `error` when the body broke off). Returns early, quietly,
/// when the connection is gone.
pub async fn pump(stream: Stream, response_queued: oneshot::Receiver<()>) {
    let Stream {
        response,
        outbound,
        reservation,
        place,
    } = stream;
    if response_queued.await.is_err() {
        return;
    }
    let request_id = reservation.request_id();
    let mut seq = 0;
    let mut chunks = response.bytes_stream();
    let error = loop {
        match chunks.next().await {
            None => break None,
            Some(Err(err)) => break Some(err.to_string()),
            Some(Ok(bytes)) => {
                for slice in bytes.chunks(MAX_BODY_DELTA_BYTES) {
                    seq += 1;
                    if !send(&outbound, request_id, seq, slice.to_vec(), None).await {
                        return;
                    }
                }
            }
        }
    };
    seq += 1;
    send(&outbound, request_id, seq, Vec::new(), Some(error)).await;
    drop((reservation, place));
}

/// Queue one delta; `last` makes it the final one. False when the connection is closed.
async fn send(
    outbound: &FrameSender,
    request_id: &str,
    seq: u64,
    bytes: Vec<u8>,
    last: Option<Option<String>>,
) -> bool {
    let delta = HttpBodyDelta {
        request_id: request_id.to_owned(),
        seq,
        delta: ByteChunk(bytes),
        done: last.is_some(),
        error: last.flatten(),
    };
    let frame = notification_frame(method::HTTP_REQUEST_BODY_DELTA, &delta);
    outbound.send(OutboundFrame::Text(frame)).await.is_ok()
}
