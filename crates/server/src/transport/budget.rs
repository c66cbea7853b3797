//! The inbound memory budget: the bytes of WebSocket frames being received or decoded,
//! across all connections, never exceed `--max-inbound-bytes`.
//!
//! [`BudgetedReader`] is the read side under tungstenite on each upgraded connection; it reads the
//! frame headers as they pass. A data frame's header is held back until its payload length
//! is reserved from the server-wide [`InboundBudget`]; tungstenite allocates a frame's
//! buffer when it parses the header, so nothing is allocated for a frame that has no budget.
//! The connection simply stops reading while it waits (its peer sees backpressure; other
//! connections carry on). Each reservation goes into the connection's [`FrameLedger`] and
//! is returned when the reader has handled the message the frame belongs to. A frame larger
//! than the whole budget is refused (the read fails and the connection closes); frames over
//! `--max-frame-bytes` pass unreserved, for tungstenite to refuse from their header.

use crate::sync::lock;
use bytes::{Buf, BytesMut};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// Bytes read from the socket per call (requests and stdin are small).
const READ_CHUNK: usize = crate::config::INBOUND_READ_BUFFER_BYTES;
/// The longest WebSocket frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;

/// The server-wide pool of inbound bytes.
pub struct InboundBudget {
    permits: Arc<Semaphore>,
    total: usize,
}

impl InboundBudget {
    pub fn new(total: usize) -> Arc<Self> {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(total)),
            total,
        })
    }
}

/// A connection's reservations, in frame order, until the reader has handled their message.
#[derive(Default)]
pub struct FrameLedger {
    frames: Mutex<VecDeque<Reserved>>,
}

struct Reserved {
    fin: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl FrameLedger {
    /// The reader handled one text or binary message: return its frames' reservations.
    pub fn message_handled(&self) {
        let mut frames = lock(&self.frames);
        while let Some(frame) = frames.pop_front() {
            if frame.fin {
                break;
            }
        }
    }
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

enum Scan {
    /// Collecting a header; none of its bytes passed on yet.
    Header {
        bytes: [u8; MAX_HEADER],
        have: usize,
    },
    /// A complete header waiting for its payload's reservation.
    Reserving {
        header: Header,
        acquire: Acquire,
    },
    /// Passing the header on, then `payload` bytes.
    PassingHeader {
        header: Header,
        sent: usize,
    },
    Payload {
        remaining: u64,
    },
}

#[derive(Clone, Copy)]
struct Header {
    bytes: [u8; MAX_HEADER],
    len: usize,
    payload: u64,
    fin: bool,
    data: bool,
}

impl Header {
    /// The header's total length once its first two bytes are known.
    fn length(first_two: [u8; 2]) -> usize {
        let extended = match first_two[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if first_two[1] & 0x80 != 0 { 4 } else { 0 };
        2 + extended + mask
    }

    fn parse(bytes: [u8; MAX_HEADER], len: usize) -> Self {
        let payload = match bytes[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([bytes[2], bytes[3]])),
            127 => u64::from_be_bytes(bytes[2..10].try_into().unwrap_or_default()),
            short => u64::from(short),
        };
        let opcode = bytes[0] & 0x0f;
        Self {
            bytes,
            len,
            payload,
            fin: bytes[0] & 0x80 != 0,
            data: opcode <= 2,
        }
    }
}

pub struct BudgetedReader<S> {
    inner: S,
    budget: Arc<InboundBudget>,
    ledger: Arc<FrameLedger>,
    max_frame_bytes: usize,
    buffer: BytesMut,
    scan: Scan,
}

impl<S> BudgetedReader<S> {
    pub fn new(
        inner: S,
        budget: Arc<InboundBudget>,
        ledger: Arc<FrameLedger>,
        max_frame_bytes: usize,
    ) -> Self {
        Self {
            inner,
            budget,
            ledger,
            max_frame_bytes,
            buffer: BytesMut::new(),
            scan: Scan::Header {
                bytes: [0; MAX_HEADER],
                have: 0,
            },
        }
    }

    /// A complete header: reserve its payload (data frames within the frame limit), or
    /// pass it on at once.
    fn on_header(&mut self, header: Header) -> io::Result<Scan> {
        if !header.data {
            return Ok(Scan::PassingHeader { header, sent: 0 });
        }
        let reservable = header.payload > 0 && header.payload <= self.max_frame_bytes as u64;
        if !reservable {
            self.record(header.fin, None);
            return Ok(Scan::PassingHeader { header, sent: 0 });
        }
        let wanted = u32::try_from(header.payload)
            .ok()
            .filter(|&n| n as usize <= self.budget.total)
            .ok_or_else(|| {
                io::Error::other(format!(
                    "a frame of {} bytes exceeds the server's inbound memory budget of {} bytes",
                    header.payload, self.budget.total
                ))
            })?;
        let acquire = Box::pin(Arc::clone(&self.budget.permits).acquire_many_owned(wanted));
        Ok(Scan::Reserving { header, acquire })
    }

    fn record(&self, fin: bool, permit: Option<OwnedSemaphorePermit>) {
        lock(&self.ledger.frames).push_back(Reserved {
            fin,
            _permit: permit,
        });
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BudgetedReader<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let start = out.filled().len();
        loop {
            if out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match &mut this.scan {
                Scan::Reserving { header, acquire } => {
                    if out.filled().len() > start {
                        // Deliver what is ready before waiting for room.
                        return Poll::Ready(Ok(()));
                    }
                    let permit = ready!(acquire.as_mut().poll(cx))
                        .map_err(|_| io::Error::other("the inbound memory budget is closed"))?;
                    let header = *header;
                    this.record(header.fin, Some(permit));
                    this.scan = Scan::PassingHeader { header, sent: 0 };
                    continue;
                }
                Scan::PassingHeader { header, sent } => {
                    let n = (header.len - *sent).min(out.remaining());
                    out.put_slice(&header.bytes[*sent..*sent + n]);
                    *sent += n;
                    if *sent == header.len {
                        this.scan = Scan::Payload {
                            remaining: header.payload,
                        };
                    }
                    continue;
                }
                Scan::Payload { remaining: 0 } => {
                    this.scan = Scan::Header {
                        bytes: [0; MAX_HEADER],
                        have: 0,
                    };
                    continue;
                }
                _ if this.buffer.is_empty() => {
                    if out.filled().len() > start {
                        return Poll::Ready(Ok(()));
                    }
                    this.buffer.reserve(READ_CHUNK);
                    if !ready!(poll_fill(&mut this.inner, cx, &mut this.buffer))? {
                        // End of stream: hand on a partial header, for tungstenite to judge.
                        if let Scan::Header { bytes, have } = &mut this.scan {
                            out.put_slice(&bytes[..*have]);
                            *have = 0;
                        }
                        return Poll::Ready(Ok(()));
                    }
                    continue;
                }
                Scan::Payload { remaining } => {
                    let n = (*remaining).min(this.buffer.len() as u64) as usize;
                    let n = n.min(out.remaining());
                    out.put_slice(&this.buffer[..n]);
                    this.buffer.advance(n);
                    *remaining -= n as u64;
                    continue;
                }
                Scan::Header { bytes, have } => {
                    let needed = if *have < 2 {
                        2
                    } else {
                        Header::length([bytes[0], bytes[1]])
                    };
                    let n = (needed - *have).min(this.buffer.len());
                    bytes[*have..*have + n].copy_from_slice(&this.buffer[..n]);
                    this.buffer.advance(n);
                    *have += n;
                    if *have >= 2 && *have == Header::length([bytes[0], bytes[1]]) {
                        let header = Header::parse(*bytes, *have);
                        this.scan = this.on_header(header)?;
                    }
                    continue;
                }
            }
        }
    }
}

/// Read once from `inner` into the spare capacity of `buffer`; false at end of stream.
fn poll_fill<S: AsyncRead + Unpin>(
    inner: &mut S,
    cx: &mut Context<'_>,
    buffer: &mut BytesMut,
) -> Poll<io::Result<bool>> {
    let spare = buffer.spare_capacity_mut();
    let room = spare.len().min(READ_CHUNK);
    let mut read = ReadBuf::uninit(&mut spare[..room]);
    ready!(Pin::new(inner).poll_read(cx, &mut read))?;
    let n = read.filled().len();
    // SAFETY: `poll_read` initialized the first `n` bytes of the spare capacity.
    unsafe { buffer.set_len(buffer.len() + n) };
    Poll::Ready(Ok(n > 0))
}

#[cfg(test)]
impl InboundBudget {
    /// Bytes reserved right now.
    fn in_use(&self) -> usize {
        self.total - self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A masked client frame with `payload`.
    fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![opcode | if fin { 0x80 } else { 0 }];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend((n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend((n as u64).to_be_bytes());
            }
        }
        out.extend([0, 0, 0, 0]); // a zero mask leaves the payload as is
        out.extend(payload);
        out
    }

    #[tokio::test]
    async fn bytes_pass_unchanged_and_frames_are_reserved_until_handled() {
        let budget = InboundBudget::new(100_000);
        let ledger = Arc::new(FrameLedger::default());
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut stream = BudgetedReader::new(server, budget.clone(), ledger.clone(), 1 << 20);
        let mut wire = frame(1, false, &[b'a'; 300]);
        wire.extend(frame(0x9, true, b"ping")); // a control frame in between
        wire.extend(frame(0, true, &[b'b'; 70_000]));
        wire.extend(frame(2, true, b"next"));
        client.write_all(&wire).await.expect("write");
        let mut got = vec![0; wire.len()];
        stream.read_exact(&mut got).await.expect("read");
        assert_eq!(got, wire);
        assert_eq!(budget.in_use(), 300 + 70_000 + 4);
        ledger.message_handled();
        assert_eq!(budget.in_use(), 4, "the fragmented message's two frames");
        ledger.message_handled();
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_frame_waits_for_room_without_passing_its_header() {
        let budget = InboundBudget::new(1000);
        let ledger = Arc::new(FrameLedger::default());
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut stream = BudgetedReader::new(server, budget.clone(), ledger.clone(), 1 << 16);
        let first = frame(1, true, &[b'x'; 600]);
        let second = frame(1, true, &[b'y'; 600]);
        client.write_all(&first).await.expect("write");
        client.write_all(&second).await.expect("write");
        let mut got = vec![0; first.len()];
        stream.read_exact(&mut got).await.expect("first frame");
        let mut more = [0u8; 1];
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), stream.read(&mut more))
                .await;
        assert!(waiting.is_err(), "the second header must wait for budget");
        ledger.message_handled();
        let mut rest = vec![0; second.len()];
        stream.read_exact(&mut rest).await.expect("second frame");
        assert_eq!(rest, second);
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_whole_budget_is_refused() {
        let budget = InboundBudget::new(1000);
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut stream = BudgetedReader::new(server, budget, Arc::default(), 1 << 16);
        client
            .write_all(&frame(2, true, &[0; 2000]))
            .await
            .expect("write");
        let mut got = vec![0; 16];
        let err = stream.read(&mut got).await.expect_err("refused");
        assert!(err.to_string().contains("inbound memory budget"), "{err}");
    }
}
