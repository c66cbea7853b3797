//! The `--listen` URL: `ws://IP:PORT`, `wss://IP:PORT` (TLS) or `stdio` (also `stdio://`).

use std::net::SocketAddr;
use std::str::FromStr;

pub const DEFAULT_LISTEN_URL: &str = "ws://127.0.0.1:0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenUrl {
    WebSocket(SocketAddr),
    /// WebSocket over TLS; needs a certificate and key.
    TlsWebSocket(SocketAddr),
    Stdio,
}

impl FromStr for ListenUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        if url == "stdio" || url == "stdio://" {
            return Ok(Self::Stdio);
        }
        let (address, scheme, make): (_, _, fn(SocketAddr) -> Self) =
            if let Some(address) = url.strip_prefix("ws://") {
                (address, "ws", Self::WebSocket)
            } else if let Some(address) = url.strip_prefix("wss://") {
                (address, "wss", Self::TlsWebSocket)
            } else {
                return Err(format!(
                    "unsupported --listen URL `{url}`; expected `ws://IP:PORT`, \
                     `wss://IP:PORT` or `stdio`"
                ));
            };
        address
            .trim_end_matches('/')
            .parse()
            .map(make)
            .map_err(|_| {
                format!("invalid websocket --listen URL `{url}`; expected `{scheme}://IP:PORT`")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_upstream_forms() {
        assert_eq!(
            DEFAULT_LISTEN_URL.parse::<ListenUrl>(),
            Ok(ListenUrl::WebSocket("127.0.0.1:0".parse().expect("addr")))
        );
        assert_eq!("stdio://".parse::<ListenUrl>(), Ok(ListenUrl::Stdio));
        assert!("[::1]:80".parse::<ListenUrl>().is_err());
        assert!(
            "ws://localhost:80".parse::<ListenUrl>().is_err(),
            "an IP is required"
        );
        assert!("ws://[::1]:8080".parse::<ListenUrl>().is_ok());
        assert_eq!(
            "wss://127.0.0.1:7443".parse::<ListenUrl>(),
            Ok(ListenUrl::TlsWebSocket(
                "127.0.0.1:7443".parse().expect("addr")
            ))
        );
        assert!("wss://localhost:7443".parse::<ListenUrl>().is_err());
    }
}
