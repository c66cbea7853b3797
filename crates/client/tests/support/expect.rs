//! Checking an event stream against the output a process is known to write: every byte
//! delivered exactly once and in order, except inside `Gap`s whose byte counts add up
//! exactly to what is missing; one exit with the expected code; `Closed` last; seqs
//! contiguous from 1.
//!
//! A `Gap` does not say which stream lost the bytes. After one, each stream's next chunk
//! must match its expected bytes a little further on (its share of the gap); the shares,
//! plus whatever a stream never delivered after the gap, must equal the gap's count. The
//! patterns used (numbered lines) make that position unique after a few dozen bytes;
//! bytes that still fit more than one place when the stream ends are reported.

use bytes::Bytes;
use rexec_client::{OutputStream, ProcessEvent};

/// What one process must deliver.
pub struct Expected {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// What a checked stream delivered, for the soak's summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct Delivered {
    pub bytes: u64,
    pub gaps: u64,
    pub bytes_lost: u64,
}

struct Cursor<'a> {
    expected: &'a [u8],
    pos: usize,
    /// A gap came after this stream's last chunk: its next bytes may start further on.
    after_gap: bool,
    /// Bytes delivered since that gap, too few yet to place unambiguously.
    pending: Vec<u8>,
}

pub struct Checker<'a> {
    name: &'a str,
    exit_code: i32,
    streams: [Cursor<'a>; 2],
    next_seq: u64,
    /// Gap bytes not yet matched to a stream's skipped bytes.
    unmatched: u64,
    exited: bool,
    closed: bool,
    delivered: Delivered,
}

impl<'a> Checker<'a> {
    pub fn new(name: &'a str, expected: &'a Expected) -> Self {
        let cursor = |bytes: &'a [u8]| Cursor {
            expected: bytes,
            pos: 0,
            after_gap: false,
            pending: Vec::new(),
        };
        Self {
            name,
            exit_code: expected.exit_code,
            streams: [cursor(&expected.stdout), cursor(&expected.stderr)],
            next_seq: 1,
            unmatched: 0,
            exited: false,
            closed: false,
            delivered: Delivered::default(),
        }
    }

    pub fn event(&mut self, event: &ProcessEvent) -> Result<(), String> {
        let name = self.name;
        if self.closed {
            return Err(format!("{name}: {event:?} after Closed"));
        }
        let Some((first, last)) = event.seq_range() else {
            return Err(format!("{name}: the stream failed: {event:?}"));
        };
        if first != self.next_seq {
            return Err(format!(
                "{name}: {} after seq {}",
                describe(event),
                self.next_seq - 1
            ));
        }
        self.next_seq = last + 1;
        match event {
            ProcessEvent::Output { stream, bytes, .. } => self.output(*stream, bytes),
            ProcessEvent::Gap { bytes_lost, .. } => {
                self.delivered.gaps += 1;
                self.delivered.bytes_lost += bytes_lost;
                self.unmatched += bytes_lost;
                for cursor in &mut self.streams {
                    cursor.after_gap = true;
                }
                Ok(())
            }
            ProcessEvent::Exited { code, .. } => {
                if self.exited {
                    return Err(format!("{name}: a second exit {event:?}"));
                }
                self.exited = true;
                if *code != self.exit_code {
                    return Err(format!(
                        "{name}: exit code {code}, expected {}",
                        self.exit_code
                    ));
                }
                Ok(())
            }
            ProcessEvent::Closed { .. } => {
                self.closed = true;
                Ok(())
            }
            ProcessEvent::Failed { .. } => unreachable!("unsequenced"),
        }
    }

    fn output(&mut self, stream: OutputStream, bytes: &Bytes) -> Result<(), String> {
        let name = self.name;
        let index = match stream {
            OutputStream::Stdout => 0,
            OutputStream::Stderr => 1,
            OutputStream::Pty => return Err(format!("{name}: unexpected pty output")),
        };
        if bytes.is_empty() {
            return Ok(());
        }
        self.delivered.bytes += bytes.len() as u64;
        let unmatched = self.unmatched;
        let cursor = &mut self.streams[index];
        if cursor.after_gap {
            cursor.pending.extend_from_slice(bytes);
            let Some(skip) =
                find_after_gap(cursor.expected, cursor.pos, &cursor.pending, unmatched)
                    .map_err(|why| format!("{name}: {stream:?} after a gap: {why}"))?
            else {
                return Ok(());
            };
            cursor.after_gap = false;
            cursor.pos += skip + cursor.pending.len();
            cursor.pending.clear();
            self.unmatched -= skip as u64;
            return Ok(());
        }
        let at = cursor.pos;
        if cursor.expected.get(at..at + bytes.len()) != Some(bytes.as_ref()) {
            return Err(format!(
                "{name}: {stream:?} bytes {at}..{} are not the expected ones \
                 (got {:?}…, expected {:?}…)",
                at + bytes.len(),
                preview(bytes),
                preview(cursor.expected.get(at..).unwrap_or_default())
            ));
        }
        cursor.pos = at + bytes.len();
        Ok(())
    }

    /// The stream must be over: everything accounted for.
    pub fn finish(mut self) -> Result<Delivered, String> {
        let name = self.name;
        if !self.closed {
            return Err(format!("{name}: the stream ended without Closed"));
        }
        if !self.exited {
            return Err(format!("{name}: closed without an exit"));
        }
        for (cursor, stream) in self.streams.iter().zip(["stdout", "stderr"]) {
            if !cursor.pending.is_empty() {
                return Err(format!(
                    "{name}: {stream}'s last {} bytes after a gap fit more than one place",
                    cursor.pending.len()
                ));
            }
            let missing = (cursor.expected.len() - cursor.pos) as u64;
            if missing == 0 {
                continue;
            }
            if !cursor.after_gap || missing > self.unmatched {
                return Err(format!(
                    "{name}: {stream} ended {missing} bytes short at byte {} \
                     with {} gap bytes unaccounted",
                    cursor.pos, self.unmatched
                ));
            }
            self.unmatched -= missing;
        }
        if self.unmatched != 0 {
            return Err(format!(
                "{name}: gaps reported {} bytes lost, {} more than were missing",
                self.delivered.bytes_lost, self.unmatched
            ));
        }
        Ok(self.delivered)
    }
}

/// How far past `pos` the bytes `bytes` start in `expected`, at most `budget` bytes on:
/// `None` while they fit more than one place (more bytes will tell).
fn find_after_gap(
    expected: &[u8],
    pos: usize,
    bytes: &[u8],
    budget: u64,
) -> Result<Option<usize>, String> {
    let end = expected.len().min(pos + budget as usize + bytes.len());
    let window = expected.get(pos..end).unwrap_or_default();
    let mut fits = window
        .windows(bytes.len())
        .enumerate()
        .filter(|(_, w)| *w == bytes)
        .map(|(skip, _)| skip);
    match (fits.next(), fits.next()) {
        (Some(skip), None) => Ok(Some(skip)),
        (Some(_), Some(_)) => Ok(None),
        (None, _) => Err(format!(
            "{:?}… is nowhere in the {budget} bytes a gap could cover after byte {pos}",
            preview(bytes)
        )),
    }
}

fn describe(event: &ProcessEvent) -> String {
    match event {
        ProcessEvent::Output { seq, stream, bytes } => {
            format!("Output {{ seq: {seq}, {stream:?}, {} bytes }}", bytes.len())
        }
        other => format!("{other:?}"),
    }
}

fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(24)]).into_owned()
}
