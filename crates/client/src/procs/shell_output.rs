//! Live output of named-shell commands: `shell/output` notifications handed to the calls
//! that asked for them ([`ShellRun::on_output`](crate::ShellRun::on_output),
//! [`ShellWait::on_output`](crate::ShellWait::on_output)).
//!
//! The server sends a command's output to the connection of its last caller, each chunk
//! before the answer that counts it, so a tap opened before the request sees every chunk
//! of the answer on that connection. Output printed between two calls reaches no tap, so
//! a `shell/wait` says the last seq this client took (`afterSeq`) and the server sends the
//! rest again; [`Positions`] remembers, per command, what was taken, so each byte reaches
//! a callback once, in order, and bytes the server no longer kept are counted. The reader
//! task only queues; the waiting call runs the callback.

use rexec_protocol::shell::ShellOutputNotification;
use serde_json::value::RawValue;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;

/// Commands whose position a client remembers; older ones start again from their kept
/// output.
const REMEMBERED_COMMANDS: usize = 64;

/// The open taps of one client, by id, and how far each command's output was taken.
#[derive(Default)]
pub(crate) struct ShellTaps {
    next_id: AtomicU64,
    taps: Mutex<HashMap<u64, Tap>>,
    positions: Positions,
}

struct Tap {
    shell: String,
    sender: mpsc::UnboundedSender<ShellOutputNotification>,
}

/// Where a command's output was taken up to: its last seq and the offset after it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Position {
    seq: u64,
    end: u64,
}

/// The positions of the most recently streamed commands.
#[derive(Default)]
struct Positions(Mutex<VecDeque<(String, Position)>>);

impl Positions {
    fn get(&self, command_id: &str) -> Position {
        let positions = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        positions
            .iter()
            .find(|(id, _)| id == command_id)
            .map_or_else(Position::default, |(_, position)| *position)
    }

    fn set(&self, command_id: &str, position: Position) {
        let mut positions = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        positions.retain(|(id, _)| id != command_id);
        if positions.len() == REMEMBERED_COMMANDS {
            positions.pop_front();
        }
        positions.push_back((command_id.to_owned(), position));
    }
}

/// What to do with a chunk of a command taken up to `position`.
#[derive(Debug, PartialEq, Eq)]
enum Take {
    /// Hand it on; `missed` bytes before it will never come.
    Yes { missed: u64 },
    /// Taken already, or ahead of the replay that sends its predecessors again.
    No,
}

fn take(position: Position, chunk: &ShellOutputNotification) -> Take {
    if chunk.seq == position.seq + 1 {
        Take::Yes { missed: 0 }
    } else if chunk.after_gap && chunk.seq > position.seq {
        Take::Yes {
            missed: chunk.offset.saturating_sub(position.end),
        }
    } else {
        Take::No
    }
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
            let _ = tap.sender.send(notification.clone());
        }
    }

    /// An answer read without streaming showed `command_id`'s output up to `seq`, which
    /// ends at `end`: a later stream starts after it.
    pub(crate) fn answered(&self, command_id: &str, seq: u64, end: u64) {
        if seq > self.positions.get(command_id).seq {
            self.positions.set(command_id, Position { seq, end });
        }
    }

    /// The `afterSeq` for a `shell/wait` that streams `command_id`.
    pub(crate) fn after_seq(&self, command_id: &str) -> u64 {
        self.positions.get(command_id).seq
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
    pub(crate) receiver: mpsc::UnboundedReceiver<ShellOutputNotification>,
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

/// Await `call`, handing each chunk of `tap` (of `command_id`, when given) that this client
/// has not taken yet to `on_output` as it arrives and, once the answer is in, the chunks
/// queued before it. Also returns the bytes that will never come (the server no longer
/// kept them).
pub(crate) async fn with_output<T>(
    call: impl Future<Output = T>,
    mut tap: TapGuard,
    command_id: Option<&str>,
    on_output: &mut (dyn FnMut(&[u8]) + Send + '_),
) -> (T, u64) {
    let positions = &tap.taps.positions;
    let mut missed = 0;
    let mut hand_on = |chunk: ShellOutputNotification| {
        if command_id.is_some_and(|id| id != chunk.command_id) {
            return;
        }
        let position = positions.get(&chunk.command_id);
        let Take::Yes { missed: lost } = take(position, &chunk) else {
            return;
        };
        missed += lost;
        let end = chunk.offset + chunk.chunk.0.len() as u64;
        positions.set(
            &chunk.command_id,
            Position {
                seq: chunk.seq,
                end,
            },
        );
        if !chunk.chunk.0.is_empty() {
            on_output(&chunk.chunk.0);
        }
    };
    tokio::pin!(call);
    let result = loop {
        tokio::select! {
            biased;
            Some(chunk) = tap.receiver.recv() => hand_on(chunk),
            result = &mut call => break result,
        }
    };
    while let Ok(chunk) = tap.receiver.try_recv() {
        hand_on(chunk);
    }
    (result, missed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rexec_protocol::ByteChunk;

    fn chunk(seq: u64, offset: u64, after_gap: bool) -> ShellOutputNotification {
        ShellOutputNotification {
            name: "s".into(),
            command_id: "c".into(),
            seq,
            offset,
            after_gap,
            chunk: ByteChunk(b"xy".to_vec()),
        }
    }

    #[test]
    fn the_next_seq_is_taken_and_an_old_or_early_one_is_not() {
        let at = Position { seq: 3, end: 10 };
        assert_eq!(take(at, &chunk(4, 10, false)), Take::Yes { missed: 0 });
        assert_eq!(take(at, &chunk(3, 8, false)), Take::No);
        // Ahead of the replay: it comes again, after its predecessors.
        assert_eq!(take(at, &chunk(6, 14, false)), Take::No);
    }

    #[test]
    fn a_gap_the_server_declares_is_taken_and_counted() {
        let at = Position { seq: 3, end: 10 };
        assert_eq!(take(at, &chunk(6, 14, true)), Take::Yes { missed: 4 });
        assert_eq!(take(at, &chunk(2, 6, true)), Take::No);
    }

    #[test]
    fn positions_keep_the_most_recent_commands() {
        let positions = Positions::default();
        for n in 0..=REMEMBERED_COMMANDS {
            positions.set(&n.to_string(), Position { seq: 1, end: 1 });
        }
        assert_eq!(positions.get("0"), Position::default());
        assert_eq!(positions.get("1").seq, 1);
    }
}
