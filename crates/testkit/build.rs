//! Decides, when the kit is compiled, whether codex tests are generated as `#[ignore]`d:
//! outside CI, when `src/locate.rs`'s rule finds no codex binary, the kit is built with
//! `cfg(codex_missing)`. Under `CI=true` they never are (a missing codex fails them).

#[path = "src/locate.rs"]
#[allow(dead_code)]
mod locate;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(codex_missing)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/locate.rs");
    println!("cargo::rerun-if-env-changed=CI");
    if locate::in_ci() {
        // The answer does not depend on the binary: changing REXEC_CODEX_BIN (CI runs the
        // codex cases again with 0.171.0) must not rebuild every test.
        return;
    }
    println!("cargo::rerun-if-env-changed={}", locate::CODEX_BIN_VAR);
    println!("cargo::rerun-if-env-changed=HOME");
    match locate::codex_bin() {
        Ok(bin) => println!("cargo::rerun-if-changed={}", bin.display()),
        Err(why) => {
            println!("cargo::rustc-cfg=codex_missing");
            println!("cargo::warning=codex tests are generated as ignored: {why}");
            // Notice an install into the cache without watching all of $HOME: watch the
            // deepest directory of the install path that exists, from ~/.cache/rexec down.
            if let Some(installed) = locate::installed_path() {
                let watched = installed
                    .ancestors()
                    .skip(1)
                    .take_while(|dir| !dir.ends_with(".cache"))
                    .find(|dir| dir.is_dir());
                if let Some(dir) = watched {
                    println!("cargo::rerun-if-changed={}", dir.display());
                }
            }
        }
    }
}
