//! The options every client command shares (`--server`, `--token-file`) and the connection
//! they open, with errors a person can act on.

use anyhow::Context;
use rexec_client::{Client, ClientError, ClientOptions, Endpoint, Process, ProcessSpec};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// The server's WebSocket URL, as printed by `rexec serve` (e.g. ws://127.0.0.1:7000).
    #[arg(long, env = "REXEC_SERVER")]
    pub server: String,
    /// File holding the bearer token the server requires (`rexec serve --token-file`).
    #[arg(long, env = "REXEC_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

impl ServerArgs {
    pub async fn connect(&self, client_name: &str) -> anyhow::Result<Client> {
        connect_to(&self.server, self.token_file.as_deref(), client_name).await
    }

    /// Connect and start `spec` in one round trip (`Client::connect_and_start`).
    pub async fn connect_and_start(
        &self,
        client_name: &str,
        spec: ProcessSpec,
    ) -> anyhow::Result<(Client, Process)> {
        let options = client_options(self.token_file.as_deref(), client_name)?;
        let command = spec.argv.join(" ");
        let endpoint = Endpoint::WebSocket(self.server.clone());
        Client::connect_and_start(endpoint, options, spec)
            .await
            .map_err(|err| match err {
                ClientError::Rpc(_) => {
                    anyhow::Error::new(err).context(format!("failed to start `{command}`"))
                }
                other => explain(&self.server, other),
            })
    }
}

/// Connect to `server` (a WebSocket URL), sending the token read from `token_file`.
pub async fn connect_to(
    server: &str,
    token_file: Option<&Path>,
    client_name: &str,
) -> anyhow::Result<Client> {
    let options = client_options(token_file, client_name)?;
    Client::connect(Endpoint::WebSocket(server.to_owned()), options)
        .await
        .map_err(|err| explain(server, err))
}

fn client_options(token_file: Option<&Path>, client_name: &str) -> anyhow::Result<ClientOptions> {
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
        ..ClientOptions::default()
    })
}

/// A connection error a person can act on.
fn explain(server: &str, err: ClientError) -> anyhow::Error {
    match err {
        ClientError::Unauthorized { .. } => anyhow::anyhow!(
            "the server at {server} refused the connection: missing or wrong token (HTTP 401); pass --token-file"
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
