//! What a caller observes of a process: `ProcessEvent` (the ordered stream), `Completion`
//! (the finished result) and `OutputCallback` (output as it is delivered).

use bytes::Bytes;
use rexec_protocol::process::OutputStream;
use rexec_protocol::sandbox::SandboxDenial;
use std::fmt;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

/// One event of a process's ordered log, as delivered to a subscriber.
///
/// Sequenced events arrive in strictly increasing seq order with no seq skipped: every seq
/// is covered by exactly one `Output`, `Exited`, `Closed` or `Gap`. `Closed` (or `Failed`)
/// is the last event of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessEvent {
    /// A chunk of output.
    Output {
        /// Its position in the process's log.
        seq: u64,
        /// Which stream (`Pty` for a tty process).
        stream: OutputStream,
        /// The bytes, as the process wrote them.
        bytes: Bytes,
    },
    /// The exit status together with the server's sandbox-denial verdict, and what the
    /// sandbox refused when the server says (rexec's `sandboxDenial`).
    Exited {
        /// Its position in the process's log.
        seq: u64,
        /// The exit code (128+N after signal N).
        code: i32,
        /// The server blames the sandbox for the failure.
        sandbox_denied: bool,
        /// What the sandbox refused, when the server says.
        denial: Option<Box<SandboxDenial>>,
    },
    /// All output streams ended: nothing follows.
    Closed {
        /// Its position in the process's log (the last one).
        seq: u64,
    },
    /// Output the server no longer retained when the client repaired its stream (for one
    /// lagging subscriber: or could not be read back at all). `seqs` are the lost events;
    /// `bytes_lost` is exact when the server reports eviction counters (rexec's
    /// `process/read.evictionCounters`), and 0 — unknown — when it does not (codex
    /// exec-server): the seq range is explicit either way.
    Gap {
        /// The seqs of the lost events.
        seqs: RangeInclusive<u64>,
        /// Their output bytes; 0 when unknown.
        bytes_lost: u64,
    },
    /// The stream cannot continue (connection lost beyond the resume window, the server
    /// forgot the process, a protocol violation). Unsequenced; nothing follows.
    Failed {
        /// Why, in words.
        reason: String,
    },
}

impl ProcessEvent {
    /// The first and last seq this event covers; `None` for `Failed`.
    pub fn seq_range(&self) -> Option<(u64, u64)> {
        match self {
            Self::Output { seq, .. } | Self::Exited { seq, .. } | Self::Closed { seq } => {
                Some((*seq, *seq))
            }
            Self::Gap { seqs, .. } => Some((*seqs.start(), *seqs.end())),
            Self::Failed { .. } => None,
        }
    }

    /// Whether nothing can follow this event.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Closed { .. } | Self::Failed { .. })
    }

    /// Bytes this event holds in memory, for the bounded buffers.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Self::Output { bytes, .. } => bytes.len(),
            Self::Failed { reason } => reason.len(),
            _ => 0,
        }
    }

    /// The process's output bytes this event accounts for, delivered or lost: what the
    /// ledger of a process's output advances by (`procs::rebuild`).
    pub(crate) fn ledger_bytes(&self) -> u64 {
        match self {
            Self::Output { bytes, .. } => bytes.len() as u64,
            Self::Gap { bytes_lost, .. } => *bytes_lost,
            _ => 0,
        }
    }
}

/// Output the server evicted before the client could read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapInfo {
    /// The seqs of the lost events.
    pub seqs: RangeInclusive<u64>,
    /// Exact with rexec servers; 0 (unknown) with servers that do not count evictions.
    pub bytes_lost: u64,
}

/// Where a one-shot's time went, as the client saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// `process/start` request to its response.
    pub start_rpc: Duration,
    /// Start response to the process being complete (exit + closed delivered).
    pub completion_wait: Duration,
    /// `start` called to complete.
    pub total: Duration,
}

/// A finished process: exit status, denial verdict and the kept output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The exit code (128+N after signal N).
    pub exit_code: i32,
    /// The server blames the sandbox for the failure.
    pub sandbox_denied: bool,
    /// What the sandbox refused, when the server reports it (rexec does; codex does not).
    pub sandbox_denial: Option<SandboxDenial>,
    /// Head + tail of each stream within `ProcessSpec::output_budget`.
    pub stdout: Vec<u8>,
    /// Head + tail of stderr.
    pub stderr: Vec<u8>,
    /// Head + tail of a tty process's output (it has no stdout or stderr).
    pub pty: Vec<u8>,
    /// Output lost to server-side eviction (never silently).
    pub gaps: Vec<GapInfo>,
    /// Bytes delivered but left out between head and tail, summed over the streams.
    pub omitted_bytes: u64,
    /// Where the time went.
    pub timings: Timings,
    /// The client terminated the process at its [`ProcessSpec::timeout`] (the deadline
    /// passed before the client saw it complete).
    ///
    /// [`ProcessSpec::timeout`]: crate::ProcessSpec::timeout
    pub timed_out: bool,
}

impl Completion {
    /// Exit code 0, no sandbox denial, not timed out. (Lost output, if any, is in
    /// [`Completion::gaps`].)
    pub fn success(&self) -> bool {
        self.exit_code == 0 && !self.sandbox_denied && !self.timed_out
    }
}

/// Called with every output chunk of a process, in seq order ([`ProcessSpec::on_output`](crate::ProcessSpec::on_output)).
///
/// Compared by identity: two specs are equal when they share the same callback.
#[derive(Clone)]
pub struct OutputCallback(Arc<OutputFn>);

type OutputFn = dyn Fn(OutputStream, &[u8]) + Send + Sync;

impl OutputCallback {
    pub(crate) fn new(callback: impl Fn(OutputStream, &[u8]) + Send + Sync + 'static) -> Self {
        Self(Arc::new(callback))
    }

    pub(crate) fn call(&self, stream: OutputStream, bytes: &[u8]) {
        (self.0)(stream, bytes);
    }
}

impl fmt::Debug for OutputCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OutputCallback(..)")
    }
}

impl PartialEq for OutputCallback {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for OutputCallback {}
