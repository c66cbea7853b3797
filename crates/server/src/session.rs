//! Sessions: who owns processes across connections.
//!
//! `initialize` creates a session (a UUIDv4) attached to the connection; its processes
//! belong to the session. When the connection ends the session is *detached*: its processes
//! keep running and retaining output, and notifications are dropped (their seqs are still
//! consumed, so a resuming client sees the hole and repairs with `process/read`). Within the
//! TTL, `initialize {resumeSessionId}` attaches a new connection; after it, the session
//! expires and every process it owns is killed. Expiry wins at the boundary.

use crate::auth::Principal;
use crate::outbound::{NotificationRoute, NotificationSink};
use crate::process::shell_snapshot::SnapshotCache;
use crate::process::table::ProcessTable;
use crate::process::wait::WaitPlaces;
use crate::sync::lock;
use rexec_protocol::RpcError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Identifies one transport connection for attach/detach bookkeeping.
pub type ConnectionId = u64;

struct Attachment {
    connection: Option<ConnectionId>,
    detached_at: Option<Instant>,
}

pub struct Session {
    pub id: String,
    /// Who created it; only the same principal may resume it.
    pub owner: Principal,
    pub processes: Arc<ProcessTable>,
    pub route: Arc<NotificationRoute>,
    /// `process/start.shellSnapshot` captures, per session as upstream.
    pub shell_snapshots: SnapshotCache,
    /// Places for `process/waitFor` requests in flight, over all connections.
    pub waits: WaitPlaces,
    attachment: Mutex<Attachment>,
    /// Bumped whenever another connection takes the session over; long polls admitted
    /// under an older value fail with "session has been resumed by another connection".
    takeovers: watch::Sender<u64>,
}

impl Session {
    fn new(
        connection: ConnectionId,
        sink: NotificationSink,
        owner: Principal,
        closed_retention: Duration,
    ) -> Self {
        let route = Arc::new(NotificationRoute::default());
        route.set(Some(sink));
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            owner,
            processes: Arc::new(ProcessTable::new(closed_retention)),
            route,
            shell_snapshots: SnapshotCache::default(),
            waits: WaitPlaces::default(),
            attachment: Mutex::new(Attachment {
                connection: Some(connection),
                detached_at: None,
            }),
            takeovers: watch::Sender::new(0),
        }
    }

    /// A receiver that changes when another connection resumes this session.
    pub fn takeovers(&self) -> watch::Receiver<u64> {
        self.takeovers.subscribe()
    }
}

/// All live sessions of the server.
pub struct SessionRegistry {
    sessions: Arc<Mutex<HashMap<String, Arc<Session>>>>,
    ttl: Duration,
    closed_retention: Duration,
}

impl SessionRegistry {
    pub fn new(ttl: Duration, closed_retention: Duration) -> Self {
        Self {
            sessions: Arc::default(),
            ttl,
            closed_retention,
        }
    }

    pub fn create(
        &self,
        connection: ConnectionId,
        sink: NotificationSink,
        owner: Principal,
    ) -> Arc<Session> {
        let session = Arc::new(Session::new(connection, sink, owner, self.closed_retention));
        lock(&self.sessions).insert(session.id.clone(), Arc::clone(&session));
        tracing::info!(session = %session.id, principal = %session.owner, "session created");
        session
    }

    /// Attach `connection`, acting for `principal`, to a detached session of that principal.
    pub fn resume(
        &self,
        id: &str,
        connection: ConnectionId,
        sink: NotificationSink,
        principal: &Principal,
    ) -> Result<Arc<Session>, RpcError> {
        let mut sessions = lock(&self.sessions);
        let session = sessions
            .get(id)
            .cloned()
            .ok_or_else(|| RpcError::unknown_session(id))?;
        if session.owner != *principal {
            tracing::warn!(session = %id, owner = %session.owner, %principal, "resume by another principal refused");
            return Err(RpcError::session_of_another_client(id));
        }
        let mut attachment = lock(&session.attachment);
        if attachment.connection.is_some() {
            return Err(RpcError::session_already_attached(id));
        }
        if attachment
            .detached_at
            .is_some_and(|at| at.elapsed() >= self.ttl)
        {
            drop(attachment);
            sessions.remove(id);
            expire(&session);
            return Err(RpcError::unknown_session(id));
        }
        attachment.connection = Some(connection);
        attachment.detached_at = None;
        session.route.set(Some(sink));
        session.takeovers.send_modify(|n| *n += 1);
        drop(attachment);
        tracing::info!(session = %id, %principal, "session resumed");
        Ok(session)
    }

    /// The connection ended: stop routing notifications and start the expiry clock.
    pub fn detach(&self, session: &Arc<Session>, connection: ConnectionId) {
        let detached_at = {
            let mut attachment = lock(&session.attachment);
            if attachment.connection != Some(connection) {
                return;
            }
            attachment.connection = None;
            let now = Instant::now();
            attachment.detached_at = Some(now);
            session.route.set(None);
            now
        };
        tracing::debug!(session = %session.id, "session detached");
        let sessions = Arc::clone(&self.sessions);
        let session = Arc::clone(session);
        let ttl = self.ttl;
        tokio::spawn(async move {
            tokio::time::sleep_until(detached_at + ttl).await;
            let mut sessions = lock(&sessions);
            let still_detached = lock(&session.attachment).detached_at == Some(detached_at);
            if still_detached && sessions.remove(&session.id).is_some() {
                drop(sessions);
                tracing::debug!(session = %session.id, "detached session expired");
                expire(&session);
            }
        });
    }

    pub fn kill_all_processes(&self) {
        let sessions: Vec<_> = lock(&self.sessions).values().cloned().collect();
        for session in sessions {
            session.processes.kill_all();
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn expire(session: &Session) {
    session.processes.kill_all();
}
