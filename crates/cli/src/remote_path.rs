//! Operands of `rexec cp` and `rexec ls`: a local path, or a remote one written
//! `ws://HOST:PORT:/ABSOLUTE/PATH` (the server URL as `rexec run --server` takes it, a colon,
//! the path on the server) or `:PATH` (on the server given by `--server` / `REXEC_SERVER`;
//! a relative PATH is taken from the server's working directory).

use anyhow::{Context, bail};
use rexec_client::Client;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    Local(PathBuf),
    Remote {
        server: Option<String>,
        path: String,
    },
}

impl Operand {
    pub fn parse(text: &str) -> anyhow::Result<Operand> {
        for scheme in ["ws://", "wss://"] {
            let Some(rest) = text.strip_prefix(scheme) else {
                continue;
            };
            let Some(split) = rest.find(":/") else {
                bail!("`{text}`: expected {scheme}HOST:PORT:/ABSOLUTE/PATH");
            };
            return Ok(Operand::Remote {
                server: Some(format!("{scheme}{}", &rest[..split])),
                path: rest[split + 1..].to_owned(),
            });
        }
        match text.strip_prefix(':') {
            Some("") => bail!("`{text}`: the remote path is empty"),
            Some(path) => Ok(Operand::Remote {
                server: None,
                path: path.to_owned(),
            }),
            None => Ok(Operand::Local(PathBuf::from(text))),
        }
    }
}

/// The server URL of a remote operand: its own, else `--server`.
pub fn server_of(operand_server: Option<&str>, flag: Option<&str>) -> anyhow::Result<String> {
    operand_server
        .or(flag)
        .map(str::to_owned)
        .context("no server: write the remote path as ws://HOST:PORT:/PATH or pass --server")
}

/// An absolute remote path: relative ones are taken from the server's working directory.
pub fn absolute(client: &Client, path: &str) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(path);
    if path.is_absolute() {
        return Ok(path);
    }
    let cwd = client
        .environment_info()
        .and_then(|info| info.cwd)
        .context("the server did not say its working directory; use an absolute remote path")?;
    Ok(cwd.as_path().join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            Operand::parse("ws://127.0.0.1:7000:/tmp/a b").expect("url"),
            Operand::Remote {
                server: Some("ws://127.0.0.1:7000".into()),
                path: "/tmp/a b".into()
            }
        );
        assert_eq!(
            Operand::parse("wss://[::1]:7000:/x").expect("v6"),
            Operand::Remote {
                server: Some("wss://[::1]:7000".into()),
                path: "/x".into()
            }
        );
        assert_eq!(
            Operand::parse(":rel/p").expect("short"),
            Operand::Remote {
                server: None,
                path: "rel/p".into()
            }
        );
        assert_eq!(
            Operand::parse("local/f").expect("local"),
            Operand::Local("local/f".into())
        );
        assert!(Operand::parse("ws://host:7000").is_err());
        assert!(Operand::parse(":").is_err());
    }
}
