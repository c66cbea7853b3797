//! Where the codex binary is: the one rule, used by the launchers at run time and by the
//! kit's build script (which generates codex tests as ignored when the rule finds nothing).
//! Plain std only, so the build script can include this file.

use std::path::{Path, PathBuf};

/// The variable that names the codex binary.
pub const CODEX_BIN_VAR: &str = "REXEC_CODEX_BIN";

/// Where `scripts/install-codex` (0.169.0, its default) puts the binary, below `$HOME`.
const INSTALLED: &str = ".cache/rexec/codex-0.169.0/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex";

/// `REXEC_CODEX_BIN` when set and non-empty (it must name a file), else the copy
/// `scripts/install-codex` leaves under `$HOME/.cache/rexec`. `Err` says why there is none.
pub fn codex_bin() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os(CODEX_BIN_VAR).filter(|value| !value.is_empty()) {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("{CODEX_BIN_VAR}={} is not a file", bin.display()))
        };
    }
    let installed = installed_path().ok_or("HOME is not set")?;
    if installed.is_file() {
        Ok(installed)
    } else {
        Err(format!(
            "{CODEX_BIN_VAR} is not set and {} does not exist (scripts/install-codex installs it)",
            installed.display()
        ))
    }
}

/// The path `scripts/install-codex` installs to, whether or not it is there.
pub fn installed_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| Path::new(&home).join(INSTALLED))
}

/// `CI=true`: every case must run, none may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}
