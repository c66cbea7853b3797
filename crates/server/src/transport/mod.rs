//! Transports: they turn a byte stream into frames for a [`crate::connection::Connection`]
//! and drain its outbound queue.
//!
//! WebSocket: `listener` accepts TCP connections under the admission limits (`admission`),
//! `http` reads the one HTTP request of each (`/readyz`, Origin refusal, the bearer token,
//! the upgrade) within the handshake timeout, and `websocket` runs the upgraded connection
//! over a socket that reserves inbound bytes from the server-wide budget (`budget`) and
//! counts outbound ones for dead-peer detection (`liveness`). `stdio` is newline-delimited
//! JSON on stdin/stdout. `tls` is the reloadable TLS acceptor of a `wss://` listener.

pub mod admission;
pub mod budget;
pub mod http;
pub mod listen;
pub mod listener;
pub mod liveness;
pub mod stdio;
pub mod tls;
pub mod websocket;
