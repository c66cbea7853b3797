//! Transports: they turn a byte stream into frames for a [`crate::connection::Connection`]
//! and drain its outbound queue. WebSocket (with `/readyz`, Origin refusal and the optional
//! bearer token) and newline-delimited stdio.

pub mod listen;
pub mod stdio;
pub mod websocket;
