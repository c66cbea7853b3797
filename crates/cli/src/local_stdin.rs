//! Our stdin, for `rexec run`: read ahead from the moment the command line is parsed, so a
//! short input (`echo hi | rexec run -- cat`) is complete by the time the connection is up
//! and rides in the same flight as `process/start`; a long or endless one is forwarded in
//! batches of whatever has arrived, the last batch and the close in one request.

use bytes::{Bytes, BytesMut};
use rexec_client::{Process, WriteStatus};
use std::collections::VecDeque;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Bytes per read.
const READ_CHUNK: usize = 64 * 1024;
/// Chunks held while the connection is set up or a write is in flight (4 MiB); the reader
/// waits beyond that.
const READ_AHEAD_CHUNKS: usize = 64;
/// The most bytes one forwarding write gathers.
const WRITE_BATCH: usize = 1024 * 1024;

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

    /// Copy the rest of the input to the process, then close its stdin. Whatever has
    /// arrived goes in one write (up to 1 MiB, while the next one is read ahead), so a long
    /// input moves a batch per round trip rather than a read; a batch known to be the last
    /// (the input had ended when it was sent) carries the close, saving a round trip.
    pub async fn forward(mut self, process: Process) {
        let mut taken: VecDeque<Bytes> = std::mem::take(&mut self.taken).into();
        loop {
            let first = match taken.pop_front() {
                Some(chunk) => chunk,
                None => match self.chunks.recv().await {
                    Some(chunk) => chunk,
                    None => {
                        let _ = process.close_stdin().await;
                        return;
                    }
                },
            };
            let mut batch = BytesMut::from(&first[..]);
            let mut ended = false;
            while batch.len() < WRITE_BATCH {
                let next = match taken.pop_front() {
                    Some(chunk) => chunk,
                    None => match self.chunks.try_recv() {
                        Ok(chunk) => chunk,
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            ended = true;
                            break;
                        }
                    },
                };
                batch.extend_from_slice(&next);
            }
            if ended {
                let _ = process.write_last(&batch).await;
                return;
            }
            // Anything but `accepted` (the command closed its stdin or is gone) ends it.
            if !matches!(process.write(&batch).await, Ok(WriteStatus::Accepted)) {
                return;
            }
        }
    }
}
