//! A small HTTP/1.1 origin on loopback for the `http/request` scenarios: fixed routes, one
//! request per connection (`connection: close`), and a record of what it was sent.
//!
//! Routes: `/hello` (a short body), `/echo` (the request's head and body back),
//! `/big` ([`BIG_LEN`] bytes of [`big_body`]), `/gzip` ([`GZIPPED`]), `/slow` (answers after 10 s), `/redirect`
//! (302 to `/hello`), `/missing` (404), `/broken` (promises 100 bytes, sends 10 and
//! closes), `/hold` (sends its head and `first`, then the rest once [`Origin::release`] is
//! called; counts the callers that hang up on it meanwhile, see [`Origin::hung_up_on`]).

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Length of `/big`: more than three 1 MiB deltas.
pub const BIG_LEN: usize = 3 * 1024 * 1024 + 5;

/// `/gzip` serves `zipped-body`, gzip-encoded (`content-encoding: gzip`) whether asked or not.
pub const GZIPPED: &[u8] = &[
    31, 139, 8, 0, 0, 0, 0, 0, 2, 255, 171, 202, 44, 40, 72, 77, 209, 77, 202, 79, 169, 4, 0, 113,
    215, 93, 143, 11, 0, 0, 0,
];

/// The bytes `/big` serves: a fixed pattern, so any misplaced slice shows.
pub fn big_body() -> Vec<u8> {
    (0..BIG_LEN).map(|i| (i * 31 % 251) as u8).collect()
}

pub struct Origin {
    pub addr: SocketAddr,
    released: watch::Sender<bool>,
    hung_up: Arc<watch::Sender<usize>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Origin {
    pub async fn start() -> Result<Origin> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (released, release_rx) = watch::channel(false);
        let hung_up = Arc::new(watch::Sender::new(0));
        let counter = Arc::clone(&hung_up);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let release = release_rx.clone();
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let _ = serve(stream, release, counter).await;
                });
            }
        });
        Ok(Origin {
            addr,
            released,
            hung_up,
            accept,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Let every `/hold` response finish.
    pub fn release(&self) {
        let _ = self.released.send(true);
    }

    /// Wait until a caller closes its connection while `/hold` is waiting; false at the
    /// deadline.
    pub async fn hung_up_on(&self, deadline: tokio::time::Instant) -> bool {
        let mut count = self.hung_up.subscribe();
        tokio::time::timeout_at(deadline, count.wait_for(|n| *n > 0))
            .await
            .is_ok_and(|seen| seen.is_ok())
    }
}

async fn serve(
    mut stream: TcpStream,
    mut release: watch::Receiver<bool>,
    hung_up: Arc<watch::Sender<usize>>,
) -> Result<()> {
    let (head, body) = read_request(&mut stream).await?;
    let path = head
        .split_whitespace()
        .nth(1)
        .context("request line without a path")?
        .to_owned();
    let respond = |status: &str, extra: &str, body: &[u8]| {
        let mut out = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    };
    let reply = match path.as_str() {
        "/hello" => respond("200 OK", "x-origin: test\r\n", b"hello-body\n"),
        "/echo" => {
            let mut echoed = head.clone().into_bytes();
            echoed.extend_from_slice(&body);
            respond("200 OK", "", &echoed)
        }
        "/big" => respond("200 OK", "", &big_body()),
        "/gzip" => respond("200 OK", "content-encoding: gzip\r\n", GZIPPED),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            respond("200 OK", "", b"late")
        }
        "/redirect" => respond("302 Found", "location: /hello\r\n", b""),
        "/broken" => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\n0123456789")
                .await?;
            return Ok(());
        }
        "/hold" => {
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nconnection: close\r\n\r\nfirst",
                )
                .await?;
            let mut probe = [0u8; 1];
            tokio::select! {
                _ = async { drop(release.wait_for(|released| *released).await) } => {
                    stream.write_all(b"-last").await?;
                }
                // The caller went away (its read ends, or its socket was reset).
                read = stream.read(&mut probe) => {
                    if matches!(read, Ok(0) | Err(_)) {
                        hung_up.send_modify(|n| *n += 1);
                    }
                }
            }
            return Ok(());
        }
        _ => respond("404 Not Found", "", b"not here"),
    };
    stream.write_all(&reply).await?;
    stream.shutdown().await?;
    Ok(())
}

/// The request head (as text) and its body (by `content-length`).
async fn read_request(stream: &mut TcpStream) -> Result<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!("closed before the end of the request head");
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = data[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!("closed before the end of the request body");
        }
        body.extend_from_slice(&buf[..n]);
    }
    Ok((head, body))
}
