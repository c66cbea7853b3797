//! A session's process table: `processId` → process, with `Starting` reservations so that
//! concurrent starts of one id race correctly (exactly one wins) and a terminate can cancel
//! a start in progress. It also keeps the cgroups of forgotten processes whose descendants
//! still run (a daemon that closed its output), so they die with the session.

use super::Process;
use super::containment::{self, Lingering};
use crate::sync::lock;
use rexec_protocol::RpcError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

enum Slot {
    Starting,
    Running(Arc<Process>),
}

pub enum Lookup {
    Unknown,
    Starting,
    Running(Arc<Process>),
}

pub struct ProcessTable {
    slots: Mutex<HashMap<String, Slot>>,
    /// Cgroups of forgotten processes that still had members.
    lingering: Mutex<Vec<Lingering>>,
    /// How long a closed process stays readable.
    pub closed_retention: Duration,
}

impl ProcessTable {
    pub fn new(closed_retention: Duration) -> Self {
        Self {
            slots: Mutex::default(),
            lingering: Mutex::default(),
            closed_retention,
        }
    }

    /// Reserve `id` for a start in progress.
    pub fn reserve(&self, id: &str) -> Result<(), RpcError> {
        let mut slots = lock(&self.slots);
        if slots.contains_key(id) {
            return Err(RpcError::process_exists(id));
        }
        slots.insert(id.to_owned(), Slot::Starting);
        Ok(())
    }

    /// Turn the reservation into a running process. False if a terminate cancelled it.
    pub fn activate(&self, process: &Arc<Process>) -> bool {
        let mut slots = lock(&self.slots);
        match slots.get_mut(&process.id) {
            Some(slot @ Slot::Starting) => {
                *slot = Slot::Running(Arc::clone(process));
                true
            }
            _ => false,
        }
    }

    /// Drop a reservation after a failed spawn.
    pub fn release_reservation(&self, id: &str) {
        let mut slots = lock(&self.slots);
        if matches!(slots.get(id), Some(Slot::Starting)) {
            slots.remove(id);
        }
    }

    /// Remove a `Starting` reservation (terminate during start). True if there was one.
    pub fn cancel_start(&self, id: &str) -> bool {
        let mut slots = lock(&self.slots);
        if matches!(slots.get(id), Some(Slot::Starting)) {
            slots.remove(id);
            return true;
        }
        false
    }

    pub fn lookup(&self, id: &str) -> Lookup {
        match lock(&self.slots).get(id) {
            None => Lookup::Unknown,
            Some(Slot::Starting) => Lookup::Starting,
            Some(Slot::Running(process)) => Lookup::Running(Arc::clone(process)),
        }
    }

    /// Forget a closed process once its retention ended, unless the id was reused.
    pub fn remove_closed(&self, process: &Arc<Process>) {
        let mut slots = lock(&self.slots);
        if let Some(Slot::Running(current)) = slots.get(&process.id)
            && Arc::ptr_eq(current, process)
        {
            slots.remove(&process.id);
        }
        drop(slots);
        let mut lingering = lock(&self.lingering);
        lingering.retain(|cgroup| !cgroup.remove_if_empty());
        if !process.descendants().remove_if_empty()
            && let Some(cgroup) = process.descendants().lingering()
        {
            lingering.push(cgroup);
        }
        drop(lingering);
        containment::get().sweep();
    }

    pub fn kill_all(&self) {
        let processes: Vec<_> = lock(&self.slots)
            .values()
            .filter_map(|slot| match slot {
                Slot::Running(process) => Some(Arc::clone(process)),
                Slot::Starting => None,
            })
            .collect();
        for process in processes {
            // Nobody will acknowledge held output now: let the pump drain to the close.
            process.release_hold();
            process.kill_group();
        }
        for cgroup in lock(&self.lingering).drain(..) {
            cgroup.kill();
        }
    }
}
