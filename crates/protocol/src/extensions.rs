//! rexec's additions to the upstream protocol, by name.
//!
//! Every extension is optional: an upstream client never sends the new fields or methods
//! and ignores the new response fields. The `initialize` result lists these names under
//! `rexec.extensions` so a rexec-aware client knows what it may use.

/// `process/resize {processId, rows, cols}` for PTY processes.
pub const PROCESS_RESIZE: &str = "process/resize";
/// `process/write` accepts `closeStdin: true` to close the child's stdin after the chunk.
pub const WRITE_CLOSE_STDIN: &str = "process/write.closeStdin";
/// `process/read` reports `evictedChunks` / `evictedBytes`: output dropped from retention.
pub const READ_EVICTION_COUNTERS: &str = "process/read.evictionCounters";
/// Notifications of one process leave the server in sequence order, after the
/// `process/start` response.
pub const ORDERED_NOTIFICATIONS: &str = "process/orderedNotifications";

/// `process/output` as binary WebSocket messages (see [`crate::binary_output`]) for a client
/// that asks with `rexec.binaryOutput` in `initialize`; granted per connection, WebSocket
/// only, and reported as `rexec.binaryOutput` in the result.
pub const BINARY_OUTPUT: &str = "process/output.binary";

/// `process/exited` and `process/read` carry `sandboxDenial {rule, exact, detail}` next to
/// `sandboxDenied: true`: what was refused, and whether the kernel reported it (exact) or
/// the output suggested it.
pub const SANDBOX_DENIAL: &str = "process/exited.sandboxDenial";
/// `process/start` may omit `cwd`: the child runs in the server's own working directory
/// (the `environmentInfo.cwd` of `initialize`). A client can then start a process in the
/// same flight as `initialize`, before it knows that directory.
pub const START_DEFAULT_CWD: &str = "process/start.defaultCwd";

/// `process/start` takes `holdOutput: true`: the server never evicts output the client has
/// not acknowledged (`process/ack {processId, seq}`, or a `process/read` from `afterSeq`);
/// when that output fills the retention cap, the server stops reading the child's output
/// until an acknowledgement frees room, so the child blocks on its write as on a slow pipe.
pub const START_HOLD_OUTPUT: &str = "process/start.holdOutput";

/// `environment/info` carries `rexec: {processContainment: "cgroup" | "subreaper"}`: how
/// the server makes sure every descendant of a process dies with it.
pub const PROCESS_CONTAINMENT: &str = "environment/info.processContainment";

/// `process/waitFor {processId, afterSeq?, conditions, timeoutMs?}`: answered once the
/// process exits or closes, its output matches a regex, goes idle or grows by N bytes
/// (see [`crate::wait`]).
pub const PROCESS_WAIT_FOR: &str = "process/waitFor";

/// Named persistent shells with exact command boundaries (`crate::shell`): `shell/run`,
/// `shell/wait`, `shell/write`, `shell/list`, and the `shell/output` / `shell/finished`
/// notifications.
pub const NAMED_SHELLS: &str = "shell/run";

pub const ALL: &[&str] = &[
    PROCESS_RESIZE,
    WRITE_CLOSE_STDIN,
    READ_EVICTION_COUNTERS,
    ORDERED_NOTIFICATIONS,
    BINARY_OUTPUT,
    SANDBOX_DENIAL,
    START_DEFAULT_CWD,
    START_HOLD_OUTPUT,
    PROCESS_CONTAINMENT,
    PROCESS_WAIT_FOR,
    NAMED_SHELLS,
];
