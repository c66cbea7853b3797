//! A sandboxed named shell, through `rexec serve` (the binary is the sandbox helper): the
//! policy given when the shell is created confines every later command of it.

#[path = "conformance/sandbox_dirs.rs"]
mod sandbox_dirs;

use anyhow::{Context, Result, ensure};
use rexec_client::{Client, ClientOptions, Endpoint, NetworkAccess, SandboxContext};
use rexec_testkit::server::{Server, ServerOptions, Target};
use sandbox_dirs::Dirs;
use std::future::IntoFuture;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn the_policy_confines_every_command_of_the_shell() -> Result<()> {
    let server = Server::spawn(Target::Rexec, &ServerOptions::default()).await?;
    let client = Client::connect(
        Endpoint::WebSocket(server.url.clone()),
        ClientOptions::default(),
    )
    .await?;
    let dirs = Dirs::outside_tmp()?;
    let shell = client
        .shell("confined")
        .cwd(&dirs.ws)
        .sandbox(SandboxContext::managed(
            std::slice::from_ref(&dirs.ws),
            NetworkAccess::Restricted,
        ));
    let run = |command: String| {
        let shell = shell.clone();
        async move {
            tokio::time::timeout(DEADLINE, shell.run(command).into_future())
                .await
                .context("the command did not finish")?
                .context("shell/run")
        }
    };
    let inside = run("echo hi > inside && cat inside".to_owned()).await?;
    ensure!(
        inside.exit_code == Some(0) && inside.output.text() == "hi\n",
        "inside: {inside:?}"
    );
    let escaped = dirs.outside.join("escaped");
    let first = run(format!("echo hi > {}", escaped.display())).await?;
    ensure!(first.exit_code != Some(0), "outside: {first:?}");
    // A later command, even after `cd` out of the workspace, is still confined.
    let later = run(format!(
        "cd {} && echo hi > escaped; echo status $?",
        dirs.outside.display()
    ))
    .await?;
    ensure!(
        later.output.text().ends_with("status 1\n"),
        "later: {later:?}"
    );
    ensure!(!escaped.exists(), "a write escaped the sandbox");
    Ok(())
}
