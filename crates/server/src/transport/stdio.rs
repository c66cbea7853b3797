//! The stdio transport: one JSON-RPC message per line on stdin and stdout. One connection;
//! when stdin ends the server ends (its caller kills every child). Lines are text, so this
//! transport never grants `process/output.binary`: output stays JSON.

use crate::Server;
use crate::connection::{Connection, Flow};
use crate::outbound::{self, FrameReceiver, OutboundFrame};
use futures_util::StreamExt;
use std::sync::Arc;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, FramedRead};

pub async fn serve(server: Arc<Server>) {
    let max = server.config.max_frame_bytes;
    let codec = AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), Vec::new(), max);
    let mut lines = FramedRead::new(tokio::io::stdin(), codec);
    let (outbound, queue) = outbound::channel();
    let writer = tokio::spawn(write_lines(BufWriter::new(tokio::io::stdout()), queue));
    let mut connection = Connection::new(
        server,
        outbound,
        "failed to parse JSON-RPC message from stdio".to_owned(),
    );
    while let Some(line) = lines.next().await {
        let flow = match line {
            Ok(line) => {
                let line = line.strip_suffix(b"\r").unwrap_or(&line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                connection.handle_frame(line).await
            }
            Err(AnyDelimiterCodecError::MaxChunkLengthExceeded) => {
                connection
                    .reply_unparsable(&format!("message exceeds the limit of {max} bytes"))
                    .await;
                Flow::Continue
            }
            Err(AnyDelimiterCodecError::Io(err)) => {
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
