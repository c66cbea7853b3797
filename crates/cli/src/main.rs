//! The `rexec` binary: thin argument parsing over the library crates.

mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rexec",
    version,
    about = "Run processes on another machine (codex exec-server protocol)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the exec server.
    Serve(serve::ServeArgs),
    /// Measure a server (rexec or any exec-server) side by side with others.
    Bench(rexec_bench::cli::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Bench(args) => rexec_bench::cli::run(args).await,
        }
    })
}
