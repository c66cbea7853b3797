//! Leak checks for tests whose server runs in the test process: the open descriptors of
//! this process (`/proc/self/fd`) and tokio's count of alive tasks, snapshotted before a
//! workload and waited for (with a deadline) to come back to it afterwards.

use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// Open descriptor → what it points at (`socket:[…]`, `pipe:[…]`, a path).
    pub fds: BTreeMap<u32, String>,
    pub tasks: usize,
}

impl Resources {
    pub fn now() -> Self {
        let mut fds = BTreeMap::new();
        let entries = std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd");
        for entry in entries.flatten() {
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            // The directory handle being listed is gone by the time it is read: skip it.
            if let Ok(target) = std::fs::read_link(entry.path()) {
                fds.insert(fd, target.display().to_string());
            }
        }
        Self {
            fds,
            tasks: tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
        }
    }

    /// Descriptors open now that were not in `baseline`.
    pub fn new_fds(&self, baseline: &Self) -> Vec<String> {
        self.fds
            .iter()
            .filter(|(fd, target)| baseline.fds.get(fd) != Some(target))
            .map(|(fd, target)| format!("{fd} -> {target}"))
            .collect()
    }
}

/// Wait until no more descriptors are open and no more tasks alive than in `baseline`,
/// polling (nothing signals a closed descriptor) until `within`; the last snapshot is
/// returned either way, and `Err` carries what is still open.
pub async fn settle(baseline: &Resources, within: Duration) -> Result<Resources, String> {
    let deadline = Instant::now() + within;
    loop {
        let now = Resources::now();
        if now.fds.len() <= baseline.fds.len() && now.tasks <= baseline.tasks {
            return Ok(now);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "after {within:?}: {} descriptors open (baseline {}), {} tasks alive \
                 (baseline {}); new descriptors: {:?}",
                now.fds.len(),
                baseline.fds.len(),
                now.tasks,
                baseline.tasks,
                now.new_fds(baseline)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
