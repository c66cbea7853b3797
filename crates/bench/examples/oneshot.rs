//! Runs the benchmarks without the `rexec` binary, e.g.
//!
//! ```sh
//! cargo run --release -p rexec-bench --example oneshot -- oneshot \
//!     --server-cmd 'rexec=target/release/rexec serve' \
//!     --server-cmd 'codex=/path/to/codex exec-server'
//! ```

use clap::Parser;

#[derive(Parser)]
#[command(name = "rexec-bench", about = "rexec latency benchmarks")]
struct Cli {
    #[command(flatten)]
    bench: rexec_bench::cli::BenchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rexec_bench::cli::run(Cli::parse().bench).await
}
