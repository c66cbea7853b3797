//! A latency-injecting TCP proxy: each direction of each connection is delayed by RTT/2
//! (plus optional jitter), byte order is kept, and throughput is not capped — bytes are
//! forwarded as soon as they are due, however many are in flight. Both sockets have
//! TCP_NODELAY, so the proxy adds no Nagle stalls of its own. Each direction of each
//! connection is two OS threads (read and stamp; sleep and write), so the delay is precise
//! to tens of microseconds and independent of how busy the async runtime is. Use it to put
//! a controlled wide-area link between a client and a server on one machine (`tc netem` is
//! unavailable here).
//!
//! The TCP handshake is modelled too. The kernel completes the client's handshake with the
//! proxy at once, so the client's `connect` returns about one RTT earlier than on a real
//! link, and it may write at once. On a real link the SYN reaches the server after RTT/2,
//! the SYN-ACK the client after RTT (when `connect` returns), and the client's first bytes
//! the server after 1.5 RTT, where its `accept` returns with the final ACK. So the proxy
//! connects upstream 1.5 RTT after it accepted, and releases nothing the client wrote
//! before that moment: a client byte is due at `max(written + RTT/2, accepted + 1.5 RTT)`,
//! exactly as if it had been written when a real `connect` returned. A server that speaks
//! first is reached at 1.5 RTT and heard at 2 RTT, as on a real link. What cannot be
//! modelled in userspace is the client's `connect` call itself returning early; only the
//! time at which its bytes (and the answers to them) arrive is faithful.

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;
use std::time::Instant;
use tokio::net::{TcpListener, TcpStream};

/// The link to simulate.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub rtt: Duration,
    /// Each chunk is delayed by an extra uniform 0..=jitter (order is still kept).
    pub jitter: Duration,
}

/// A running proxy; dropping it stops accepting (open connections finish on their own).
pub struct Proxy {
    pub local_addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Listen on `listen` and forward every connection to `upstream` over `link`.
pub async fn start(listen: SocketAddr, upstream: SocketAddr, link: Link) -> Result<Proxy> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("proxy: failed to listen on {listen}"))?;
    let local_addr = listener.local_addr()?;
    let accept = tokio::spawn(async move {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        while let Ok((client, _)) = listener.accept().await {
            seed = seed.wrapping_add(0x632b_e59b_d9b4_e019);
            tokio::spawn(async move {
                if let Err(err) = relay(client, upstream, link, seed).await {
                    eprintln!("proxy: connection to {upstream} ended: {err:#}");
                }
            });
        }
    });
    Ok(Proxy { local_addr, accept })
}

async fn relay(client: TcpStream, upstream: SocketAddr, link: Link, seed: u64) -> Result<()> {
    // The SYN left the client a moment ago; the server would accept on the final ACK.
    let accepted_upstream = Instant::now() + link.rtt + link.rtt / 2;
    let client = client.into_std()?;
    client.set_nonblocking(false)?;
    client.set_nodelay(true)?;
    let (up, up_due) = channel();
    let up_reader = reader(client.try_clone()?, up, link, seed, accepted_upstream)?;
    tokio::task::spawn_blocking(move || -> Result<()> {
        std::thread::sleep(accepted_upstream.saturating_duration_since(Instant::now()));
        let server = match std::net::TcpStream::connect(upstream) {
            Ok(server) => server,
            Err(err) => {
                let _ = client.shutdown(std::net::Shutdown::Both);
                let _ = up_reader.join();
                return Err(err).with_context(|| format!("proxy: failed to connect to {upstream}"));
            }
        };
        server.set_nodelay(true)?;
        let up_writer = writer(up_due, server.try_clone()?)?;
        let (down, down_due) = channel();
        let down_reader = reader(server, down, link, seed.rotate_left(17), Instant::now())?;
        let down_writer = writer(down_due, client)?;
        for thread in [up_reader, up_writer, down_reader, down_writer] {
            let _ = thread.join();
        }
        Ok(())
    })
    .await?
}

/// Chunks in flight per direction before the reader waits (a bound on memory, far above
/// what any RTT here keeps in flight).
const IN_FLIGHT_CHUNKS: usize = 4096;

type Chunk = (Instant, Vec<u8>);

fn channel() -> (
    std::sync::mpsc::SyncSender<Chunk>,
    std::sync::mpsc::Receiver<Chunk>,
) {
    std::sync::mpsc::sync_channel(IN_FLIGHT_CHUNKS)
}

/// Reads `from` and stamps each chunk with its due time: RTT/2 (plus jitter) after it was
/// read, never before `not_before`, never before the previous chunk.
fn reader(
    mut from: std::net::TcpStream,
    sender: std::sync::mpsc::SyncSender<Chunk>,
    link: Link,
    seed: u64,
    not_before: Instant,
) -> Result<std::thread::JoinHandle<()>> {
    let one_way = link.rtt / 2;
    Ok(std::thread::Builder::new()
        .name("proxy-read".to_owned())
        .spawn(move || {
            let mut noise = seed | 1;
            let mut last_due = not_before;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                let jitter = match link.jitter.as_micros() as u64 {
                    0 => Duration::ZERO,
                    max => Duration::from_micros(noise % (max + 1)),
                };
                // Never earlier than the previous chunk: jitter must not reorder bytes.
                last_due = (Instant::now() + one_way + jitter).max(last_due);
                if sender.send((last_due, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        })?)
}

/// Writes each chunk to `to` when it is due (OS sleep: tens of microseconds of error, where
/// a runtime timer rounds up to the next millisecond), then passes the end of stream on.
fn writer(
    due: std::sync::mpsc::Receiver<Chunk>,
    mut to: std::net::TcpStream,
) -> Result<std::thread::JoinHandle<()>> {
    Ok(std::thread::Builder::new()
        .name("proxy-write".to_owned())
        .spawn(move || {
            while let Ok((at, bytes)) = due.recv() {
                let wait = at.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
                if to.write_all(&bytes).is_err() {
                    return;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes written the moment `connect` returns reach the server after 1.5 RTT, and the
    /// answer is back after 2 RTT — the TCP handshake's round trip plus the data's. Only
    /// lower bounds are asserted (the proxy sleeps at least that long); the upper bound is
    /// the test's deadline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_first_bytes_wait_for_the_modelled_handshake() {
        let rtt = Duration::from_millis(60);
        let server = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let upstream = server.local_addr().expect("addr");
        let proxy = start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream,
            Link {
                rtt,
                jitter: Duration::ZERO,
            },
        )
        .await
        .expect("proxy");
        let echo = tokio::spawn(async move {
            let (mut socket, _) = server.accept().await.expect("accept");
            let accepted = Instant::now();
            let mut byte = [0u8; 1];
            socket.read_exact(&mut byte).await.expect("read");
            socket.write_all(&byte).await.expect("echo");
            accepted
        });
        let work = async {
            let started = Instant::now();
            let mut client = TcpStream::connect(proxy.local_addr).await.expect("connect");
            client.write_all(b"x").await.expect("write");
            let mut byte = [0u8; 1];
            client.read_exact(&mut byte).await.expect("read the echo");
            let accepted = echo.await.expect("echo task");
            (accepted - started, started.elapsed())
        };
        let (accepted, answered) = tokio::time::timeout(Duration::from_secs(10), work)
            .await
            .expect("within the deadline");
        assert!(
            accepted >= rtt + rtt / 2,
            "upstream accepted after {accepted:?}"
        );
        assert!(answered >= rtt * 2, "the echo came back after {answered:?}");
    }
}
