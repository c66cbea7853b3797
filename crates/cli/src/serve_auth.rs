//! `rexec serve`'s authentication flags: codex's `--ws-auth` family with upstream's names,
//! rules and messages, rexec's `--token-file` short form, and the refusal to serve a
//! non-loopback address to anyone at all unless asked to.

use anyhow::{Context, bail};
use rexec_server::{Authenticator, DEFAULT_MAX_CLOCK_SKEW_SECONDS, SignedBearer, read_secret};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WsAuthMode {
    CapabilityToken,
    SignedBearerToken,
}

#[derive(clap::Args, Debug, Default)]
pub struct AuthArgs {
    /// Authentication for WebSocket clients (as codex exec-server): a capability token, or
    /// HS256 JWTs signed with a shared secret.
    #[arg(long, value_enum, value_name = "MODE")]
    ws_auth: Option<WsAuthMode>,
    /// Absolute path of the capability-token file (`--ws-auth capability-token`).
    #[arg(long, value_name = "PATH")]
    ws_token_file: Option<PathBuf>,
    /// Hex SHA-256 of the capability token, instead of the token itself.
    #[arg(long, value_name = "HEX", conflicts_with = "ws_token_file")]
    ws_token_sha256: Option<String>,
    /// Absolute path of the JWT shared secret, at least 32 bytes
    /// (`--ws-auth signed-bearer-token`).
    #[arg(long, value_name = "PATH")]
    ws_shared_secret_file: Option<PathBuf>,
    /// Required `iss` of signed tokens.
    #[arg(long, value_name = "ISSUER")]
    ws_issuer: Option<String>,
    /// Required `aud` of signed tokens.
    #[arg(long, value_name = "AUDIENCE")]
    ws_audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf` [default: 30].
    #[arg(long, value_name = "SECONDS")]
    ws_max_clock_skew_seconds: Option<u64>,
    /// File holding a capability token clients must present as a bearer token (rexec's
    /// short form of `--ws-auth capability-token --ws-token-file`; a relative path is fine).
    #[arg(long, value_name = "PATH", conflicts_with = "ws_auth")]
    token_file: Option<PathBuf>,
    /// Serve a non-loopback address without any authentication: anyone who can reach it
    /// runs any command.
    #[arg(long)]
    allow_unauthenticated: bool,
}

impl AuthArgs {
    /// The authenticator the flags describe, with their files read and checked.
    pub fn authenticator(&self) -> anyhow::Result<Authenticator> {
        let signed_only = self.ws_shared_secret_file.is_some()
            || self.ws_issuer.is_some()
            || self.ws_audience.is_some()
            || self.ws_max_clock_skew_seconds.is_some();
        let token_only = self.ws_token_file.is_some() || self.ws_token_sha256.is_some();
        if let Some(path) = &self.token_file {
            if signed_only || token_only {
                bail!("`--token-file` cannot be combined with the `--ws-*` auth flags");
            }
            return Ok(Authenticator::capability_token(&read_secret(path)?));
        }
        match self.ws_auth {
            None if signed_only || token_only => bail!(
                "websocket auth flags require `--ws-auth capability-token` or `--ws-auth signed-bearer-token`"
            ),
            None => Ok(Authenticator::Open),
            Some(WsAuthMode::CapabilityToken) => {
                if signed_only {
                    bail!(
                        "`--ws-shared-secret-file`, `--ws-issuer`, `--ws-audience`, and `--ws-max-clock-skew-seconds` require `--ws-auth signed-bearer-token`"
                    );
                }
                if let Some(hex) = &self.ws_token_sha256 {
                    return Authenticator::capability_token_digest(hex).map_err(anyhow::Error::msg);
                }
                let path = self.ws_token_file.as_deref().context(
                    "`--ws-token-file` or `--ws-token-sha256` is required when `--ws-auth capability-token` is set",
                )?;
                let token = read_secret(absolute("--ws-token-file", path)?)?;
                Ok(Authenticator::capability_token(&token))
            }
            Some(WsAuthMode::SignedBearerToken) => {
                if token_only {
                    bail!(
                        "`--ws-token-file` and `--ws-token-sha256` require `--ws-auth capability-token`, not `signed-bearer-token`"
                    );
                }
                let path = self.ws_shared_secret_file.as_deref().context(
                    "`--ws-shared-secret-file` is required when `--ws-auth signed-bearer-token` is set",
                )?;
                let path = absolute("--ws-shared-secret-file", path)?;
                let secret = read_secret(path)?;
                let nonempty = |value: &Option<String>| {
                    value
                        .as_deref()
                        .map(str::trim)
                        .filter(|value| !value.is_empty())
                        .map(str::to_owned)
                };
                let verifier = SignedBearer::new(
                    secret.as_bytes(),
                    nonempty(&self.ws_issuer),
                    nonempty(&self.ws_audience),
                    self.ws_max_clock_skew_seconds
                        .unwrap_or(DEFAULT_MAX_CLOCK_SKEW_SECONDS),
                )
                .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
                Ok(Authenticator::SignedBearer(Box::new(verifier)))
            }
        }
    }

    /// Refuse, or warn about, a listener that exposes the server: any address that is not
    /// loopback with no authentication at all, and a token sent in clear.
    /// `client_certificates` says whether TLS requires verified client certificates;
    /// `encrypted` whether the listener is TLS at all.
    pub fn check_exposure(
        &self,
        address: SocketAddr,
        auth: &Authenticator,
        client_certificates: bool,
        encrypted: bool,
    ) -> anyhow::Result<()> {
        if address.ip().is_loopback() {
            return Ok(());
        }
        if !auth.requires_token() && !client_certificates {
            if !self.allow_unauthenticated {
                bail!(
                    "refusing to serve {address} without authentication: anyone who can reach it could run any command. \
                     Configure --token-file FILE (or --ws-auth capability-token --ws-token-file FILE, or \
                     --ws-auth signed-bearer-token --ws-shared-secret-file FILE), or client certificates \
                     (--tls-client-ca), or pass --allow-unauthenticated to accept the risk"
                );
            }
            tracing::warn!(
                %address,
                "serving a non-loopback address WITHOUT authentication (--allow-unauthenticated): anyone who can reach it can run any command"
            );
        } else if auth.requires_token() && !encrypted {
            tracing::warn!(
                %address,
                "serving plaintext ws:// on a non-loopback address: the token and all traffic travel in clear; use wss://"
            );
        }
        Ok(())
    }
}

fn absolute<'a>(flag: &str, path: &'a Path) -> anyhow::Result<&'a Path> {
    if !path.is_absolute() {
        bail!("{flag} must be an absolute path");
    }
    Ok(path)
}
