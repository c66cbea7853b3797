//! The process's descriptor limit: read it, and raise the soft limit to the hard one at
//! start so the connection cap derived from it is as large as the system allows.

use rustix::process::{Resource, getrlimit, setrlimit};

/// The current soft `RLIMIT_NOFILE` (`u64::MAX` when unlimited).
pub fn descriptor_limit() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; returns the limit now in force.
pub fn raise_descriptor_limit() -> u64 {
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(err) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(%err, "could not raise the descriptor limit to its hard limit");
        }
    }
    descriptor_limit()
}
