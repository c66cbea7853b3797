//! Our stdin, for `rexec run`: read ahead from the moment the command line is parsed, so a
//! short input (`echo hi | rexec run -- cat`) is complete by the time the connection is up
//! and rides in the same flight as `process/start`; a long or endless one is forwarded
//! chunk by chunk, with the last chunk and the close in one request.

use bytes::{Bytes, BytesMut};
use rexec_client::Process;
use rexec_protocol::process::WriteStatus;
use std::collections::VecDeque;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Bytes per read.
const READ_CHUNK: usize = 64 * 1024;
/// Chunks held while the connection is set up (4 MiB); the reader waits beyond that.
const READ_AHEAD_CHUNKS: usize = 64;

pub struct LocalStdin {
    chunks: mpsc::Receiver<Bytes>,
    /// Chunks taken from the channel while checking for EOF, not yet forwarded.
    taken: Vec<Bytes>,
}

impl LocalStdin {
    /// Start reading our stdin now.
    pub fn read_ahead() -> Self {
        let (tx, chunks) = mpsc::channel(READ_AHEAD_CHUNKS);
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            loop {
                let mut buf = BytesMut::zeroed(READ_CHUNK);
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => return, // EOF (a read error ends the input too)
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.send(buf.freeze()).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Self {
            chunks,
            taken: Vec::new(),
        }
    }

    /// The whole input, if it has already ended; otherwise `None`, and nothing is lost.
    pub fn if_complete(&mut self) -> Option<Bytes> {
        loop {
            match self.chunks.try_recv() {
                Ok(chunk) => self.taken.push(chunk),
                Err(mpsc::error::TryRecvError::Empty) => return None,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Some(self.taken.concat().into());
                }
            }
        }
    }

    /// Copy the rest of the input to the process, then close its stdin. Each chunk is
    /// written as it arrives; one known to be the last (the input had ended when it was
    /// sent) carries the close, saving a round trip.
    pub async fn forward(mut self, process: Process) {
        let mut pending: VecDeque<Bytes> = std::mem::take(&mut self.taken).into();
        loop {
            let chunk = match pending.pop_front() {
                Some(chunk) => chunk,
                None => match self.chunks.recv().await {
                    Some(chunk) => chunk,
                    None => {
                        let _ = process.close_stdin().await;
                        return;
                    }
                },
            };
            if pending.is_empty() {
                match self.chunks.try_recv() {
                    Ok(more) => pending.push_back(more),
                    Err(mpsc::error::TryRecvError::Empty) => {}
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        let _ = process.write_last(&chunk).await;
                        return;
                    }
                }
            }
            // Anything but `accepted` (the command closed its stdin or is gone) ends it.
            if !matches!(process.write(&chunk).await, Ok(WriteStatus::Accepted)) {
                return;
            }
        }
    }
}
