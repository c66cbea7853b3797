//! A latency-injecting TCP proxy: each direction of each connection is delayed by RTT/2
//! (plus optional jitter), byte order is kept, and throughput is not capped — bytes are
//! forwarded as soon as they are due, however many are in flight. Both sockets have
//! TCP_NODELAY, so the proxy adds no Nagle stalls of its own. Use it to put a controlled
//! wide-area link between a client and a server on one machine (`tc netem` is unavailable
//! here).

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

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
    let server = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("proxy: failed to connect to {upstream}"))?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = delayed_pipe(client_read, server_write, link, seed);
    let down = delayed_pipe(server_read, client_write, link, seed.rotate_left(17));
    let _ = tokio::join!(up, down);
    Ok(())
}

/// Chunks in flight per direction before the reader waits (a bound on memory, far above
/// what any RTT here keeps in flight).
const IN_FLIGHT_CHUNKS: usize = 4096;

async fn delayed_pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, link: Link, seed: u64) {
    let (sender, mut due) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT_CHUNKS);
    let one_way = link.rtt / 2;
    let reader = async move {
        let mut noise = seed | 1;
        let mut last_due = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
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
            if sender.send((last_due, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, bytes)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
