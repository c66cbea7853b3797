//! Binary output frames: the rexec extension `process/output.binary`.
//!
//! A client that sends `"rexec": {"binaryOutput": true}` in `initialize` on a WebSocket
//! connection, and sees `"binaryOutput": true` in the result's `rexec` object, receives each
//! `process/output` notification of that connection as one binary WebSocket message instead
//! of JSON with a base64 chunk. Everything else (responses, `process/exited`,
//! `process/closed`, `process/read` results) stays JSON in text frames.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! offset  size  field
//! 0       1     format, always 1 (FORMAT)
//! 1       1     stream: 0 stdout, 1 stderr, 2 pty
//! 2       8     seq (u64), the same per-process sequence as the JSON notification's
//! 10      2     processId length N (u16)
//! 12      N     processId, UTF-8
//! 12+N    rest  the chunk's raw bytes (the payload is always the tail of the message)
//! ```
//!
//! The format byte (0x01) can never begin a JSON text, so a reader tells an output frame
//! from a JSON message carried in a binary frame by its first byte alone. That matters on a
//! resume: the server redirects the session's output as soon as it attaches the new
//! connection, which can be before the `initialize` response that reports the grant.
//! Only server→client frames carry output; binary frames from the client are still JSON.
//! [`decode`] never panics: every malformed message is an error.

use crate::process::OutputStream;

/// The only format defined so far.
pub const FORMAT: u8 = 1;
/// Bytes before the processId: format, stream, seq, processId length.
pub const FIXED_HEADER_BYTES: usize = 1 + 1 + 8 + 2;

/// One output chunk, borrowed from a frame (decoding) or from the sender's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputFrame<'a> {
    pub process_id: &'a str,
    pub seq: u64,
    pub stream: OutputStream,
    pub chunk: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryOutputError {
    #[error("binary output frame of {len} bytes is truncated: its header needs {needed}")]
    Truncated { len: usize, needed: usize },
    #[error("unsupported binary output frame format {0}")]
    UnsupportedFormat(u8),
    #[error("unknown output stream code {0} in a binary output frame")]
    UnknownStream(u8),
    #[error("the processId of a binary output frame is not UTF-8")]
    ProcessIdNotUtf8,
    #[error("a processId of {0} bytes does not fit a binary output frame (at most 65535)")]
    ProcessIdTooLong(usize),
}

/// Whether a server→client binary message is an output frame (and not JSON).
pub fn is_output_frame(message: &[u8]) -> bool {
    message.first() == Some(&FORMAT)
}

fn stream_code(stream: OutputStream) -> u8 {
    match stream {
        OutputStream::Stdout => 0,
        OutputStream::Stderr => 1,
        OutputStream::Pty => 2,
    }
}

fn stream_from_code(code: u8) -> Result<OutputStream, BinaryOutputError> {
    match code {
        0 => Ok(OutputStream::Stdout),
        1 => Ok(OutputStream::Stderr),
        2 => Ok(OutputStream::Pty),
        other => Err(BinaryOutputError::UnknownStream(other)),
    }
}

/// The whole message for `frame`: header and payload in one buffer. Fails only for a
/// processId longer than 65535 bytes (the sender then falls back to JSON).
pub fn encode(frame: &OutputFrame<'_>) -> Result<Vec<u8>, BinaryOutputError> {
    let id = frame.process_id.as_bytes();
    let id_len =
        u16::try_from(id.len()).map_err(|_| BinaryOutputError::ProcessIdTooLong(id.len()))?;
    let mut out = Vec::with_capacity(FIXED_HEADER_BYTES + id.len() + frame.chunk.len());
    out.push(FORMAT);
    out.push(stream_code(frame.stream));
    out.extend_from_slice(&frame.seq.to_be_bytes());
    out.extend_from_slice(&id_len.to_be_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(frame.chunk);
    Ok(out)
}

/// Parse a message; the result borrows from it. `chunk` is the message's tail.
pub fn decode(message: &[u8]) -> Result<OutputFrame<'_>, BinaryOutputError> {
    let truncated = |needed| BinaryOutputError::Truncated {
        len: message.len(),
        needed,
    };
    let Some((fixed, rest)) = message.split_first_chunk::<FIXED_HEADER_BYTES>() else {
        return Err(truncated(FIXED_HEADER_BYTES));
    };
    let [format, stream, s0, s1, s2, s3, s4, s5, s6, s7, l0, l1] = *fixed;
    if format != FORMAT {
        return Err(BinaryOutputError::UnsupportedFormat(format));
    }
    let stream = stream_from_code(stream)?;
    let seq = u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
    let id_len = usize::from(u16::from_be_bytes([l0, l1]));
    if rest.len() < id_len {
        return Err(truncated(FIXED_HEADER_BYTES + id_len));
    }
    let (id, chunk) = rest.split_at(id_len);
    let process_id = std::str::from_utf8(id).map_err(|_| BinaryOutputError::ProcessIdNotUtf8)?;
    Ok(OutputFrame {
        process_id,
        seq,
        stream,
        chunk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> OutputFrame<'static> {
        OutputFrame {
            process_id: "proc-é",
            seq: 0x0102_0304_0506_0708,
            stream: OutputStream::Stderr,
            chunk: b"\x00\xffraw bytes\n",
        }
    }

    #[test]
    fn round_trips_every_stream() {
        for stream in [
            OutputStream::Stdout,
            OutputStream::Stderr,
            OutputStream::Pty,
        ] {
            let frame = OutputFrame { stream, ..sample() };
            let bytes = encode(&frame).expect("encode");
            assert!(is_output_frame(&bytes));
            assert_eq!(decode(&bytes), Ok(frame));
        }
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let frame = OutputFrame {
            process_id: "p1",
            seq: 258,
            stream: OutputStream::Pty,
            chunk: b"hi",
        };
        let bytes = encode(&frame).expect("encode");
        assert_eq!(bytes, b"\x01\x02\0\0\0\0\0\0\x01\x02\0\x02p1hi");
    }

    #[test]
    fn empty_process_id_and_empty_chunk_are_well_formed() {
        let frame = OutputFrame {
            process_id: "",
            seq: 1,
            stream: OutputStream::Stdout,
            chunk: b"",
        };
        let bytes = encode(&frame).expect("encode");
        assert_eq!(bytes.len(), FIXED_HEADER_BYTES);
        assert_eq!(decode(&bytes), Ok(frame));
    }

    #[test]
    fn every_truncation_of_the_header_is_refused() {
        let bytes = encode(&sample()).expect("encode");
        let header = FIXED_HEADER_BYTES + sample().process_id.len();
        for len in 0..header {
            let err = decode(&bytes[..len]).expect_err("truncated header must fail");
            assert!(
                matches!(err, BinaryOutputError::Truncated { .. }),
                "{len}: {err}"
            );
        }
        // Cutting into the payload only shortens the chunk.
        let decoded = decode(&bytes[..header]).expect("header alone");
        assert_eq!(decoded.chunk, b"");
    }

    #[test]
    fn malformed_headers_are_refused() {
        let good = encode(&sample()).expect("encode");
        let mut bad = good.clone();
        bad[0] = 2;
        assert_eq!(decode(&bad), Err(BinaryOutputError::UnsupportedFormat(2)));
        bad[0] = b'{';
        assert!(!is_output_frame(&bad));
        assert_eq!(
            decode(&bad),
            Err(BinaryOutputError::UnsupportedFormat(b'{'))
        );
        let mut bad = good.clone();
        bad[1] = 3;
        assert_eq!(decode(&bad), Err(BinaryOutputError::UnknownStream(3)));
        let mut bad = good.clone();
        bad[FIXED_HEADER_BYTES] = 0xff;
        assert_eq!(decode(&bad), Err(BinaryOutputError::ProcessIdNotUtf8));
        let mut bad = good;
        bad[10] = 0xff;
        bad[11] = 0xff;
        assert!(matches!(
            decode(&bad),
            Err(BinaryOutputError::Truncated { needed, .. }) if needed == FIXED_HEADER_BYTES + 0xffff
        ));
        assert!(!is_output_frame(b""));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        // A cheap deterministic fuzz over short messages with a valid format byte.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let mut message: Vec<u8> = (0..len)
                .map(|i| (state.rotate_left(i as u32 * 5) & 0xff) as u8)
                .collect();
            if let Some(first) = message.first_mut() {
                *first = FORMAT;
            }
            if let Ok(frame) = decode(&message) {
                assert!(frame.chunk.len() <= message.len());
            }
        }
    }

    #[test]
    fn an_overlong_process_id_cannot_be_encoded() {
        let id = "x".repeat(65_536);
        let frame = OutputFrame {
            process_id: &id,
            ..sample()
        };
        assert_eq!(
            encode(&frame),
            Err(BinaryOutputError::ProcessIdTooLong(65_536))
        );
        let id = "x".repeat(65_535);
        let frame = OutputFrame {
            process_id: &id,
            ..sample()
        };
        assert_eq!(decode(&encode(&frame).expect("fits")), Ok(frame));
    }
}
