//! The servers of one measurement, ready for clients: each started from its spec (or given
//! by URL) and, with `--rtt-ms`, reached through its own latency-injecting proxy.

use anyhow::{Context, Result, anyhow};
use rexec_client::{Client, ClientOptions, Endpoint, TlsOptions};
use std::net::SocketAddr;

use crate::proxy::{self, Link, Proxy};
use crate::server::{RunningServer, ServerSpec};

/// The `clientName` every benchmark client sends in `initialize`.
pub const CLIENT_NAME: &str = "rexec-bench";

/// Options of a benchmark client: the library's defaults (binary output asked for) under
/// our `clientName`, trusting the CA in `REXEC_CA_FILE` for `wss://` servers.
pub fn client_options() -> ClientOptions {
    ClientOptions {
        client_name: CLIENT_NAME.to_owned(),
        tls: TlsOptions {
            ca_file: std::env::var_os("REXEC_CA_FILE").map(Into::into),
            ..TlsOptions::default()
        },
        ..ClientOptions::default()
    }
}

/// [`client_options`] with the negotiated binary output path asked for or not.
pub fn client_options_binary(binary: bool) -> ClientOptions {
    ClientOptions {
        binary_output: binary,
        ..client_options()
    }
}

/// One server under test.
pub struct Target {
    pub name: String,
    /// The URL clients connect to: the proxy's when there is one, else the server's own.
    pub url: String,
    pub server: RunningServer,
    proxy: Option<Proxy>,
}

impl Target {
    /// Starts the server of `spec` and, when `link` is given, a proxy in front of it.
    pub async fn start(spec: &ServerSpec, link: Option<Link>) -> Result<Self> {
        let server = RunningServer::start(spec).await?;
        let (url, proxy) = match link {
            None => (server.url.clone(), None),
            Some(link) => {
                let (scheme, authority, path) = split_ws_url(&server.url)?;
                let upstream = resolve(authority).await?;
                let proxy = proxy::start(SocketAddr::from(([127, 0, 0, 1], 0)), upstream, link)
                    .await
                    .with_context(|| format!("proxy in front of {}", spec.name))?;
                (format!("{scheme}{}{path}", proxy.local_addr), Some(proxy))
            }
        };
        Ok(Self {
            name: spec.name.clone(),
            url,
            server,
            proxy,
        })
    }

    /// The server's process id, when we started it.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// A new client connection (upgrade + `initialize`) with `options`.
    pub async fn connect_with(&self, options: ClientOptions) -> Result<Client> {
        Client::connect(Endpoint::WebSocket(self.url.clone()), options)
            .await
            .with_context(|| self.failed("connecting to"))
    }

    /// A new client that connects on first use: a first start rides in the same flight
    /// as its handshake.
    pub fn client(&self) -> Client {
        Client::new(Endpoint::WebSocket(self.url.clone()), client_options())
    }

    /// Why a call to this target failed, with the server's last words.
    pub fn failed(&self, doing: &str) -> String {
        format!(
            "{doing} {} at {}; server stderr ended with:\n{}",
            self.name,
            self.url,
            self.server.stderr_tail()
        )
    }

    /// A new client connection with the default benchmark options.
    pub async fn connect(&self) -> Result<Client> {
        self.connect_with(client_options()).await
    }

    /// Stops the proxy, then the server.
    pub async fn stop(self) {
        drop(self.proxy);
        self.server.stop().await;
    }
}

/// Starts every server of `specs`, in order.
pub async fn start_all(specs: &[ServerSpec], link: Option<Link>) -> Result<Vec<Target>> {
    let mut targets = Vec::with_capacity(specs.len());
    for spec in specs {
        targets.push(Target::start(spec, link).await?);
    }
    Ok(targets)
}

/// Stops every target.
pub async fn stop_all(targets: Vec<Target>) {
    for target in targets {
        target.stop().await;
    }
}

/// The server version a client learned from `initialize` (`executorVersion`).
pub fn version_of(client: &Client) -> Option<String> {
    client.environment_info().and_then(|e| e.executor_version)
}

/// `ws://HOST:PORT/path` → (`ws://`, `HOST:PORT`, `/path`); `wss://` likewise (the proxy
/// passes TLS through untouched).
fn split_ws_url(url: &str) -> Result<(&'static str, &str, &str)> {
    let (scheme, rest) = ["ws://", "wss://"]
        .into_iter()
        .find_map(|scheme| Some((scheme, url.strip_prefix(scheme)?)))
        .ok_or_else(|| anyhow!("unsupported URL `{url}`: expected ws://HOST:PORT"))?;
    Ok(match rest.find('/') {
        Some(i) => (scheme, &rest[..i], &rest[i..]),
        None => (scheme, rest, ""),
    })
}

async fn resolve(authority: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(authority)
        .await
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .ok_or_else(|| anyhow!("{authority} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() -> Result<()> {
        assert_eq!(
            split_ws_url("ws://127.0.0.1:7/")?,
            ("ws://", "127.0.0.1:7", "/")
        );
        assert_eq!(split_ws_url("ws://h:1")?, ("ws://", "h:1", ""));
        assert_eq!(split_ws_url("wss://h:1")?, ("wss://", "h:1", ""));
        assert!(split_ws_url("http://h:1").is_err());
        Ok(())
    }
}
