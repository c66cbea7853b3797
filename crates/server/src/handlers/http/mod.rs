//! `http/request`: the server makes an HTTP request for the client and answers with the
//! response, or — with `streamResponse` — answers with the head and sends the body as
//! `http/request/bodyDelta` notifications (see [`body`]).
//!
//! Per connection ([`HttpRequests`]): at most [`MAX_HTTP_REQUESTS`] requests in flight, a
//! body stream counting as its request until its last delta (the next one is answered
//! -32011 at admission, never queued); the `requestId`s of active streams, where a second
//! stream with the same id is refused as upstream refuses it. Admission runs in wire order,
//! so that refusal does not depend on timing. Everything in flight ends with the
//! connection: requests are cancelled with its other tasks, streams by [`HttpRequests::close`].

mod body;
mod client;

use super::{Admitted, Deferred, Reply};
use crate::outbound::FrameSender;
use rexec_protocol::RpcError;
use rexec_protocol::http::{HttpRequestParams, HttpRequestResult};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::AbortHandle;

/// `http/request`s (and the body streams they started) one connection may have at once.
pub const MAX_HTTP_REQUESTS: usize = 16;

/// One connection's HTTP requests and body streams.
pub struct HttpRequests {
    places: Arc<Semaphore>,
    /// Active stream ids; the task handle is set once its pump runs.
    streams: Arc<Mutex<HashMap<String, Option<AbortHandle>>>>,
    outbound: FrameSender,
}

impl HttpRequests {
    pub fn new(outbound: FrameSender) -> Self {
        Self {
            places: Arc::new(Semaphore::new(MAX_HTTP_REQUESTS)),
            streams: Arc::default(),
            outbound,
        }
    }

    /// The connection is gone: stop every body stream.
    pub fn close(&self) {
        for (_, task) in lock(&self.streams).drain() {
            if let Some(task) = task {
                task.abort();
            }
        }
    }
}

/// A `requestId` held by an active stream; freed when dropped.
pub struct StreamReservation {
    request_id: String,
    streams: Arc<Mutex<HashMap<String, Option<AbortHandle>>>>,
}

impl StreamReservation {
    fn request_id(&self) -> &str {
        &self.request_id
    }
}

impl Drop for StreamReservation {
    fn drop(&mut self) {
        lock(&self.streams).remove(&self.request_id);
    }
}

/// An admitted `http/request`, to run in its own task.
pub struct HttpTask {
    params: HttpRequestParams,
    place: OwnedSemaphorePermit,
    reservation: Option<StreamReservation>,
    outbound: FrameSender,
}

pub fn admit(requests: &HttpRequests, params: HttpRequestParams) -> Admitted {
    let Ok(place) = Arc::clone(&requests.places).try_acquire_owned() else {
        let busy = RpcError::busy("http/request requests", MAX_HTTP_REQUESTS);
        return Admitted::Done(Err(busy));
    };
    let reservation = if params.stream_response {
        let mut streams = lock(&requests.streams);
        if streams.contains_key(&params.request_id) {
            return Admitted::Done(Err(RpcError::invalid_params(format!(
                "http/request streamResponse requestId `{}` is already active",
                params.request_id
            ))));
        }
        streams.insert(params.request_id.clone(), None);
        Some(StreamReservation {
            request_id: params.request_id.clone(),
            streams: Arc::clone(&requests.streams),
        })
    } else {
        None
    };
    Admitted::Deferred(Deferred::Http(HttpTask {
        params,
        place,
        reservation,
        outbound: requests.outbound.clone(),
    }))
}

pub async fn run(task: HttpTask) -> Result<Reply, RpcError> {
    let HttpTask {
        mut params,
        place,
        reservation,
        outbound,
    } = task;
    let response = client::check(&mut params)?.send().await?;
    let status = response.status().as_u16();
    let headers = client::response_headers(response.headers());
    let Some(reservation) = reservation else {
        let body = body::read_all(response).await?;
        return Reply::new(&HttpRequestResult {
            status,
            headers,
            body: body.into(),
        });
    };
    let mut reply = Reply::new(&HttpRequestResult {
        status,
        headers,
        body: Vec::new().into(),
    })?;
    let (queued, response_queued) = oneshot::channel();
    reply.on_queued = Some(queued);
    let streams = Arc::clone(&reservation.streams);
    let request_id = reservation.request_id.clone();
    let stream = body::Stream {
        response,
        outbound,
        reservation,
        place,
    };
    let pump = tokio::spawn(body::pump(stream, response_queued));
    match lock(&streams).get_mut(&request_id) {
        Some(slot) => *slot = Some(pump.abort_handle()),
        // The connection closed meanwhile.
        None => pump.abort(),
    }
    Ok(reply)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
