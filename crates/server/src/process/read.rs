//! `process/read`: the long-poll over a process's event log (reference §4.2).
//!
//! A read returns at once when it has chunks, the close, or an exit the caller has not yet
//! advanced past; otherwise it waits for the log to change or the deadline. Once a caller has
//! consumed the exit it long-polls for the close instead of spinning.

use super::Process;
use rexec_protocol::RpcError;
use rexec_protocol::process::{ReadParams, ReadResult};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The longest wait honoured; larger `waitMs` values are clamped (and cannot overflow).
const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

pub async fn long_poll(
    process: &Process,
    params: &ReadParams,
    mut takeovers: watch::Receiver<u64>,
) -> Result<ReadResult, RpcError> {
    let after_seq = params.after_seq.unwrap_or(0);
    let wait = Duration::from_millis(params.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    let mut changes = process.subscribe();
    loop {
        let snapshot = process.log().read(after_seq, params.max_bytes);
        if snapshot.ready || Instant::now() >= deadline {
            return Ok(snapshot.result);
        }
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep_until(deadline) => {}
            _ = takeovers.changed() => return Err(RpcError::session_resumed_elsewhere()),
        }
    }
}
