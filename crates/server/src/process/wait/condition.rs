//! The conditions of one `process/waitFor`, validated and compiled, and their evaluation
//! over the events of the log in sequence order.

use super::window::{Pattern, Window};
use bytes::Bytes;
use rexec_protocol::process::OutputStream;
use rexec_protocol::wait::{
    DEFAULT_MATCH_WINDOW, MAX_CONDITIONS, MAX_MATCH_TEXT, MAX_MATCH_WINDOW, MAX_TIMEOUT_MS,
    WaitCondition, WaitFired, WaitForResult,
};
use rexec_protocol::{ByteChunk, RpcError};
use std::time::Duration;

/// One event of the log as a wait sees it.
pub enum Event {
    Output {
        seq: u64,
        stream: OutputStream,
        bytes: Bytes,
        /// Where the chunk starts in its stream, and in all output.
        stream_offset: u64,
        total_offset: u64,
    },
    /// `total_offset`: the output bytes before it.
    Exit {
        seq: u64,
        code: i32,
        total_offset: u64,
    },
    Closed {
        seq: u64,
        total_offset: u64,
    },
}

enum Compiled {
    Exit,
    Closed,
    Match {
        pattern: Pattern,
        stream: Option<OutputStream>,
        /// One per stream (stdout, stderr, pty): streams are matched apart.
        windows: [Window; 3],
    },
    Idle(Duration),
    Bytes {
        count: u64,
        stream: Option<OutputStream>,
        seen: u64,
    },
}

pub struct Conditions {
    compiled: Vec<Compiled>,
}

pub fn fired(fired: WaitFired, index: usize, seq: u64, offset: u64) -> WaitForResult {
    WaitForResult {
        fired,
        condition: Some(index),
        seq,
        offset,
        stream: None,
        match_text: None,
        match_len: None,
        exit_code: None,
        missed_output: false,
    }
}

impl Conditions {
    /// Validate and compile; every refusal is `-32602` naming the condition.
    pub fn compile(conditions: &[WaitCondition]) -> Result<Self, RpcError> {
        if conditions.is_empty() {
            return Err(RpcError::invalid_params(
                "conditions must name at least one condition",
            ));
        }
        if conditions.len() > MAX_CONDITIONS {
            return Err(RpcError::invalid_params(format!(
                "conditions has {} entries; at most {MAX_CONDITIONS} are allowed",
                conditions.len()
            )));
        }
        let compiled = conditions
            .iter()
            .enumerate()
            .map(|(index, condition)| {
                compile_one(condition)
                    .map_err(|why| RpcError::invalid_params(format!("conditions[{index}]: {why}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { compiled })
    }

    /// The shortest idle period asked for, if any.
    pub fn idle(&self) -> Option<(usize, Duration)> {
        self.compiled
            .iter()
            .enumerate()
            .filter_map(|(index, c)| match c {
                Compiled::Idle(period) => Some((index, *period)),
                _ => None,
            })
            .min_by_key(|(_, period)| *period)
    }

    /// Feed one event; the first condition (in request order) that holds at it wins.
    /// `missedOutput` is the runner's to fill in.
    pub fn on_event(&mut self, event: &Event) -> Option<WaitForResult> {
        self.compiled
            .iter_mut()
            .enumerate()
            .find_map(|(index, condition)| evaluate(condition, index, event))
    }
}

fn compile_one(condition: &WaitCondition) -> Result<Compiled, String> {
    Ok(match condition {
        WaitCondition::Exit => Compiled::Exit,
        WaitCondition::Closed => Compiled::Closed,
        WaitCondition::Match {
            regex,
            stream,
            window_bytes,
        } => {
            let window = window_bytes.unwrap_or(DEFAULT_MATCH_WINDOW);
            if window == 0 || window > MAX_MATCH_WINDOW {
                return Err(format!(
                    "windowBytes {window} is out of range: 1 to {MAX_MATCH_WINDOW}"
                ));
            }
            let pattern = Pattern::new(regex)?;
            let limit = usize::try_from(window).unwrap_or(usize::MAX);
            Compiled::Match {
                pattern,
                stream: *stream,
                windows: [Window::new(limit), Window::new(limit), Window::new(limit)],
            }
        }
        WaitCondition::Idle { ms } => {
            if *ms == 0 || *ms > MAX_TIMEOUT_MS {
                return Err(format!(
                    "idle ms {ms} is out of range: 1 to {MAX_TIMEOUT_MS}"
                ));
            }
            Compiled::Idle(Duration::from_millis(*ms))
        }
        WaitCondition::Bytes { count, stream } => {
            if *count == 0 {
                return Err("bytes count must be at least 1".to_owned());
            }
            Compiled::Bytes {
                count: *count,
                stream: *stream,
                seen: 0,
            }
        }
    })
}

fn evaluate(condition: &mut Compiled, index: usize, event: &Event) -> Option<WaitForResult> {
    match (condition, event) {
        (
            Compiled::Exit,
            Event::Exit {
                seq,
                code,
                total_offset,
            },
        ) => Some(WaitForResult {
            exit_code: Some(*code),
            ..fired(WaitFired::Exited, index, *seq, *total_offset)
        }),
        (Compiled::Closed, Event::Closed { seq, total_offset }) => {
            Some(fired(WaitFired::Closed, index, *seq, *total_offset))
        }
        (
            Compiled::Match {
                pattern,
                stream: wanted,
                windows,
            },
            Event::Output {
                seq,
                stream,
                bytes,
                stream_offset,
                ..
            },
        ) if wanted.is_none_or(|w| w == *stream) => {
            let window = &mut windows[crate::process::event_log::stream_index(*stream)];
            let found = window.push(pattern, *stream_offset, bytes)?;
            let text = &found.bytes[..found.bytes.len().min(MAX_MATCH_TEXT)];
            Some(WaitForResult {
                stream: Some(*stream),
                match_text: Some(ByteChunk(text.to_vec())),
                match_len: Some(found.bytes.len() as u64),
                ..fired(WaitFired::Matched, index, *seq, found.offset)
            })
        }
        (
            Compiled::Bytes {
                count,
                stream: wanted,
                seen,
            },
            Event::Output {
                seq,
                stream,
                bytes,
                stream_offset,
                total_offset,
            },
        ) if wanted.is_none_or(|w| w == *stream) => {
            let len = bytes.len() as u64;
            if *seen + len < *count {
                *seen += len;
                return None;
            }
            let base = if wanted.is_some() {
                *stream_offset
            } else {
                *total_offset
            };
            let result = fired(WaitFired::Bytes, index, *seq, base + (*count - *seen));
            *seen += len;
            Some(result)
        }
        _ => None,
    }
}
