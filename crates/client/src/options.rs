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

/// How a [`Client`](crate::Client) connects: its name, credentials, time limits, and
/// which session it resumes.
///
/// ```
/// use rexec_client::ClientOptions;
/// let options = ClientOptions {
///     token: Some("secret".into()),
///     ..ClientOptions::default()
/// }
/// .resume_session("6f1c…");
/// assert_eq!(options.resume_session.as_deref(), Some("6f1c…"));
/// ```
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Sent as `clientName` in `initialize`.
    pub client_name: String,
    /// Bearer token for the WebSocket upgrade (`Authorization: Bearer …`).
    pub token: Option<String>,
    /// How long the TCP connect plus WebSocket upgrade (or the spawn) may take.
    pub connect_timeout: Duration,
    /// How long the `initialize` response may take.
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
    /// The session the first connection attaches to (`initialize.resumeSessionId`), e.g.
    /// one a harness noted with [`Client::session_id`](crate::Client::session_id) before
    /// it restarted. The server keeps a detached session for its TTL (rexec: 30 s);
    /// after that, or for an unknown id, the first connect fails with the server's error.
    pub resume_session: Option<String>,
}

impl ClientOptions {
    /// Attach to session `id` instead of opening a new one; reattach to its processes
    /// with [`Client::process`](crate::Client::process).
    ///
    /// ```no_run
    /// # async fn demo(old_session: String) -> Result<(), rexec_client::ClientError> {
    /// use rexec_client::{Client, ClientOptions, Endpoint};
    /// let options = ClientOptions::default().resume_session(old_session);
    /// let client = Client::new(Endpoint::WebSocket("ws://127.0.0.1:7000".into()), options);
    /// let done = client.process("build-42").wait().await?;
    /// println!("exit {}", done.exit_code);
    /// # Ok(()) }
    /// ```
    pub fn resume_session(mut self, id: impl Into<String>) -> Self {
        self.resume_session = Some(id.into());
        self
    }
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
            resume_session: None,
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
    Stdio {
        /// The program to spawn.
        program: PathBuf,
        /// Its arguments.
        args: Vec<String>,
    },
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
