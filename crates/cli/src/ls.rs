//! `rexec ls URL:PATH`: the entries of a remote directory, one per line, sorted, with a `/`
//! after directories (or the path itself when it is not a directory).

use crate::connect::{TlsArgs, connect_to};
use crate::remote_path::{Operand, absolute, server_of};
use anyhow::{Context, bail};
use std::io::Write as _;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Server for a path written `:PATH` (e.g. ws://127.0.0.1:7000).
    #[arg(long, env = "REXEC_SERVER")]
    pub server: Option<String>,
    /// File holding the bearer token the server requires (`rexec serve --token-file`).
    #[arg(long, env = "REXEC_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// ws://HOST:PORT:/PATH (or :PATH with --server).
    pub path: String,
}

pub async fn run(args: LsArgs) -> anyhow::Result<i32> {
    let Operand::Remote { server, path } = Operand::parse(&args.path)? else {
        bail!(
            "`{}` is not remote; write it as ws://HOST:PORT:/PATH",
            args.path
        );
    };
    let server = server_of(server.as_deref(), args.server.as_deref())?;
    let client = connect_to(&server, args.token_file.as_deref(), &args.tls, "rexec-ls").await?;
    let path = absolute(&client, &path)?;
    let metadata = client
        .metadata(&path)
        .await
        .with_context(|| format!("cannot access {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    if !metadata.is_directory {
        writeln!(out, "{}", path.display())?;
        return Ok(0);
    }
    let mut entries = client
        .read_directory(&path)
        .await
        .with_context(|| format!("cannot list {}", path.display()))?;
    entries.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    for entry in entries {
        let slash = if entry.is_directory { "/" } else { "" };
        writeln!(out, "{}{slash}", entry.file_name)?;
    }
    Ok(0)
}
