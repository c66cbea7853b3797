//! Live output of named-shell commands: `shell/output` notifications handed to the calls
//! that asked for them ([`ShellRun::on_output`](crate::ShellRun::on_output),
//! [`ShellWait::on_output`](crate::ShellWait::on_output)).
//!
//! The server sends a command's output to the connection of its last caller, each chunk
//! before the answer that counts it, so a tap opened before the request sees every chunk
//! of the answer on that connection. The reader task only queues; the waiting call runs
//! the callback.

use rexec_protocol::shell::ShellOutputNotification;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;

/// The open taps of one client, by id.
#[derive(Default)]
pub(crate) struct ShellTaps {
    next_id: AtomicU64,
    taps: Mutex<HashMap<u64, Tap>>,
}

struct Tap {
    shell: String,
    sender: mpsc::UnboundedSender<Vec<u8>>,
}

impl ShellTaps {
    /// A `shell/output` notification, on the reader task: queued for every tap of its shell.
    pub(crate) fn deliver(&self, params: Option<&RawValue>) {
        let raw = params.map_or("null", RawValue::get);
        let notification: ShellOutputNotification = match serde_json::from_str(raw) {
            Ok(notification) => notification,
            Err(err) => {
                tracing::warn!(%err, "ignoring an undecodable shell/output notification");
                return;
            }
        };
        let taps = self.taps.lock().unwrap_or_else(PoisonError::into_inner);
        for tap in taps.values().filter(|tap| tap.shell == notification.name) {
            let _ = tap.sender.send(notification.chunk.0.clone());
        }
    }

    /// Receive the output of `shell`'s commands until the tap is dropped.
    pub(crate) fn open(self: &Arc<Self>, shell: &str) -> TapGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::unbounded_channel();
        let tap = Tap {
            shell: shell.to_owned(),
            sender,
        };
        self.taps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, tap);
        TapGuard {
            taps: Arc::clone(self),
            id,
            receiver,
        }
    }
}

/// An open tap; closed when dropped.
pub(crate) struct TapGuard {
    taps: Arc<ShellTaps>,
    id: u64,
    pub(crate) receiver: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl Drop for TapGuard {
    fn drop(&mut self) {
        self.taps
            .taps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// Await `call`, handing each chunk of `tap` to `on_output` as it arrives and, once the
/// answer is in, the chunks queued before it.
pub(crate) async fn with_output<T>(
    call: impl Future<Output = T>,
    mut tap: TapGuard,
    on_output: &mut (dyn FnMut(&[u8]) + Send + '_),
) -> T {
    tokio::pin!(call);
    let result = loop {
        tokio::select! {
            biased;
            Some(chunk) = tap.receiver.recv() => on_output(&chunk),
            result = &mut call => break result,
        }
    };
    while let Ok(chunk) = tap.receiver.try_recv() {
        on_output(&chunk);
    }
    result
}
