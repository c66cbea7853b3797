//! Admission of TCP connections before anyone has authenticated: a cap on connections
//! served at once, and a smaller cap on connections still sending their upgrade request.
//!
//! Past the connection cap a new socket is refused at accept (closed after a one-line 503),
//! so descriptors never run out. Past the handshake cap the *oldest* pending connection is
//! dropped instead of the new one: a client that completes its upgrade within one round
//! trip always gets in, however many stalled sockets are held against the server, while a
//! flood of half-sent requests costs at most `max_pending_handshakes` descriptors for at
//! most the handshake timeout. Refusals are logged at warn, at most once a second per
//! kind, with the count and the last peer.

use crate::sync::lock;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

/// Why a connection was turned away; each kind has its own log rate limit.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    ConnectionLimit,
    HandshakeEvicted,
    HandshakeTimeout,
}

impl Refusal {
    fn index(self) -> usize {
        self as usize
    }

    fn describe(self, admission: &Admission) -> String {
        match self {
            Self::ConnectionLimit => format!(
                "refused connections: the connection limit ({}) is reached",
                admission.max_connections
            ),
            Self::HandshakeEvicted => format!(
                "dropped connections that had not finished their upgrade request \
                 ({} were pending, the limit)",
                admission.max_pending
            ),
            Self::HandshakeTimeout => {
                "dropped connections that did not send their upgrade request in time".to_owned()
            }
        }
    }
}

pub struct Admission {
    connections: Arc<Semaphore>,
    max_connections: usize,
    max_pending: usize,
    pending: Mutex<BTreeMap<u64, oneshot::Sender<()>>>,
    next_pending: AtomicU64,
    logs: [RateLimitedLog; 3],
}

/// A connection let in: holds its place under the connection cap for as long as any part
/// of it (the HTTP side, then the WebSocket) holds this.
pub struct Admitted {
    pub place: Arc<OwnedSemaphorePermit>,
    pub handshake: PendingHandshake,
}

/// A connection still sending its upgrade request: `evicted` resolves with `Ok` when the
/// admission dropped it to make room for a newer one.
pub struct PendingHandshake {
    pub slot: PendingSlot,
    pub evicted: oneshot::Receiver<()>,
}

/// A place among the pending handshakes; dropping it (the request arrived, or the
/// connection ended) frees the place.
pub struct PendingSlot {
    id: u64,
    admission: Arc<Admission>,
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        lock(&self.admission.pending).remove(&self.id);
    }
}

impl Admission {
    pub fn new(max_connections: usize, max_pending: usize) -> Arc<Self> {
        let max_connections = max_connections.max(1);
        Arc::new(Self {
            connections: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            max_pending: max_pending.clamp(1, max_connections),
            pending: Mutex::default(),
            next_pending: AtomicU64::new(0),
            logs: Default::default(),
        })
    }

    /// Let `peer` in, or `None` when the connection cap is reached (logged).
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<Admitted> {
        let Ok(place) = Arc::clone(&self.connections).try_acquire_owned() else {
            self.refused(Refusal::ConnectionLimit, peer);
            return None;
        };
        let id = self.next_pending.fetch_add(1, Ordering::Relaxed);
        let (evict, evicted) = oneshot::channel();
        let oldest = {
            let mut pending = lock(&self.pending);
            pending.insert(id, evict);
            if pending.len() > self.max_pending {
                pending.pop_first()
            } else {
                None
            }
        };
        if let Some((_, evict)) = oldest {
            let _ = evict.send(());
        }
        Some(Admitted {
            place: Arc::new(place),
            handshake: PendingHandshake {
                slot: PendingSlot {
                    id,
                    admission: Arc::clone(self),
                },
                evicted,
            },
        })
    }

    /// Log a refusal of `peer`, rate-limited per kind.
    pub fn refused(&self, refusal: Refusal, peer: SocketAddr) {
        if let Some(count) = self.logs[refusal.index()].record() {
            tracing::warn!(%peer, count, "{}", refusal.describe(self));
        }
    }
}

/// Counts events and lets one log line through per interval, carrying the count since the
/// last one.
#[derive(Default)]
struct RateLimitedLog {
    state: Mutex<Option<(Instant, u64)>>,
}

const LOG_INTERVAL: Duration = Duration::from_secs(1);

impl RateLimitedLog {
    /// Count one event; `Some(n)` when a line should be logged now, for `n` events.
    fn record(&self) -> Option<u64> {
        let mut state = lock(&self.state);
        let now = Instant::now();
        match &mut *state {
            Some((since, count)) if now.duration_since(*since) < LOG_INTERVAL => {
                *count += 1;
                None
            }
            slot => {
                let count = slot.map_or(0, |(_, count)| count) + 1;
                *slot = Some((now, 0));
                Some(count)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:1".parse().expect("address")
    }

    #[tokio::test]
    async fn the_connection_cap_refuses_and_frees_places() {
        let admission = Admission::new(2, 2);
        let first = admission.admit(peer()).expect("first");
        let _second = admission.admit(peer()).expect("second");
        assert!(admission.admit(peer()).is_none(), "a third over the cap");
        drop(first);
        assert!(admission.admit(peer()).is_some(), "a place was freed");
    }

    #[tokio::test]
    async fn a_full_handshake_queue_evicts_the_oldest() {
        let admission = Admission::new(10, 2);
        let mut oldest = admission.admit(peer()).expect("a");
        let mut middle = admission.admit(peer()).expect("b");
        let done = admission.admit(peer()).expect("c");
        assert!(
            oldest.handshake.evicted.try_recv().is_ok(),
            "oldest evicted"
        );
        assert!(middle.handshake.evicted.try_recv().is_err(), "middle kept");
        // A finished handshake leaves the queue, so the next one evicts nobody.
        drop(done.handshake);
        let _next = admission.admit(peer()).expect("d");
        assert!(
            middle.handshake.evicted.try_recv().is_err(),
            "middle still kept"
        );
    }

    #[test]
    fn refusal_logs_are_rate_limited_with_counts() {
        let log = RateLimitedLog::default();
        assert_eq!(log.record(), Some(1));
        assert_eq!(log.record(), None);
        assert_eq!(log.record(), None);
        *lock(&log.state) = Some((Instant::now() - LOG_INTERVAL, 2));
        assert_eq!(log.record(), Some(3), "the suppressed ones are counted");
    }
}
