//! Method names, exactly as they appear on the wire.

pub const INITIALIZE: &str = "initialize";
pub const INITIALIZED: &str = "initialized";
pub const ENVIRONMENT_INFO: &str = "environment/info";
pub const ENVIRONMENT_STATUS: &str = "environment/status";
pub const PROCESS_START: &str = "process/start";
pub const PROCESS_READ: &str = "process/read";
pub const PROCESS_WRITE: &str = "process/write";
pub const PROCESS_SIGNAL: &str = "process/signal";
pub const PROCESS_TERMINATE: &str = "process/terminate";
/// rexec extension: change the window size of a PTY process.
pub const PROCESS_RESIZE: &str = "process/resize";

pub const PROCESS_OUTPUT: &str = "process/output";
pub const PROCESS_EXITED: &str = "process/exited";
pub const PROCESS_CLOSED: &str = "process/closed";
