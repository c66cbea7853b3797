//! `process/waitFor`: a request answered once a condition holds on a process's event log.
//!
//! Admission (inline, in wire order) finds the process, validates and compiles the
//! conditions and takes one of the session's wait places; the wait then runs in its own
//! task like a `process/read` long poll. It wakes only when the log changes (the process's
//! `changes` watch, bumped for every chunk, the exit and the close), at its idle deadline or
//! at its timeout; each wake feeds the events after its cursor, in seq order, to the
//! conditions. The close ends every wait. A detached connection aborts its tasks, which
//! returns the place; a takeover fails the wait as it fails long polls.

mod condition;
mod window;

use super::Process;
use super::event_log::{EventLog, stream_index};
use super::table::{Lookup, ProcessTable};
use condition::{Conditions, Event, fired};
use rexec_protocol::process::OutputStream;
use rexec_protocol::wait::{
    DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS, WaitFired, WaitForParams, WaitForResult,
};
use rexec_protocol::{ErrorCode, RpcError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

/// Waits one session may have in flight at once, over all its connections.
pub const MAX_WAITS_PER_SESSION: usize = 16;

const STREAMS: [OutputStream; 3] = [
    OutputStream::Stdout,
    OutputStream::Stderr,
    OutputStream::Pty,
];

/// A session's places for waits in flight.
pub struct WaitPlaces(Arc<Semaphore>);

impl Default for WaitPlaces {
    fn default() -> Self {
        Self(Arc::new(Semaphore::new(MAX_WAITS_PER_SESSION)))
    }
}

/// An admitted wait, holding its place until it ends (or its task is dropped).
pub struct PendingWait {
    process: Arc<Process>,
    conditions: Conditions,
    after_seq: u64,
    timeout: Duration,
    _place: OwnedSemaphorePermit,
}

/// Find the process and validate the request; every refusal changes nothing.
pub fn admit(
    processes: &ProcessTable,
    places: &WaitPlaces,
    params: &WaitForParams,
) -> Result<PendingWait, RpcError> {
    let process = match processes.lookup(&params.process_id) {
        Lookup::Running(process) => process,
        Lookup::Starting => return Err(RpcError::process_starting(&params.process_id)),
        Lookup::Unknown => return Err(RpcError::unknown_process(&params.process_id)),
    };
    let timeout_ms = params.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout_ms > MAX_TIMEOUT_MS {
        return Err(RpcError::invalid_params(format!(
            "timeoutMs {timeout_ms} is over the limit of {MAX_TIMEOUT_MS} (24 h)"
        )));
    }
    let conditions = Conditions::compile(&params.conditions)?;
    let place = Arc::clone(&places.0).try_acquire_owned().map_err(|_| {
        RpcError::new(
            ErrorCode::Busy,
            format!(
                "too many process/waitFor requests in flight in this session \
                 (limit {MAX_WAITS_PER_SESSION}); retry once one finishes"
            ),
        )
    })?;
    Ok(PendingWait {
        process,
        conditions,
        after_seq: params.after_seq,
        timeout: Duration::from_millis(timeout_ms),
        _place: place,
    })
}

/// The events after a cursor, taken under the log's lock.
struct Snapshot {
    events: Vec<Event>,
    /// The highest seq the snapshot covers.
    last_seq: u64,
    /// Output bytes recorded so far, all streams.
    total: u64,
    exit_code: Option<i32>,
    /// Eviction dropped a chunk the wait had not seen.
    missed: bool,
}

impl Snapshot {
    fn take(log: &EventLog, cursor: u64, seen_exit: bool, seen_closed: bool) -> Self {
        let new: Vec<_> = log.retained_after(cursor).collect();
        let mut offsets = STREAMS.map(|stream| log.stream_bytes(stream));
        let total = offsets.iter().sum::<u64>();
        for chunk in &new {
            offsets[stream_index(chunk.stream)] -= chunk.bytes.len() as u64;
        }
        let mut total_offset = offsets.iter().sum::<u64>();
        // Exit and close, not yet fed, in seq order (an exit always precedes the close).
        let exit = log.exit().filter(|_| !seen_exit);
        let mut marks: Vec<(u64, Option<i32>)> =
            exit.map(|e| (e.seq, Some(e.code))).into_iter().collect();
        if let Some(seq) = log.closed_seq().filter(|_| !seen_closed) {
            marks.push((seq, None));
        }
        let mut marks = marks.into_iter().peekable();
        let mut last_seq = cursor;
        let mut events = Vec::with_capacity(new.len() + 2);
        let mark_event = |(seq, code): (u64, Option<i32>), total_offset: u64| match code {
            Some(code) => Event::Exit {
                seq,
                code,
                total_offset,
            },
            None => Event::Closed { seq, total_offset },
        };
        for chunk in new {
            while let Some(mark) = marks.next_if(|(seq, _)| *seq < chunk.seq) {
                events.push(mark_event(mark, total_offset));
            }
            let stream_offset = &mut offsets[stream_index(chunk.stream)];
            events.push(Event::Output {
                seq: chunk.seq,
                stream: chunk.stream,
                bytes: chunk.bytes.clone(),
                stream_offset: *stream_offset,
                total_offset,
            });
            *stream_offset += chunk.bytes.len() as u64;
            total_offset += chunk.bytes.len() as u64;
            last_seq = last_seq.max(chunk.seq);
        }
        for mark in marks {
            last_seq = last_seq.max(mark.0);
            events.push(mark_event(mark, total_offset));
        }
        Self {
            events,
            last_seq,
            total,
            exit_code: log.exit().map(|e| e.code),
            missed: log.evicted_through() > cursor,
        }
    }
}

/// Run an admitted wait to its answer. Fails only when another connection takes the
/// session over.
pub async fn run(
    pending: PendingWait,
    mut takeovers: watch::Receiver<u64>,
) -> Result<WaitForResult, RpcError> {
    let PendingWait {
        process,
        mut conditions,
        after_seq,
        timeout,
        _place,
    } = pending;
    let deadline = Instant::now() + timeout;
    let idle = conditions.idle();
    // Subscribed before the first look, so no change between the two is missed.
    let mut changes = process.subscribe();
    let mut cursor = after_seq;
    let (mut seen_exit, mut seen_closed, mut missed) = (false, false, false);
    let mut last_output = Instant::now();
    loop {
        let snapshot = Snapshot::take(&process.log(), cursor, seen_exit, seen_closed);
        missed |= snapshot.missed;
        let answer = |mut result: WaitForResult| {
            result.exit_code = result.exit_code.or(snapshot.exit_code);
            result.missed_output = missed;
            Ok(result)
        };
        let now = Instant::now();
        for event in &snapshot.events {
            match event {
                Event::Output { .. } => last_output = now,
                Event::Exit { .. } => seen_exit = true,
                Event::Closed { .. } => seen_closed = true,
            }
            if let Some(result) = conditions.on_event(event) {
                return answer(result);
            }
        }
        cursor = snapshot.last_seq;
        if seen_closed {
            // Nothing can change after the close: no requested condition can hold now.
            return answer(WaitForResult {
                condition: None,
                ..fired(WaitFired::Closed, 0, cursor, snapshot.total)
            });
        }
        let idle_at = idle
            .filter(|_| !seen_exit)
            .map(|(index, period)| (index, last_output + period));
        if let Some((index, at)) = idle_at
            && at <= now
        {
            return answer(fired(WaitFired::Idle, index, cursor, snapshot.total));
        }
        let idle_wake = idle_at.map_or(deadline, |(_, at)| at);
        tokio::select! {
            biased;
            _ = takeovers.changed() => return Err(RpcError::session_resumed_elsewhere()),
            // The sender lives in the process, which this wait holds.
            _ = changes.changed() => {}
            () = tokio::time::sleep_until(idle_wake), if idle_at.is_some() => {}
            () = tokio::time::sleep_until(deadline) => {
                return answer(WaitForResult {
                    condition: None,
                    ..fired(WaitFired::TimedOut, 0, cursor, snapshot.total)
                });
            }
        }
    }
}
