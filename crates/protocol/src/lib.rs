//! Wire types of the codex exec-server JSON-RPC protocol as rexec speaks it.
//!
//! This crate owns the shapes of every message on the wire and nothing else: serde types,
//! the JSON-RPC envelope (which omits the `jsonrpc` member on output), error codes and the
//! upstream error texts, `file:` URI paths, base64 byte chunks, and the JSON value budget
//! applied to untrusted frames. It performs no I/O and knows nothing about tokio.
//!
//! rexec's additions are optional fields or new methods that an upstream peer can ignore;
//! each is listed in [`extensions::ALL`] and advertised in the `initialize` result.

pub mod binary_output;
pub mod budget;
pub mod chunk;
pub mod environment;
pub mod error;
pub mod extensions;
pub mod fs;
pub mod http;
pub mod jsonrpc;
pub mod method;
pub mod path_uri;
pub mod process;
pub mod sandbox;
pub mod shell;
pub mod wait;
pub mod watch;

pub use budget::{MAX_JSONRPC_VALUE_NODES, ValueBudgetError, check_value_budget};
pub use chunk::ByteChunk;
pub use error::{ErrorCode, RpcError};
pub use jsonrpc::{IncomingMessage, RequestId};
pub use path_uri::PathUri;
