//! The WebSocket upgrade with the first frames pipelined behind it: the client writes its
//! HTTP upgrade request and, without waiting for `101 Switching Protocols`, the first
//! WebSocket frames of the connection (`initialize`, `initialized`, and whatever the
//! caller wants in the same flight). Connecting then costs one round trip instead of two.
//!
//! tokio-tungstenite runs the upgrade itself (request, 101, `Sec-WebSocket-Accept`, 401 as
//! an HTTP error), on a [`Pipelined`] stream that writes the pre-encoded frames the moment
//! the handshake turns from writing the request to reading the response. The frames are
//! masked with a fresh random key each, as client frames must be. A server reads them after
//! the request like any bytes that follow it on the socket (hyper hands them to the
//! upgraded connection, so rexec and codex take them); a server that refuses the upgrade
//! answers the request and never reads them as frames. tungstenite's own server handshake
//! hangs up on bytes behind the request; `transport` then upgrades again the classic way.

use super::tls::Socket;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// A socket (TCP, or TLS over it) that writes `early` bytes before its first read, then
/// passes through.
pub(crate) struct Pipelined {
    tcp: Socket,
    early: Vec<u8>,
    written: usize,
}

impl Pipelined {
    /// `frames` become masked text frames, sent right behind whatever is written first.
    pub(crate) fn new(tcp: Socket, frames: &[String]) -> Self {
        let mut early = Vec::with_capacity(frames.iter().map(|f| f.len() + 14).sum());
        for text in frames {
            let mut frame = Frame::message(text.clone(), OpCode::Data(Data::Text), true);
            let key = uuid::Uuid::new_v4();
            let mask = key.as_bytes();
            frame.header_mut().mask = Some([mask[0], mask[1], mask[2], mask[3]]);
            // Formatting into a Vec cannot fail.
            let _ = frame.format(&mut early);
        }
        Self {
            tcp,
            early,
            written: 0,
        }
    }

    /// Write what is left of the early frames; `Ready(Ok)` once all of them are out.
    fn poll_early(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.early.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.early[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        if !self.early.is_empty() {
            // Through TLS, written bytes may wait in the session until flushed.
            ready!(Pin::new(&mut self.tcp).poll_flush(cx))?;
            self.early = Vec::new();
            self.written = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Pipelined {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The upgrade request is out (the handshake reads only after writing it all).
        ready!(this.poll_early(cx))?;
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Pipelined {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
