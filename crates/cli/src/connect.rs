//! The options every client command shares (`--server`, `--token-file`, the TLS files) and
//! the connection they open, with errors a person can act on.

use anyhow::Context;
use rexec_client::{Client, ClientError, ClientOptions, Endpoint, TlsOptions};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// The server's WebSocket URL, as printed by `rexec serve` (e.g. ws://127.0.0.1:7000).
    #[arg(long, env = "REXEC_SERVER")]
    pub server: String,
    /// File holding the bearer token the server requires (`rexec serve --token-file`).
    #[arg(long, env = "REXEC_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Certificates for a `wss://` server.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// PEM CA certificate(s) to trust for a wss:// server instead of the system's roots.
    #[arg(long, env = "REXEC_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for a server that requires one (`serve --tls-client-ca`).
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl TlsArgs {
    fn options(&self) -> TlsOptions {
        TlsOptions {
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        }
    }
}

impl ServerArgs {
    pub async fn connect(&self, client_name: &str) -> anyhow::Result<Client> {
        connect_to(
            &self.server,
            self.token_file.as_deref(),
            &self.tls,
            client_name,
        )
        .await
    }

    /// A client that connects on first use: a first start rides in the same flight as
    /// the handshake.
    pub fn client(&self, client_name: &str) -> anyhow::Result<Client> {
        let options = client_options(self.token_file.as_deref(), &self.tls, client_name)?;
        Ok(Client::new(
            Endpoint::WebSocket(self.server.clone()),
            options,
        ))
    }

    /// A failed call, for a person: `doing` names the call when the server refused it.
    pub fn explain(&self, err: ClientError, doing: &str) -> anyhow::Error {
        match err {
            ClientError::Rpc(_) => anyhow::Error::new(err).context(format!("failed to {doing}")),
            other => explain(&self.server, other),
        }
    }
}

/// Connect to `server` (a WebSocket URL), sending the token read from `token_file`.
pub async fn connect_to(
    server: &str,
    token_file: Option<&Path>,
    tls: &TlsArgs,
    client_name: &str,
) -> anyhow::Result<Client> {
    let options = client_options(token_file, tls, client_name)?;
    Client::connect(Endpoint::WebSocket(server.to_owned()), options)
        .await
        .map_err(|err| explain(server, err))
}

fn client_options(
    token_file: Option<&Path>,
    tls: &TlsArgs,
    client_name: &str,
) -> anyhow::Result<ClientOptions> {
    let token = match token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("failed to read token file {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    Ok(ClientOptions {
        client_name: client_name.to_owned(),
        token,
        tls: tls.options(),
        ..ClientOptions::default()
    })
}

/// A connection error a person can act on.
fn explain(server: &str, err: ClientError) -> anyhow::Error {
    match err {
        ClientError::Unauthorized { .. } => anyhow::anyhow!(
            "the server at {server} refused the connection: missing or wrong token (HTTP 401); pass --token-file"
        ),
        ClientError::Unsupported { extension } => anyhow::anyhow!(
            "the server at {server} does not support {extension} (a rexec extension)"
        ),
        other => anyhow::Error::new(other),
    }
}

/// `K=V` from the command line.
pub fn parse_env_pair(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got `{pair}`")),
    }
}
