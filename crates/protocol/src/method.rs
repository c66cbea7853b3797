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
/// rexec extension (`process/start.holdOutput`), a client notification: the client has
/// every event up to `seq`, so held output up to there may be evicted again.
pub const PROCESS_ACK: &str = "process/ack";
/// rexec extension: answer once a condition holds on a process's event log.
pub const PROCESS_WAIT_FOR: &str = "process/waitFor";

pub const PROCESS_OUTPUT: &str = "process/output";
pub const PROCESS_EXITED: &str = "process/exited";
pub const PROCESS_CLOSED: &str = "process/closed";

pub const FS_READ_FILE: &str = "fs/readFile";
pub const FS_WRITE_FILE: &str = "fs/writeFile";
pub const FS_CREATE_DIRECTORY: &str = "fs/createDirectory";
pub const FS_GET_METADATA: &str = "fs/getMetadata";
pub const FS_GET_METADATA_BATCH: &str = "fs/getMetadataBatch";
pub const FS_CANONICALIZE: &str = "fs/canonicalize";
pub const FS_READ_DIRECTORY: &str = "fs/readDirectory";
pub const FS_WALK: &str = "fs/walk";
pub const FS_REMOVE: &str = "fs/remove";
pub const FS_COPY: &str = "fs/copy";
pub const FS_OPEN: &str = "fs/open";
pub const FS_READ_BLOCK: &str = "fs/readBlock";
pub const FS_WRITE_BLOCK: &str = "fs/writeBlock";
pub const FS_CLOSE: &str = "fs/close";
pub const FS_WATCH_MISSING: &str = "fs/watchMissing";
pub const FS_MISSING_CHANGED: &str = "fs/missingChanged";

pub const HTTP_REQUEST: &str = "http/request";
pub const HTTP_REQUEST_BODY_DELTA: &str = "http/request/bodyDelta";

/// rexec extension (`shell/run`): named persistent shells.
pub const SHELL_RUN: &str = "shell/run";
pub const SHELL_WAIT: &str = "shell/wait";
pub const SHELL_WRITE: &str = "shell/write";
pub const SHELL_LIST: &str = "shell/list";
pub const SHELL_OUTPUT: &str = "shell/output";
pub const SHELL_FINISHED: &str = "shell/finished";
