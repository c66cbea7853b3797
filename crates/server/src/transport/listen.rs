//! The `--listen` URL: `ws://IP:PORT` or `stdio` (also `stdio://`).

use std::net::SocketAddr;
use std::str::FromStr;

pub const DEFAULT_LISTEN_URL: &str = "ws://127.0.0.1:0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenUrl {
    WebSocket(SocketAddr),
    Stdio,
}

impl FromStr for ListenUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        if url == "stdio" || url == "stdio://" {
            return Ok(Self::Stdio);
        }
        let Some(address) = url.strip_prefix("ws://") else {
            return Err(format!(
                "unsupported --listen URL `{url}`; expected `ws://IP:PORT` or `stdio`"
            ));
        };
        address
            .trim_end_matches('/')
            .parse()
            .map(Self::WebSocket)
            .map_err(|_| format!("invalid websocket --listen URL `{url}`; expected `ws://IP:PORT`"))
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
    }
}
