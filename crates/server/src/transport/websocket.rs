//! One upgraded WebSocket connection: a reader that never stops reading frames for long,
//! a batching writer with pings, and dead-peer detection that neither can fool.
//!
//! Inbound text and binary frames both carry JSON and go to the [`Connection`] in wire
//! order; ping, pong and close are handled as they arrive. The server writes JSON as text
//! frames and, for a client that negotiated `process/output.binary`, output as binary
//! frames; the writer sends whatever is queued with one flush. The socket under tungstenite
//! reserves every inbound frame from the server-wide budget (`budget`) and counts outbound
//! bytes (`liveness`). The connection ends when the peer closes, when the reader fails, or
//! when the writer gives up on the peer (a ping unanswered for a whole interval while the
//! reader listened, or a write that moved no byte for a whole interval) — whichever comes
//! first; then the session detaches and can be resumed at once.

use super::budget::{BudgetedReader, FrameLedger};
use super::listener::AcceptedConnection;
use super::liveness::{CountingWriter, Liveness, Verdict};
use crate::auth::Principal;
use crate::connection::{Connection, Flow};
use crate::outbound::{self, FrameReceiver, OutboundFrame};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, Join, ReadHalf, WriteHalf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// How long a connection the reader ended may take to send what was already queued.
const CLOSE_FLUSH_GRACE: Duration = Duration::from_secs(1);

type Socket<S> = WebSocketStream<Join<BudgetedReader<ReadHalf<S>>, CountingWriter<WriteHalf<S>>>>;

pub async fn run<S>(accepted: AcceptedConnection, principal: Principal, io: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let AcceptedConnection {
        state, peer, place, ..
    } = accepted;
    let server = Arc::clone(&state.server);
    let config = &server.config;
    let liveness = Arc::new(Liveness::default());
    let ledger = Arc::new(FrameLedger::default());
    let (reader, writer) = tokio::io::split(io);
    let reader = BudgetedReader::new(
        reader,
        Arc::clone(&state.budget),
        Arc::clone(&ledger),
        config.max_frame_bytes,
    );
    let io = tokio::io::join(reader, CountingWriter::new(writer, Arc::clone(&liveness)));
    let websocket = WebSocketConfig::default()
        .max_message_size(Some(config.max_frame_bytes))
        .max_frame_size(Some(config.max_frame_bytes))
        .read_buffer_size(crate::config::INBOUND_READ_BUFFER_BYTES);
    let socket: Socket<S> =
        WebSocketStream::from_raw_socket(io, Role::Server, Some(websocket)).await;
    tracing::info!(%peer, %principal, "websocket connected");
    let (sink, stream) = socket.split();
    let (outbound, queue) = outbound::channel();
    let ping_interval = config.ping_interval;
    let mut writer = tokio::spawn(write_frames(
        sink,
        queue,
        ping_interval,
        Arc::clone(&liveness),
    ));
    let prefix =
        format!("failed to parse websocket JSON-RPC message from exec-server websocket {peer}");
    let mut connection = Connection::new(server, outbound, prefix, principal).with_binary_output();
    tokio::select! {
        () = read_frames(&mut connection, stream, &liveness, &ledger) => {
            // The answers already queued still leave (the refusal of a handshake that a
            // protocol violation then ended, say): the writer drains the queue once every
            // sender is gone, within a grace.
            connection.finish();
            if tokio::time::timeout(CLOSE_FLUSH_GRACE, &mut writer).await.is_err() {
                writer.abort();
            }
        }
        verdict = &mut writer => {
            match verdict {
                Ok(Verdict::Silent) => tracing::info!(%peer, "dropping a websocket peer that answered no ping for {ping_interval:?}"),
                Ok(Verdict::Stalled) => tracing::info!(%peer, "dropping a websocket peer that accepted no byte for {ping_interval:?}"),
                _ => tracing::debug!(%peer, "websocket writer ended"),
            }
            connection.finish();
        }
    }
    drop(place);
    tracing::debug!(%peer, "websocket disconnected");
}

async fn read_frames<S>(
    connection: &mut Connection,
    mut stream: SplitStream<Socket<S>>,
    liveness: &Liveness,
    ledger: &FrameLedger,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(message) = stream.next().await {
        liveness.heard();
        liveness.set_reader_busy(true);
        let flow = match message {
            Ok(Message::Text(text)) => {
                let flow = connection.handle_frame(text.as_bytes()).await;
                drop(text);
                ledger.message_handled();
                flow
            }
            Ok(Message::Binary(bytes)) => {
                let flow = connection.handle_frame(&bytes).await;
                drop(bytes);
                ledger.message_handled();
                flow
            }
            Ok(Message::Close(_)) => Flow::Close,
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => Flow::Continue,
            Err(err) => {
                tracing::debug!(%err, "websocket read failed");
                Flow::Close
            }
        };
        liveness.set_reader_busy(false);
        if flow == Flow::Close {
            return;
        }
    }
}

/// Drain the outbound queue and ping every `ping_interval`, until the queue closes, the
/// socket fails, or the peer is judged gone (the verdict says why).
async fn write_frames<S>(
    mut sink: SplitSink<Socket<S>, Message>,
    mut queue: FrameReceiver,
    ping_interval: Duration,
    liveness: Arc<Liveness>,
) -> Verdict
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut pings =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            frame = queue.recv() => {
                let Some(frame) = frame else { break };
                outbound::drain_ready(frame, &mut queue, &mut batch);
                let send = async {
                    for frame in batch.drain(..) {
                        let message = match frame {
                            OutboundFrame::Text(text) => Message::Text(text.into()),
                            OutboundFrame::Binary(bytes) => Message::Binary(bytes),
                        };
                        sink.feed(message).await?;
                    }
                    sink.flush().await
                };
                match liveness.progressing(send, ping_interval).await {
                    Some(Ok(())) => {}
                    Some(Err(_)) => return Verdict::Alive,
                    None => return Verdict::Stalled,
                }
            }
            _ = pings.tick() => {
                if liveness.ping_tick() == Verdict::Silent {
                    return Verdict::Silent;
                }
                match liveness.progressing(sink.send(Message::Ping(Default::default())), ping_interval).await {
                    Some(Ok(())) => {}
                    Some(Err(_)) => return Verdict::Alive,
                    None => return Verdict::Stalled,
                }
            }
        }
    }
    let _ = sink.close().await;
    Verdict::Alive
}
