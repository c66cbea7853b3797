//! `rexec serve`'s startup rules for authentication: a non-loopback address with no
//! authentication is refused unless `--allow-unauthenticated` (then it warns), a token over
//! plaintext off loopback warns, and mistakes in the `--ws-auth` flags are clear errors.
//! Servers here bind the unspecified address but no traffic leaves loopback.

use anyhow::{Context, Result, bail, ensure};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(20);

fn serve(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rexec"));
    command
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `rexec serve args…`, which must exit at once with an error; returns its stderr.
async fn refused(args: &[&str]) -> Result<String> {
    let output = tokio::time::timeout(DEADLINE, serve(args).output())
        .await
        .context("the refused server did not exit")??;
    ensure!(
        !output.status.success(),
        "`rexec serve {}` started: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout)
    );
    ensure!(
        output.stdout.is_empty(),
        "a refused server printed a URL: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Starts `rexec serve args…` and returns it with the URL it printed and the stderr lines
/// that came before the URL.
async fn started(args: &[&str]) -> Result<(Child, String, String)> {
    let mut child = serve(args).spawn().context("starting rexec serve")?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let url = tokio::time::timeout(DEADLINE, stdout.next_line())
        .await
        .context("no URL printed")??
        .context("stdout ended without a URL")?;
    let stderr = child.stderr.take().context("stderr")?;
    // The startup warnings are written before the URL; collect what is already there.
    let mut lines = BufReader::new(stderr).lines();
    let mut warnings = String::new();
    let until = Instant::now() + Duration::from_millis(300);
    while let Ok(Ok(Some(line))) = tokio::time::timeout_at(until, lines.next_line()).await {
        warnings.push_str(&line);
        warnings.push('\n');
    }
    Ok((child, url, warnings))
}

#[tokio::test]
async fn a_non_loopback_address_without_authentication_is_refused() -> Result<()> {
    let stderr = refused(&["--listen", "ws://0.0.0.0:0"]).await?;
    for flag in ["--token-file", "--ws-auth", "--allow-unauthenticated"] {
        ensure!(
            stderr.contains(flag),
            "the refusal should name {flag}: {stderr}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn allow_unauthenticated_serves_and_warns() -> Result<()> {
    let (_server, url, warnings) =
        started(&["--listen", "ws://0.0.0.0:0", "--allow-unauthenticated"]).await?;
    ensure!(url.starts_with("ws://0.0.0.0:"), "printed {url}");
    ensure!(
        warnings.contains("WITHOUT authentication"),
        "no warning at start: {warnings:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_token_over_plaintext_off_loopback_warns() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("rexec-serve-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let token = dir.join("token");
    std::fs::write(&token, "serve-test-token\n")?;
    let token = token.display().to_string();
    let (_server, url, warnings) =
        started(&["--listen", "ws://0.0.0.0:0", "--token-file", &token]).await?;
    ensure!(url.starts_with("ws://0.0.0.0:"), "printed {url}");
    ensure!(
        warnings.contains("travel in clear"),
        "no plaintext warning: {warnings:?}"
    );
    let (_loopback, _, quiet) = started(&["--listen", "ws://127.0.0.1:0"]).await?;
    ensure!(quiet.is_empty(), "a loopback server warned: {quiet:?}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn mistakes_in_the_auth_flags_are_clear_errors() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("rexec-serve-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let short = dir.join("short-secret");
    std::fs::write(&short, "too-short")?;
    let short = short.display().to_string();
    let cases: [(&[&str], &str); 6] = [
        (
            &["--ws-auth", "signed-bearer-token"],
            "--ws-shared-secret-file",
        ),
        (
            &[
                "--ws-auth",
                "signed-bearer-token",
                "--ws-shared-secret-file",
                &short,
            ],
            "at least 32 bytes",
        ),
        (
            &[
                "--ws-auth",
                "capability-token",
                "--ws-token-file",
                "relative/token",
            ],
            "must be an absolute path",
        ),
        (&["--ws-issuer", "x"], "require `--ws-auth"),
        (
            &["--ws-auth", "capability-token", "--ws-token-sha256", "abc"],
            "64 hex digits",
        ),
        (&["--ws-auth", "capability-token"], "--ws-token-file"),
    ];
    for (args, expected) in cases {
        let stderr = refused(args).await?;
        if !stderr.contains(expected) {
            bail!(
                "`rexec serve {}` should say {expected:?}: {stderr}",
                args.join(" ")
            );
        }
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
