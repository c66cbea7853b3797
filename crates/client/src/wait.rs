//! `Process::wait_for`: one `process/waitFor` request (rexec extension), answered by the
//! server once a condition holds on the process's log, and the builder that names the
//! conditions.

use crate::error::ClientError;
use crate::process::Process;
use rexec_protocol::process::OutputStream;
use rexec_protocol::wait::{self as wire, WaitForParams, WaitForResult};
use rexec_protocol::{extensions, method};
use std::time::Duration;

pub use rexec_protocol::wait::WaitFired;

/// What [`Process::wait_for`] waits for: one or more conditions, the first to hold wins.
///
/// `on_stream` and `window` refine the `matches` or `bytes` condition named just before
/// them. Without a [`timeout`](Self::timeout) the server gives up after 10 minutes; at most
/// 24 hours are accepted.
#[derive(Debug, Clone, Default)]
pub struct WaitCondition {
    conditions: Vec<wire::WaitCondition>,
    after_seq: u64,
    timeout: Option<Duration>,
    /// A builder call that had nothing to refine, reported by `wait_for`.
    invalid: Option<&'static str>,
}

impl WaitCondition {
    /// No condition yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process exited.
    pub fn exit(mut self) -> Self {
        self.conditions.push(wire::WaitCondition::Exit);
        self
    }

    /// The process exited and its output streams closed.
    pub fn closed(mut self) -> Self {
        self.conditions.push(wire::WaitCondition::Closed);
        self
    }

    /// Output matches `regex` (the `regex` crate's syntax, over bytes), matched across
    /// chunks over each stream's last 64 KiB (see [`window`](Self::window)).
    pub fn matches(mut self, regex: impl Into<String>) -> Self {
        self.conditions.push(wire::WaitCondition::Match {
            regex: regex.into(),
            stream: None,
            window_bytes: None,
        });
        self
    }

    /// Only `stream` counts for the `matches` or `bytes` condition before this call.
    pub fn on_stream(mut self, only: OutputStream) -> Self {
        match self.conditions.last_mut() {
            Some(
                wire::WaitCondition::Match { stream, .. }
                | wire::WaitCondition::Bytes { stream, .. },
            ) => *stream = Some(only),
            _ => self.invalid = Some("on_stream must follow matches or bytes"),
        }
        self
    }

    /// How many bytes the `matches` condition before this call may span (at most 1 MiB).
    pub fn window(mut self, bytes: u64) -> Self {
        match self.conditions.last_mut() {
            Some(wire::WaitCondition::Match { window_bytes, .. }) => *window_bytes = Some(bytes),
            _ => self.invalid = Some("window must follow matches"),
        }
        self
    }

    /// No output for `period` while the process runs.
    pub fn idle(mut self, period: Duration) -> Self {
        self.conditions
            .push(wire::WaitCondition::Idle { ms: millis(period) });
        self
    }

    /// `count` more output bytes.
    pub fn bytes(mut self, count: u64) -> Self {
        self.conditions.push(wire::WaitCondition::Bytes {
            count,
            stream: None,
        });
        self
    }

    /// Consider only events after `seq` (default 0: from the first output the server
    /// still retains), e.g. the [`WaitOutcome::seq`] of an earlier wait.
    pub fn after_seq(mut self, seq: u64) -> Self {
        self.after_seq = seq;
        self
    }

    /// Give up after `limit`: the outcome is then [`WaitFired::TimedOut`].
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// How a [`Process::wait_for`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitOutcome {
    /// Which kind of condition fired, or `TimedOut`. `Closed` also ends a wait whose
    /// conditions can no longer hold (then `condition` is `None`).
    pub fired: WaitFired,
    /// The index of the condition that fired, in the order they were named.
    pub condition: Option<usize>,
    /// The event it fired at; for `Idle` and `TimedOut`, the last event seen.
    pub seq: u64,
    /// For a match, where it starts in its stream; for `bytes`, where the counted bytes
    /// end; otherwise the output so far. Counted from the process's first byte.
    pub offset: u64,
    /// The stream a match was found on.
    pub stream: Option<OutputStream>,
    /// The matched bytes (at most 4 KiB of them) and the match's whole length.
    pub matched: Option<Vec<u8>>,
    /// The length of the whole match.
    pub match_len: Option<u64>,
    /// The exit code, if the process had exited.
    pub exit_code: Option<i32>,
    /// The server had already dropped output after `after_seq` from its retention, so a
    /// match or byte count may have been missed.
    pub missed_output: bool,
}

impl WaitOutcome {
    /// The wait hit its timeout.
    pub fn timed_out(&self) -> bool {
        self.fired == WaitFired::TimedOut
    }
}

impl From<WaitForResult> for WaitOutcome {
    fn from(result: WaitForResult) -> Self {
        Self {
            fired: result.fired,
            condition: result.condition,
            seq: result.seq,
            offset: result.offset,
            stream: result.stream,
            matched: result.match_text.map(|chunk| chunk.0),
            match_len: result.match_len,
            exit_code: result.exit_code,
            missed_output: result.missed_output,
        }
    }
}

impl Process {
    /// Wait on the server until `condition` holds, without streaming or polling here: a
    /// dev server can be started and waited on until it prints "listening" in one
    /// request. Needs the `process/waitFor` extension ([`ClientError::Unsupported`]
    /// otherwise, nothing sent). A lost connection ends the wait with
    /// [`ClientError::Disconnected`]; wait again from [`WaitOutcome::seq`] or the start.
    ///
    /// ```no_run
    /// # async fn demo(client: rexec_client::Client) -> Result<(), rexec_client::ClientError> {
    /// use rexec_client::{OutputStream, ProcessSpec, WaitCondition, WaitFired};
    /// use std::time::Duration;
    /// let server = client.start(ProcessSpec::new(["npm", "run", "dev"])).await?;
    /// let ready = server
    ///     .wait_for(
    ///         WaitCondition::new()
    ///             .matches(r"listening on :\d+")
    ///             .exit()
    ///             .timeout(Duration::from_secs(60)),
    ///     )
    ///     .await?;
    /// match ready.fired {
    ///     WaitFired::Matched => println!("up: {:?}", ready.matched),
    ///     WaitFired::Exited => println!("died with {:?}", ready.exit_code),
    ///     _ => println!("not up after a minute"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn wait_for(&self, condition: WaitCondition) -> Result<WaitOutcome, ClientError> {
        self.require(extensions::PROCESS_WAIT_FOR)?;
        if let Some(why) = condition.invalid {
            return Err(ClientError::InvalidInput(why.to_owned()));
        }
        if condition.conditions.is_empty() {
            return Err(ClientError::InvalidInput(
                "a wait needs at least one condition".to_owned(),
            ));
        }
        let params = WaitForParams {
            process_id: self.id().to_owned(),
            after_seq: condition.after_seq,
            conditions: condition.conditions,
            timeout_ms: condition.timeout.map(millis),
        };
        let result: WaitForResult = self
            .client()
            .inner
            .rpc
            .call(method::PROCESS_WAIT_FOR, &params)
            .await?;
        Ok(result.into())
    }
}
