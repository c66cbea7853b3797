//! `fs/watchMissing`: one watch per connection on a set of missing paths, which sends
//! `fs/missingChanged {watchId}` once when one of them — or a missing directory on the way
//! to one — appears, and then ends.
//!
//! As upstream: a call whose `watchId` is above every earlier one replaces the current
//! watch (even when it then answers `watching: false`); a call at or below an earlier id
//! changes nothing and answers `watching: false`. No watch is set up (`watching: false`)
//! when the list is empty, a path exists already, or its nearest existing ancestor is not
//! a directory or lies on procfs or sysfs (whose entries are the kernel's, and raise no
//! inotify events).
//!
//! A watch is its own inotify instance, watching each path's nearest existing ancestor for
//! the next component to be created or moved in; it is closed when the watch fires, is
//! replaced, or its connection closes ([`MissingWatches::close`]). Setting one up stats
//! paths, so it runs off the runtime, at most [`MAX_WATCH_SETUPS`] at once per connection.

use super::{Admitted, Deferred, Reply};
use crate::outbound::{FrameSender, OutboundFrame};
use futures_util::StreamExt;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use rexec_protocol::RpcError;
use rexec_protocol::jsonrpc::notification_frame;
use rexec_protocol::method;
use rexec_protocol::watch::{MissingChanged, WatchMissingParams, WatchMissingResult};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

/// `fs/watchMissing` calls one connection may have being set up at once.
pub const MAX_WATCH_SETUPS: usize = 16;
/// Paths one `fs/watchMissing` may name.
pub const MAX_MISSING_PATHS: usize = 4096;

/// One connection's watch.
pub struct MissingWatches {
    state: Arc<Mutex<State>>,
    setups: Arc<Semaphore>,
    outbound: FrameSender,
}

#[derive(Default)]
struct State {
    /// The highest `watchId` seen; only a higher one replaces the watch.
    latest: Option<u64>,
    /// The task of the watch set up for `latest`, if any.
    active: Option<AbortHandle>,
    closed: bool,
}

impl State {
    fn stop_active(&mut self) {
        if let Some(task) = self.active.take() {
            task.abort();
        }
    }
}

impl MissingWatches {
    pub fn new(outbound: FrameSender) -> Self {
        Self {
            state: Arc::default(),
            setups: Arc::new(Semaphore::new(MAX_WATCH_SETUPS)),
            outbound,
        }
    }

    /// The connection is gone: close its watch.
    pub fn close(&self) {
        let mut state = lock(&self.state);
        state.closed = true;
        state.stop_active();
    }
}

/// An admitted `fs/watchMissing` that replaced the previous watch, to set up in a task.
pub struct WatchTask {
    watch_id: u64,
    missing: Vec<PathBuf>,
    state: Arc<Mutex<State>>,
    outbound: FrameSender,
    _place: OwnedSemaphorePermit,
}

pub fn admit(watches: &MissingWatches, params: WatchMissingParams) -> Admitted {
    if params.missing.len() > MAX_MISSING_PATHS {
        return Admitted::Done(Err(RpcError::invalid_params(format!(
            "fs/watchMissing takes at most {MAX_MISSING_PATHS} paths, got {}",
            params.missing.len()
        ))));
    }
    let Ok(place) = Arc::clone(&watches.setups).try_acquire_owned() else {
        let busy = RpcError::busy("fs/watchMissing requests", MAX_WATCH_SETUPS);
        return Admitted::Done(Err(busy));
    };
    let mut state = lock(&watches.state);
    if state.latest.is_some_and(|latest| params.watch_id <= latest) {
        return Admitted::Done(not_watching());
    }
    state.latest = Some(params.watch_id);
    state.stop_active();
    Admitted::Deferred(Deferred::Watch(WatchTask {
        watch_id: params.watch_id,
        missing: params.missing.into_iter().map(|p| p.into_path()).collect(),
        state: Arc::clone(&watches.state),
        outbound: watches.outbound.clone(),
        _place: place,
    }))
}

pub async fn run(task: WatchTask) -> Result<Reply, RpcError> {
    let missing = task.missing;
    let setup = tokio::task::spawn_blocking(move || set_up(&missing))
        .await
        .map_err(|err| RpcError::internal(format!("fs/watchMissing setup failed: {err}")))?;
    let Some(watch) = setup else {
        return not_watching();
    };
    let mut state = lock(&task.state);
    // A later call replaced this one, or the connection closed, while it was set up.
    if state.closed || state.latest != Some(task.watch_id) {
        return not_watching();
    }
    let events = match watch.inotify.into_event_stream(vec![0; 4096]) {
        Ok(events) => events,
        Err(err) => {
            tracing::warn!(error = %err, "fs/watchMissing: inotify stream failed");
            return not_watching();
        }
    };
    let waiting = tokio::spawn(wait(events, watch.interests, task.watch_id, task.outbound));
    state.active = Some(waiting.abort_handle());
    Reply::new(&WatchMissingResult { watching: true })
}

fn not_watching() -> Result<Reply, RpcError> {
    Reply::new(&WatchMissingResult { watching: false })
}

struct Watch {
    inotify: Inotify,
    /// A watched directory and the name in it that would end the watch.
    interests: Vec<(WatchDescriptor, OsString)>,
}

/// Watch the nearest existing ancestor of every path; `None` when there is nothing to
/// wait for. The paths are checked again once the watches are in place, so a path created
/// in between is not missed.
fn set_up(missing: &[PathBuf]) -> Option<Watch> {
    if missing.is_empty() {
        return None;
    }
    let inotify = match Inotify::init() {
        Ok(inotify) => inotify,
        Err(err) => {
            tracing::warn!(error = %err, "fs/watchMissing: no inotify instance");
            return None;
        }
    };
    let mask = WatchMask::CREATE
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR;
    let mut interests = Vec::with_capacity(missing.len());
    for path in missing {
        let (dir, name) = nearest_existing_ancestor(path)?;
        let wd = inotify.watches().add(&dir, mask).ok()?;
        interests.push((wd, name));
    }
    if missing.iter().any(|path| path.symlink_metadata().is_ok()) {
        return None;
    }
    Some(Watch { inotify, interests })
}

/// The deepest ancestor of `path` that exists, and the component below it on the way to
/// `path`; `None` when `path` itself exists or that ancestor is not a directory.
fn nearest_existing_ancestor(path: &Path) -> Option<(PathBuf, OsString)> {
    let mut below = None;
    for ancestor in path.ancestors() {
        if ancestor.symlink_metadata().is_ok() {
            let is_dir = ancestor.metadata().is_ok_and(|m| m.is_dir());
            if !is_dir || on_kernel_filesystem(ancestor) {
                return None;
            }
            return below.map(|name| (ancestor.to_path_buf(), name));
        }
        below = match ancestor.components().next_back() {
            Some(Component::Normal(name)) => Some(name.to_os_string()),
            _ => None,
        };
    }
    None
}

/// Whether `dir` is on procfs or sysfs.
fn on_kernel_filesystem(dir: &Path) -> bool {
    const PROC_SUPER_MAGIC: u64 = 0x9fa0;
    const SYSFS_MAGIC: u64 = 0x6265_6572;
    rustix::fs::statfs(dir).is_ok_and(|fs| {
        let kind = u64::try_from(fs.f_type).unwrap_or_default();
        kind == PROC_SUPER_MAGIC || kind == SYSFS_MAGIC
    })
}

/// Wait for a watched name to appear (or a watched directory to go, or events to be
/// lost), then tell the client once.
async fn wait(
    mut events: inotify::EventStream<Vec<u8>>,
    interests: Vec<(WatchDescriptor, OsString)>,
    watch_id: u64,
    outbound: FrameSender,
) {
    let gone = EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(error = %err, watch_id, "fs/watchMissing: inotify read failed");
                return;
            }
        };
        let appeared = event.name.as_ref().is_some_and(|name| {
            interests
                .iter()
                .any(|(wd, wanted)| *wd == event.wd && wanted == name)
        });
        if appeared || event.mask.intersects(gone | EventMask::Q_OVERFLOW) {
            break;
        }
    }
    let frame = notification_frame(method::FS_MISSING_CHANGED, &MissingChanged { watch_id });
    let _ = outbound.send(OutboundFrame::Text(frame)).await;
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watched_directory_is_the_nearest_existing_ancestor() {
        let dir = std::env::temp_dir().join(format!("rexec-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::fs::write(dir.join("file"), b"").expect("file");
        let found = |path: &Path| nearest_existing_ancestor(path);
        assert_eq!(
            found(&dir.join("a/b/c")),
            Some((dir.clone(), OsString::from("a")))
        );
        assert_eq!(found(&dir.join("new")), Some((dir.clone(), "new".into())));
        assert_eq!(found(&dir), None, "exists");
        assert_eq!(found(&dir.join("file/below")), None, "below a file");
        assert_eq!(found(Path::new("/proc/rexec-none")), None, "procfs");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
