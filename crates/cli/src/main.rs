//! The `rexec` binary: thin argument parsing over the library crates.

fn main() {
    eprintln!("rexec: not built yet");
    std::process::exit(2);
}
