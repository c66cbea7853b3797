//! The bounds on `fs/*` work, so one client cannot hold the server's threads: at most
//! [`MAX_FS_REQUESTS`] fs requests in flight per connection (the next one is answered
//! -32011 at admission, never queued), and a deadline on each request's blocking call
//! (`ServerConfig::fs_timeout`).
//!
//! A call past its deadline fails with -32603 "… timed out after N ms" and its thread is
//! written off: nobody waits for it, [`written_off`] counts it server-wide, and it keeps
//! its connection's slot until it returns — so a connection never holds more than
//! [`MAX_FS_REQUESTS`] threads, stuck or not. Its effect, if it ever completes, still
//! happens (a late write lands); a call still queued for a pool thread at its deadline is
//! cancelled instead.

use super::confine::{self, Confinement};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// fs requests one connection may have in flight. `rexec cp` keeps 8 block requests of
/// one file in flight, plus its open and close.
pub const MAX_FS_REQUESTS: usize = 16;

/// Threads written off since the server started, across all connections.
static WRITTEN_OFF: AtomicU64 = AtomicU64::new(0);

/// How many fs threads have been written off (timed out and never waited for).
#[cfg(test)]
fn written_off() -> u64 {
    WRITTEN_OFF.load(Ordering::Relaxed)
}

/// One connection's fs slots.
pub struct Slots(Arc<Semaphore>);

impl Default for Slots {
    fn default() -> Self {
        Self(Arc::new(Semaphore::new(MAX_FS_REQUESTS)))
    }
}

impl Slots {
    /// A slot for one `method` request, or `Busy` at once when all are taken.
    pub fn claim(&self, method: &'static str, timeout: Duration) -> Result<Claim, Busy> {
        let permit = Arc::clone(&self.0).try_acquire_owned().map_err(|_| Busy)?;
        Ok(Claim {
            permit,
            method,
            timeout,
        })
    }
}

/// Every slot of the connection is taken.
#[derive(Debug)]
pub struct Busy;

/// An admitted request's slot and deadline, spent on its one blocking call.
pub struct Claim {
    permit: OwnedSemaphorePermit,
    method: &'static str,
    timeout: Duration,
}

impl Claim {
    /// Run `work` off the runtime — on a thread confined to the sandbox when there is one,
    /// else on the blocking pool — and wait for it until the deadline.
    pub async fn run<T: Send + 'static>(
        self,
        confinement: Option<Confinement>,
        work: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let Claim {
            permit,
            method,
            timeout,
        } = self;
        let started = Arc::new(AtomicBool::new(false));
        let on_thread = Arc::clone(&started);
        // The slot goes with the work: released when the work returns, however late.
        let work = move || {
            on_thread.store(true, Ordering::Release);
            let outcome = work();
            drop(permit);
            outcome
        };
        let (done, outcome) = oneshot::channel();
        let pooled = match confinement {
            Some(confinement) => {
                confine::spawn(confinement, work, done)?;
                None
            }
            None => Some(tokio::task::spawn_blocking(move || {
                let _ = done.send(work());
            })),
        };
        match tokio::time::timeout(timeout, outcome).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(io::Error::other("filesystem task failed")),
            Err(_) => {
                if let Some(task) = pooled {
                    task.abort();
                }
                let ms = timeout.as_millis();
                if started.load(Ordering::Acquire) {
                    let total = WRITTEN_OFF.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(
                        method,
                        timeout_ms = ms,
                        written_off = total,
                        "fs request timed out; its thread is written off"
                    );
                }
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{method} timed out after {ms} ms"),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_late_call_fails_at_its_deadline_and_keeps_its_slot() {
        let slots = Slots::default();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let claim = slots
            .claim("fs/test", Duration::from_millis(50))
            .expect("slot");
        let before = written_off();
        let err = claim
            .run(None, move || {
                let _ = hold.recv();
                Ok(())
            })
            .await
            .expect_err("deadline");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(err.to_string(), "fs/test timed out after 50 ms");
        assert!(written_off() > before);

        let mut held = Vec::new();
        while let Ok(claim) = slots.claim("fs/test", Duration::from_secs(1)) {
            held.push(claim);
        }
        assert_eq!(
            held.len(),
            MAX_FS_REQUESTS - 1,
            "the stuck call keeps its slot"
        );
        drop(held);
        drop(release);
        let all = u32::try_from(MAX_FS_REQUESTS).expect("small");
        let _all = tokio::time::timeout(Duration::from_secs(5), slots.0.acquire_many(all))
            .await
            .expect("the slot comes back once the call returns")
            .expect("open semaphore");
    }
}
