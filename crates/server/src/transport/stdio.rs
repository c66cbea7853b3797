//! The stdio transport: one JSON-RPC message per line on stdin and stdout. One connection;
//! when stdin ends the server ends (its caller kills every child). Lines are text, so this
//! transport never grants `process/output.binary`: output stays JSON.
//!
//! A line longer than `--max-frame-bytes` is answered (id -1, -32600, naming the limit) and
//! skipped up to the next newline: at most the limit is ever buffered, and the server keeps
//! serving the lines after it.

use crate::Server;
use crate::auth::Principal;
use crate::connection::{Connection, Flow};
use crate::outbound::{self, FrameReceiver, OutboundFrame};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Decoder};

/// Bytes read from stdin per call.
const READ_CHUNK: usize = 64 * 1024;

/// Newline-delimited lines of at most `max` bytes; longer ones are reported once and
/// skipped to their end. (`FramedRead` ends its stream after a decoder error, so the codec
/// is driven here directly.)
pub struct Lines<R> {
    input: R,
    codec: AnyDelimiterCodec,
    buffer: BytesMut,
    eof: bool,
}

/// One item of [`Lines`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Text(Bytes),
    TooLong,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    pub fn new(input: R, max: usize) -> Self {
        Self {
            input,
            codec: AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), Vec::new(), max),
            buffer: BytesMut::new(),
            eof: false,
        }
    }

    /// The next line; `Ok(None)` at end of input.
    pub async fn next(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let decoded = if self.eof {
                self.codec.decode_eof(&mut self.buffer)
            } else {
                self.codec.decode(&mut self.buffer)
            };
            match decoded {
                Ok(Some(line)) => return Ok(Some(Line::Text(line))),
                Err(AnyDelimiterCodecError::MaxChunkLengthExceeded) => {
                    return Ok(Some(Line::TooLong));
                }
                Err(AnyDelimiterCodecError::Io(err)) => return Err(err),
                Ok(None) if self.eof => return Ok(None),
                Ok(None) => {}
            }
            self.buffer.reserve(READ_CHUNK);
            if self.input.read_buf(&mut self.buffer).await? == 0 {
                self.eof = true;
            }
        }
    }
}

pub async fn serve(server: Arc<Server>) {
    let max = server.config.max_frame_bytes;
    let mut lines = Lines::new(tokio::io::stdin(), max);
    let (outbound, queue) = outbound::channel();
    let writer = tokio::spawn(write_lines(BufWriter::new(tokio::io::stdout()), queue));
    let mut connection = Connection::new(
        server,
        outbound,
        "failed to parse JSON-RPC message from stdio".to_owned(),
        Principal::stdio(),
    );
    loop {
        let flow = match lines.next().await {
            Ok(Some(Line::Text(line))) => {
                let line = line.strip_suffix(b"\r").unwrap_or(&line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                connection.handle_frame(line).await
            }
            Ok(Some(Line::TooLong)) => {
                connection
                    .reply_unparsable(&format!(
                        "message exceeds the limit of {max} bytes (--max-frame-bytes); skipped"
                    ))
                    .await;
                Flow::Continue
            }
            Ok(None) => Flow::Close,
            Err(err) => {
                tracing::debug!(%err, "stdin read failed");
                Flow::Close
            }
        };
        if flow == Flow::Close {
            break;
        }
    }
    connection.finish();
    // Let queued responses reach stdout before the server exits.
    let _ = writer.await;
}

async fn write_lines(mut out: impl AsyncWrite + Unpin, mut queue: FrameReceiver) {
    let mut batch = Vec::new();
    while let Some(frame) = queue.recv().await {
        outbound::drain_ready(frame, &mut queue, &mut batch);
        for frame in batch.drain(..) {
            let OutboundFrame::Text(line) = frame else {
                // Never queued here: the connection is not binary-capable.
                tracing::error!("dropping a binary frame queued for stdio");
                continue;
            };
            if out.write_all(line.as_bytes()).await.is_err() || out.write_all(b"\n").await.is_err()
            {
                return;
            }
        }
        if out.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_over_long_line_is_reported_once_and_skipped_without_being_buffered() {
        let max = 1024;
        let mut input = b"{\"a\":1}\n".to_vec();
        input.extend(vec![b'x'; 200 * max]);
        input.extend(b"\n{\"b\":2}\nlast");
        // Feed it in small pieces, as a pipe would.
        let (mut tx, rx) = tokio::io::duplex(4096);
        let writer = tokio::spawn(async move { tx.write_all(&input).await });
        let mut lines = Lines::new(rx, max);
        let mut seen = Vec::new();
        while let Some(line) = lines.next().await.expect("read") {
            assert!(
                lines.buffer.capacity() <= max + 2 * READ_CHUNK,
                "buffered too much"
            );
            seen.push(line);
        }
        writer.await.expect("writer").expect("write");
        assert_eq!(
            seen,
            vec![
                Line::Text(Bytes::from_static(b"{\"a\":1}")),
                Line::TooLong,
                Line::Text(Bytes::from_static(b"{\"b\":2}")),
                Line::Text(Bytes::from_static(b"last")),
            ]
        );
    }
}
