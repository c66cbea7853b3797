//! The `rexec` binary: thin argument parsing over the library crates.
//!
//! Exit status: `cp`, `ls` and `shells` leave with 0 on success; `run` and `shell` leave
//! with the remote command's exit code (128+N when a signal killed it; `run --shell`: 124
//! when `--timeout` interrupted it, 125 when it waited for input stdin did not have); when rexec itself fails (unreachable server, refused token, protocol
//! error) it prints `rexec: …` and exits 255, like ssh.

mod connect;
mod cp;
mod duration;
mod local_stdin;
mod ls;
mod remote_path;
mod run;
mod serve;
mod serve_auth;
mod shell;
mod shell_attach;
mod shell_run;
mod shells;
mod stdin_lines;
mod terminal;
mod transfer;

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
    /// Run one command on a server; its output streams to ours, its exit code is ours.
    Run(run::RunArgs),
    /// Open an interactive shell on a server (or, with --attach, a named shell).
    Shell(shell::ShellArgs),
    /// List the named shells (`rexec run --shell NAME`) on a server.
    Shells(shells::ShellsArgs),
    /// Copy files or directories to or from a server (SOURCE DESTINATION, one remote).
    Cp(cp::CpArgs),
    /// List a remote directory.
    Ls(ls::LsArgs),
    /// Measure a server (rexec or any exec-server) side by side with others.
    Bench(rexec_bench::cli::BenchArgs),
}

/// glibc serves allocations over 128 KiB with fresh `mmap`s at first and returns memory
/// above 128 KiB at the heap top on every free; streaming output allocates and frees
/// 64 KiB+ buffers continuously, and the resulting map/fault/unmap churn cost the server a
/// third of its CPU on `rexec bench throughput`. Fixed thresholds keep those buffers on
/// the heap (idle memory is unchanged: nothing is retained that was not used).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 * 1024 * 1024);
    }
}

/// rexec's own failure, as opposed to the remote command's exit code.
const FAILURE_EXIT: i32 = 255;

fn main() {
    // The sandbox helper runs before anything else: single-threaded, no runtime, no logging.
    let mut args = std::env::args_os();
    if args
        .nth(1)
        .is_some_and(|a| a == rexec_server::SANDBOX_HELPER_ARG)
    {
        rexec_server::sandbox_helper_main(args.collect());
    }
    tune_allocator();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rexec: failed to start the async runtime: {err}");
            std::process::exit(FAILURE_EXIT);
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await.map(|()| 0),
            Command::Run(args) => run::run(args).await,
            Command::Shell(args) => shell::run(args).await,
            Command::Shells(args) => shells::run(args).await,
            Command::Cp(args) => cp::run(args).await,
            Command::Ls(args) => ls::run(args).await,
            Command::Bench(args) => rexec_bench::cli::run(args).await.map(|()| 0),
        }
    });
    // Exit without dropping the runtime: a blocking read of our stdin (forwarded to a remote
    // process) may still be pending on a runtime thread and must not keep us alive.
    let code = match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("rexec: {err:#}");
            FAILURE_EXIT
        }
    };
    std::process::exit(code);
}
