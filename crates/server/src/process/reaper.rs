//! The fallback where no cgroup is available: the server is a child subreaper, reaps the
//! orphans re-parented to it, and kills the descendants of a process it can attribute by
//! what `/proc` still shows.
//!
//! A descendant is attributed to a process when it is the process itself (same pid and
//! start time), in its process group, in its session (a PTY child leads one), holds one of
//! its output pipes or its terminal open, or descends (by parent links) from any of those.
//! A daemon that left the session *and* the group, dropped the output descriptors and
//! whose parents are gone carries nothing that ties it to its process: it is killed only at
//! shutdown, with every other orphan of the server (see ARCHITECTURE.md, "Descendants").
//!
//! tokio waits for the server's direct children by pid; the reaper must never take their
//! status. Spawns register their child under a read lock that the reaper's scan takes for
//! writing, so a child cannot be seen before it is known.

use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::sync::{Mutex, RwLock, RwLockReadGuard};

/// Scans per kill: a descendant forked between one scan and its parent's death is
/// found by the next.
const KILL_PASSES: usize = 3;

#[derive(Debug, Default)]
pub struct Reaper {
    spawning: RwLock<()>,
    direct: Mutex<HashSet<i32>>,
}

/// What ties descendants to one process, recorded at spawn.
#[derive(Debug, Clone)]
pub struct Attribution {
    pub pid: Pid,
    /// The start time (clock ticks after boot) that makes `pid` this process and no other.
    pub start_time: Option<u64>,
    /// The child leads its own session (a PTY child).
    pub session_leader: bool,
    /// `/proc/PID/fd` link texts of its output: `pipe:[INODE]`, or the PTY's `/dev/pts/N`.
    pub fd_targets: Vec<String>,
}

/// One line of `/proc/PID/stat`, the fields used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    session: i32,
    start_time: u64,
}

impl Reaper {
    /// Make the server the subreaper of everything it starts.
    pub fn new() -> std::io::Result<Self> {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
        Ok(Self::default())
    }

    /// Held across a spawn until the child is [registered](Self::register).
    pub fn spawn_gate(&self) -> RwLockReadGuard<'_, ()> {
        self.spawning
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn register(&self, pid: Pid) {
        crate::sync::lock(&self.direct).insert(pid.as_raw_nonzero().get());
    }

    /// tokio has reaped it: from now on the pid is free to be reused.
    pub fn unregister(&self, pid: Pid) {
        crate::sync::lock(&self.direct).remove(&pid.as_raw_nonzero().get());
    }

    /// Reap every orphan that has exited (the server's children it did not spawn).
    pub fn reap_orphans(&self) {
        let _gate = self
            .spawning
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let direct = crate::sync::lock(&self.direct).clone();
        for pid in children_of_self() {
            if direct.contains(&pid) {
                continue;
            }
            if let Some(pid) = Pid::from_raw(pid) {
                let _ = rustix::process::waitpid(Some(pid), WaitOptions::NOHANG);
            }
        }
    }

    /// SIGKILL the process and every descendant attributed to it.
    pub fn kill(&self, attribution: &Attribution) {
        for _ in 0..KILL_PASSES {
            let table = scan();
            let seeds = seeds(attribution, &table);
            if kill_trees(&table, seeds) == 0 {
                break;
            }
        }
        self.reap_orphans();
    }

    /// Shutdown: SIGKILL every orphan of the server and what descends from it. Each is a
    /// descendant of some process the server started (nothing else is re-parented here).
    pub fn kill_orphans(&self) {
        for _ in 0..KILL_PASSES {
            let direct = crate::sync::lock(&self.direct).clone();
            let table = scan();
            let me = std::process::id() as i32;
            let orphans: Vec<i32> = table
                .values()
                .filter(|stat| stat.ppid == me && !direct.contains(&stat.pid))
                .map(|stat| stat.pid)
                .collect();
            if kill_trees(&table, orphans) == 0 {
                break;
            }
        }
        self.reap_orphans();
    }
}

/// The processes directly attributed to `attribution`.
fn seeds(attribution: &Attribution, table: &HashMap<i32, Stat>) -> Vec<i32> {
    let pid = attribution.pid.as_raw_nonzero().get();
    // A group or session id names this process's only while the pid is not someone
    // else's: the kernel keeps an id from reuse while any group or session holds it.
    let reused = match (table.get(&pid), attribution.start_time) {
        (Some(stat), Some(start)) => stat.start_time != start,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let me = std::process::id() as i32;
    let mut seeds = Vec::new();
    for stat in table.values().filter(|stat| stat.pid != me) {
        let by_ids = !reused
            && (stat.pid == pid
                || stat.pgrp == pid
                || (attribution.session_leader && stat.session == pid));
        if by_ids || holds_any(stat.pid, &attribution.fd_targets) {
            seeds.push(stat.pid);
        }
    }
    seeds
}

/// SIGKILL `seeds` and all their descendants; the number signalled.
fn kill_trees(table: &HashMap<i32, Stat>, seeds: Vec<i32>) -> usize {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for stat in table.values() {
        children.entry(stat.ppid).or_default().push(stat.pid);
    }
    let me = std::process::id() as i32;
    let mut seen = HashSet::new();
    let mut stack = seeds;
    let mut killed = 0;
    while let Some(pid) = stack.pop() {
        if pid == me || !seen.insert(pid) {
            continue;
        }
        if let Some(stat) = table.get(&pid)
            && kill_same(stat)
        {
            killed += 1;
        }
        stack.extend(children.get(&pid).into_iter().flatten());
    }
    killed
}

/// SIGKILL the process `stat` describes, through a pidfd checked against its start time,
/// so a pid reused since the scan is never signalled.
fn kill_same(stat: &Stat) -> bool {
    let Some(pid) = Pid::from_raw(stat.pid) else {
        return false;
    };
    let Ok(pidfd) = rustix::process::pidfd_open(pid, PidfdFlags::empty()) else {
        return false;
    };
    if read_stat(stat.pid).map(|now| now.start_time) != Some(stat.start_time) {
        return false;
    }
    rustix::process::pidfd_send_signal(&pidfd, Signal::KILL).is_ok()
}

/// Whether process `pid` has one of `targets` open (unreadable descriptors count as not).
fn holds_any(pid: i32, targets: &[String]) -> bool {
    if targets.is_empty() {
        return false;
    }
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    entries.flatten().any(|entry| {
        fs::read_link(entry.path())
            .is_ok_and(|link| targets.iter().any(|t| link.as_os_str() == t.as_str()))
    })
}

/// Every process's stat, by pid.
fn scan() -> HashMap<i32, Stat> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_stat)
        .map(|stat| (stat.pid, stat))
        .collect()
}

/// The server's children: `/proc/self/task/*/children`, else a scan for its pid as parent.
fn children_of_self() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut children = Vec::new();
    for task in tasks.flatten() {
        match fs::read_to_string(task.path().join("children")) {
            Ok(list) => children.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            ),
            Err(_) => {
                return scan()
                    .values()
                    .filter(|stat| stat.ppid == me)
                    .map(|s| s.pid)
                    .collect();
            }
        }
    }
    children
}

/// A process's start time, which tells it from a later process given the same pid.
pub fn start_time(pid: Pid) -> Option<u64> {
    read_stat(pid.as_raw_nonzero().get()).map(|stat| stat.start_time)
}

fn read_stat(pid: i32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `pid (comm) state ppid pgrp session … starttime …`; comm may hold spaces and parens,
/// so the fields are counted from the last `)`.
fn parse_stat(line: &str) -> Option<Stat> {
    let (head, rest) = line.rsplit_once(')')?;
    let pid = head.split_once(' ')?.0.trim().parse().ok()?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        pid,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_command_name_with_parens_and_spaces() {
        let line = "4242 (a (b) c) S 1 4242 4200 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 \
                    1000 10 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                pid: 4242,
                ppid: 1,
                pgrp: 4242,
                session: 4200,
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("4242 (x) S 1"), None);
    }

    #[test]
    fn this_process_reads_as_itself() {
        let me = read_stat(std::process::id() as i32).expect("own stat");
        assert_eq!(me.pid, std::process::id() as i32);
        assert!(me.start_time > 0);
    }
}
