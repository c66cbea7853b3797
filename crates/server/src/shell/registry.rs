//! `ShellRegistry`: the server's named shells, keyed by owner and name.
//!
//! A shell belongs to the principal whose request created it, never to a connection, so it
//! outlives disconnects; another principal using the same name gets a shell of its own. A
//! principal holds at most [`MAX_SHELLS_PER_PRINCIPAL`]. Commands are queued under the
//! registry's lock, and a slot is removed under it only when its queue is empty, so a
//! command is never queued into a slot that is going away.

use super::command::Command;
use super::runner;
use super::slot::{Queued, ShellSlot};
use crate::auth::Principal;
use crate::sync::lock;
use rexec_protocol::RpcError;
use rexec_protocol::shell::ShellEntry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// Named shells one principal may hold at once.
pub const MAX_SHELLS_PER_PRINCIPAL: usize = 16;
/// Longest shell name accepted.
pub const MAX_NAME_BYTES: usize = 128;

type Key = (Principal, String);

#[derive(Default)]
pub(super) struct Slots {
    map: Mutex<HashMap<Key, Arc<ShellSlot>>>,
}

impl Slots {
    /// Remove `slot` if nothing is queued for it; false when a command came in meanwhile.
    pub(super) fn remove_if_drained(
        &self,
        slot: &Arc<ShellSlot>,
        queue: &mpsc::Receiver<Queued>,
    ) -> bool {
        let mut map = lock(&self.map);
        if !queue.is_empty() {
            return false;
        }
        let key = (slot.owner.clone(), slot.name.clone());
        if map
            .get(&key)
            .is_some_and(|current| Arc::ptr_eq(current, slot))
        {
            map.remove(&key);
        }
        true
    }
}

pub struct ShellRegistry {
    slots: Arc<Slots>,
    idle_timeout: Duration,
    next_command: AtomicU64,
}

impl ShellRegistry {
    pub fn new(idle_timeout: Duration) -> Self {
        Self {
            slots: Arc::default(),
            idle_timeout,
            next_command: AtomicU64::new(1),
        }
    }

    pub fn next_command_id(&self) -> String {
        format!("cmd-{}", self.next_command.fetch_add(1, Ordering::Relaxed))
    }

    /// Queue a command in the owner's shell `name`, creating the shell's slot (and its
    /// runner) on first use.
    pub fn enqueue(&self, owner: &Principal, queued: Queued) -> Result<Arc<ShellSlot>, RpcError> {
        let name = &queued.command.shell_name;
        check_name(name)?;
        let command = Arc::clone(&queued.command);
        let mut map = lock(&self.slots.map);
        let key = (owner.clone(), name.clone());
        let slot = match map.get(&key) {
            Some(slot) => Arc::clone(slot),
            None => {
                let held = map
                    .keys()
                    .filter(|(principal, _)| principal == owner)
                    .count();
                if held >= MAX_SHELLS_PER_PRINCIPAL {
                    return Err(RpcError::invalid_request(format!(
                        "too many shells (limit {MAX_SHELLS_PER_PRINCIPAL}); \
                         `exit` one or let it close"
                    )));
                }
                let (slot, commands) = ShellSlot::new(name.clone(), owner.clone(), queued.kind);
                let slot = Arc::new(slot);
                map.insert(key, Arc::clone(&slot));
                tokio::spawn(runner::run(
                    Arc::clone(&slot),
                    commands,
                    Arc::clone(&self.slots),
                    self.idle_timeout,
                ));
                slot
            }
        };
        match slot.queue.try_send(queued) {
            Ok(()) => {
                slot.queued(&command);
                Ok(slot)
            }
            Err(TrySendError::Full(_)) => Err(RpcError::busy(
                "commands queued in this shell",
                super::slot::MAX_QUEUED_COMMANDS,
            )),
            // The runner ends only after removing its slot under this lock.
            Err(TrySendError::Closed(_)) => Err(RpcError::internal("the shell has ended")),
        }
    }

    pub fn get(&self, owner: &Principal, name: &str) -> Result<Arc<ShellSlot>, RpcError> {
        lock(&self.slots.map)
            .get(&(owner.clone(), name.to_owned()))
            .cloned()
            .ok_or_else(|| RpcError::not_found(format!("no shell named {name:?}")))
    }

    pub fn list(&self, owner: &Principal) -> Vec<ShellEntry> {
        let slots: Vec<Arc<ShellSlot>> = lock(&self.slots.map)
            .iter()
            .filter(|((principal, _), _)| principal == owner)
            .map(|(_, slot)| Arc::clone(slot))
            .collect();
        let mut entries: Vec<ShellEntry> = slots.iter().map(|slot| slot.entry()).collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries
    }

    /// Kill every shell and what it started (shutdown).
    pub fn kill_all(&self) {
        let slots: Vec<Arc<ShellSlot>> = lock(&self.slots.map).values().cloned().collect();
        for slot in slots {
            if let Some(terminal) = slot.terminal() {
                terminal.kill();
            }
        }
    }

    /// A command id is unique server-wide, so one found in a slot is that command.
    pub fn find_command(
        &self,
        owner: &Principal,
        name: &str,
        command_id: &str,
    ) -> Result<(Arc<ShellSlot>, Arc<Command>), RpcError> {
        let slot = self.get(owner, name)?;
        let command = slot.find(command_id).ok_or_else(|| {
            RpcError::not_found(format!("no command {command_id:?} in shell {name:?}"))
        })?;
        Ok((slot, command))
    }
}

fn check_name(name: &str) -> Result<(), RpcError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(RpcError::invalid_params(format!(
            "a shell name is 1 to {MAX_NAME_BYTES} bytes without control characters, \
             not {name:?}"
        )));
    }
    Ok(())
}
