//! Where to connect (`Endpoint`) and how patiently (`ClientOptions`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How long the TCP connect plus WebSocket upgrade (or the spawn) may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the `initialize` response may take.
pub const DEFAULT_INITIALIZE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the client keeps trying to resume its session after the connection drops;
/// inside the server's 30 s detached-session TTL.
pub const DEFAULT_RESUME_WINDOW: Duration = Duration::from_secs(25);

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Sent as `clientName` in `initialize`.
    pub client_name: String,
    /// Bearer token for the WebSocket upgrade (`Authorization: Bearer …`).
    pub token: Option<String>,
    pub connect_timeout: Duration,
    pub initialize_timeout: Duration,
    /// Zero disables reconnecting: a lost connection fails every live process at once.
    pub resume_window: Duration,
    /// Ask the server for process output as raw bytes in binary WebSocket frames
    /// (`process/output.binary`) instead of base64 in JSON. Negotiated on every connection
    /// (including each resume); a server that does not grant it (codex, stdio) keeps
    /// sending JSON, which works the same. Default `true`.
    pub binary_output: bool,
    /// Certificates for `wss://` endpoints.
    pub tls: TlsOptions,
}

/// Whom a `wss://` client trusts and how it identifies itself. Files are PEM, read on
/// every connect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// CA certificate(s) the server's certificate must chain to, instead of the system's
    /// trusted roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (then any intermediates) for a server that requires one (mTLS).
    pub client_cert: Option<PathBuf>,
    /// The private key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            client_name: "rexec-client".to_owned(),
            token: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            initialize_timeout: DEFAULT_INITIALIZE_TIMEOUT,
            resume_window: DEFAULT_RESUME_WINDOW,
            binary_output: true,
            tls: TlsOptions::default(),
        }
    }
}

/// The server to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A `ws://host:port` or `wss://host:port` URL. Reconnects resume the session over a new socket.
    WebSocket(String),
    /// A program speaking newline-delimited JSON on its stdin/stdout, e.g.
    /// `rexec serve --listen stdio` (or `ssh host rexec serve --listen stdio`). Lines that
    /// are not JSON (a login banner) are skipped. A stdio connection cannot be resumed.
    Stdio { program: PathBuf, args: Vec<String> },
}

impl Endpoint {
    pub(crate) fn can_resume(&self) -> bool {
        matches!(self, Self::WebSocket(_))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WebSocket(url) => f.write_str(url),
            Self::Stdio { program, args } => {
                write!(f, "stdio:{}", program.display())?;
                for arg in args {
                    write!(f, " {arg}")?;
                }
                Ok(())
            }
        }
    }
}
