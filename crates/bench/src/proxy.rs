//! A latency-injecting TCP proxy: each direction of each connection is delayed by RTT/2
//! (plus optional jitter), byte order is kept, and throughput is not capped — bytes are
//! forwarded as soon as they are due, however many are in flight. Both sockets have
//! TCP_NODELAY, so the proxy adds no Nagle stalls of its own. Each direction of each
//! connection is two OS threads (read and stamp; sleep and write), so the delay is precise
//! to tens of microseconds and independent of how busy the async runtime is. Use it to put
//! a controlled wide-area link between a client and a server on one machine (`tc netem` is
//! unavailable here). The TCP handshake itself is not delayed: the kernel completes it
//! before the proxy accepts.

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
    let server = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("proxy: failed to connect to {upstream}"))?;
    let (client, server) = (client.into_std()?, server.into_std()?);
    for socket in [&client, &server] {
        socket.set_nonblocking(false)?;
        socket.set_nodelay(true)?;
    }
    let (client_read, server_read) = (client.try_clone()?, server.try_clone()?);
    let up = delayed_pipe(client_read, server, link, seed)?;
    let down = delayed_pipe(server_read, client, link, seed.rotate_left(17))?;
    tokio::task::spawn_blocking(move || {
        for thread in up.into_iter().chain(down) {
            let _ = thread.join();
        }
    })
    .await?;
    Ok(())
}

/// Chunks in flight per direction before the reader waits (a bound on memory, far above
/// what any RTT here keeps in flight).
const IN_FLIGHT_CHUNKS: usize = 4096;

/// Forwards `from` to `to`, each chunk when it is due. A reader thread stamps each chunk
/// with its due time; a writer thread sleeps until then (OS sleep: tens of microseconds of
/// error, where a runtime timer rounds up to the next millisecond) and writes it.
fn delayed_pipe(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    link: Link,
    seed: u64,
) -> Result<[std::thread::JoinHandle<()>; 2]> {
    let (sender, due) = std::sync::mpsc::sync_channel::<(Instant, Vec<u8>)>(IN_FLIGHT_CHUNKS);
    let one_way = link.rtt / 2;
    let reader = std::thread::Builder::new()
        .name("proxy-read".to_owned())
        .spawn(move || {
            let mut noise = seed | 1;
            let mut last_due = Instant::now();
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
        })?;
    let writer = std::thread::Builder::new()
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
        })?;
    Ok([reader, writer])
}
