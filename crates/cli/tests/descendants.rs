//! Every descendant of a process dies with it: a grandchild that left the process's
//! session and group (`setsid`) and whose parent exited at once (a double fork) is gone
//! within a second of `process/terminate`, of the session's expiry and of the server's
//! SIGTERM. Real `rexec serve` binaries (or `REXEC_SERVER_CMD`), real sockets, real
//! processes; each grandchild is identified by pid *and* start time, so a reused pid never
//! passes for a survivor or a corpse.
//!
//! In the cgroup mode the grandchild also drops its output descriptors (nothing but the
//! cgroup ties it to the process). The subreaper fallback (`REXEC_PROCESS_CONTAINMENT=
//! subreaper`) attributes a grandchild that keeps the process's output open; one that
//! drops it too dies at shutdown (see ARCHITECTURE.md, "Descendants"). The cgroup cases
//! skip with a printed reason where the server reports no cgroup (and fail under CI=true).

use anyhow::{Context, Result, bail, ensure};
use rexec_testkit::client::Client;
use rexec_testkit::harness;
use rexec_testkit::server::{Server, ServerOptions, Target};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// How soon after the kill the grandchild must be gone (the bound).
const GONE_WITHIN: Duration = Duration::from_secs(1);
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the grandchild is started.
#[derive(Clone, Copy, PartialEq)]
enum Grandchild {
    /// Output redirected to /dev/null: only a cgroup still ties it to the process.
    Detached,
    /// Keeps the process's stdout and stderr open (a dev server logging to its terminal).
    KeepsOutput,
}

/// `sh` that double-forks a `setsid` grandchild, records its pid, says `started`, and
/// stays alive itself.
fn script(pid_file: &Path, grandchild: Grandchild) -> String {
    let redirect = match grandchild {
        Grandchild::Detached => " </dev/null >/dev/null 2>&1",
        Grandchild::KeepsOutput => "",
    };
    format!(
        "setsid sh -c 'sleep 300{redirect} & echo $! > {file}'; echo started; exec sleep 300",
        file = pid_file.display()
    )
}

/// A rexec server (`REXEC_SERVER_CMD` or this build) with a session TTL and, for the
/// fallback, `REXEC_PROCESS_CONTAINMENT=subreaper`; and a client initialized on it.
async fn server_and_client(ttl_ms: Option<u64>, subreaper: bool) -> Result<(Server, Client)> {
    let options = ServerOptions {
        session_ttl_ms: ttl_ms,
        env: if subreaper {
            vec![("REXEC_PROCESS_CONTAINMENT", "subreaper")]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let server = Server::spawn(Target::Rexec, &options).await?;
    let mut client = Client::connect(&server).await?;
    client.initialize().await?;
    Ok((server, client))
}

/// A process identified by pid and start time.
#[derive(Debug, Clone, Copy)]
struct Proc {
    pid: i32,
    start_time: u64,
}

impl Proc {
    /// Alive: the same process (same start time) exists and is not a zombie.
    fn alive(&self) -> bool {
        match stat(self.pid) {
            Some((state, start)) => start == self.start_time && state != 'Z' && state != 'X',
            None => false,
        }
    }
}

/// State and start time from `/proc/PID/stat`.
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(19)?.parse().ok()?,
    ))
}

/// The server reports which containment it uses in `environment/info`.
async fn containment(client: &mut Client) -> Result<String> {
    let info = client.call("environment/info", json!({})).await?;
    info["rexec"]["processContainment"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("environment/info without rexec.processContainment: {info}"))
}

/// True when the cgroup case cannot run here (printed); an error under CI=true.
fn skip_without_cgroup(mode: &str, test: &str) -> Result<bool> {
    if mode == "cgroup" {
        return Ok(false);
    }
    ensure!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true: {test} needs a cgroup, the server reports {mode}"
    );
    harness::say_skipped(&format!(
        "SKIPPED {test}: the server has no cgroup v2 it may write (it reports {mode})"
    ));
    Ok(true)
}

/// Start the double-forking process and return its grandchild, checked alive.
async fn start_with_grandchild(
    client: &mut Client,
    scratch: &Path,
    id: &str,
    grandchild: Grandchild,
    customize: impl FnOnce(&mut Value),
) -> Result<Proc> {
    let pid_file = scratch.join(format!("{id}.pid"));
    let mut params = harness::sh(id, &script(&pid_file, grandchild));
    customize(&mut params);
    client.start(params).await?;
    client
        .wait_output_containing(id, "started", EVENT_TIMEOUT)
        .await?;
    let text = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("reading {}", pid_file.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("pid {text:?}"))?;
    let (_, start_time) = stat(pid).with_context(|| format!("grandchild {pid} not running"))?;
    let grandchild = Proc { pid, start_time };
    ensure!(grandchild.alive(), "grandchild {pid} is not alive");
    Ok(grandchild)
}

/// Waits (with a deadline, checking every 10 ms) for the grandchild to be gone.
async fn gone_within(grandchild: Proc, within: Duration, after: &str) -> Result<()> {
    let deadline = Instant::now() + within;
    while grandchild.alive() {
        if Instant::now() >= deadline {
            // Do not leave it behind for the next test run.
            if let Some(pid) = rustix::process::Pid::from_raw(grandchild.pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            bail!(
                "grandchild {} still alive {within:?} after {after}",
                grandchild.pid
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// `<cgroup2 mount><server's cgroup>/rexec-<pid>`: where the server keeps its cgroups.
fn server_cgroup_dir(server_pid: u32) -> Result<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mount = mountinfo
        .lines()
        .find_map(|line| {
            let (fields, rest) = line.split_once(" - ")?;
            (rest.split_whitespace().next()? == "cgroup2")
                .then(|| fields.split_whitespace().nth(4))
                .flatten()
        })
        .context("no cgroup2 mount")?;
    let membership = std::fs::read_to_string(format!("/proc/{server_pid}/cgroup"))?;
    let own = membership
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .context("server in no cgroup v2")?;
    Ok(Path::new(mount)
        .join(own.trim_start_matches('/'))
        .join(format!("rexec-{server_pid}")))
}

async fn terminate_kills(
    grandchild: Grandchild,
    subreaper: bool,
    tty: bool,
    test: &str,
) -> Result<()> {
    let (server, mut client) = server_and_client(None, subreaper).await?;
    let mode = containment(&mut client).await?;
    if subreaper {
        ensure!(mode == "subreaper", "forced fallback reports {mode}");
    } else if skip_without_cgroup(&mode, test)? {
        return Ok(());
    }
    let grandchild =
        start_with_grandchild(&mut client, server.scratch(), "p", grandchild, |params| {
            params["tty"] = json!(tty);
        })
        .await?;
    ensure!(
        client.terminate("p").await?,
        "terminate says it was not running"
    );
    gone_within(grandchild, GONE_WITHIN, "process/terminate").await?;
    // Killing everything closes the process: exited then closed arrive.
    client.events_until_closed("p", EVENT_TIMEOUT).await?;
    Ok(())
}

#[tokio::test]
async fn a_detached_setsid_grandchild_dies_at_terminate() -> Result<()> {
    terminate_kills(
        Grandchild::Detached,
        false,
        false,
        "a_detached_setsid_grandchild_dies_at_terminate",
    )
    .await
}

#[tokio::test]
async fn a_detached_grandchild_of_a_pty_process_dies_at_terminate() -> Result<()> {
    terminate_kills(
        Grandchild::Detached,
        false,
        true,
        "a_detached_grandchild_of_a_pty_process_dies_at_terminate",
    )
    .await
}

#[tokio::test]
async fn a_detached_grandchild_of_a_sandboxed_process_dies_at_terminate() -> Result<()> {
    let test = "a_detached_grandchild_of_a_sandboxed_process_dies_at_terminate";
    let (server, mut client) = server_and_client(None, false).await?;
    let mode = containment(&mut client).await?;
    if skip_without_cgroup(&mode, test)? {
        return Ok(());
    }
    let scratch = server.scratch().to_owned();
    let uri = format!("file://{}", scratch.display());
    // Read everything, write only the scratch directory, no network.
    let sandbox = json!({
        "permissions": {
            "type": "managed",
            "file_system": {"type": "restricted", "entries": [
                {"path": {"type": "path", "path": "file:///"}, "access": "read"},
                {"path": {"type": "path", "path": uri}, "access": "write"},
            ]},
            "network": "restricted",
        },
        "cwd": uri,
        "windowsSandboxLevel": "disabled",
    });
    let grandchild =
        start_with_grandchild(&mut client, &scratch, "s", Grandchild::Detached, |params| {
            params["cwd"] = json!(uri);
            params["sandbox"] = sandbox;
        })
        .await?;
    client.terminate("s").await?;
    gone_within(
        grandchild,
        GONE_WITHIN,
        "process/terminate of a sandboxed process",
    )
    .await
}

#[tokio::test]
async fn a_detached_setsid_grandchild_dies_when_the_session_expires() -> Result<()> {
    let test = "a_detached_setsid_grandchild_dies_when_the_session_expires";
    let ttl = Duration::from_millis(300);
    let (server, mut client) = server_and_client(Some(ttl.as_millis() as u64), false).await?;
    let mode = containment(&mut client).await?;
    if skip_without_cgroup(&mode, test)? {
        return Ok(());
    }
    let grandchild = start_with_grandchild(
        &mut client,
        server.scratch(),
        "e",
        Grandchild::Detached,
        |_| {},
    )
    .await?;
    client.close().await;
    gone_within(grandchild, ttl + GONE_WITHIN, "the session's expiry").await
}

async fn shutdown_kills(subreaper: bool, test: &str) -> Result<()> {
    let (mut server, mut client) = server_and_client(None, subreaper).await?;
    let mode = containment(&mut client).await?;
    if !subreaper && skip_without_cgroup(&mode, test)? {
        return Ok(());
    }
    let grandchild = start_with_grandchild(
        &mut client,
        server.scratch(),
        "t",
        Grandchild::Detached,
        |_| {},
    )
    .await?;
    let cgroups = (mode == "cgroup")
        .then(|| server_cgroup_dir(server.pid()?))
        .transpose()?;
    if let Some(dir) = &cgroups {
        ensure!(
            dir.is_dir(),
            "{} missing while a process runs",
            dir.display()
        );
    }
    let status = server.terminate(Duration::from_secs(10)).await?;
    ensure!(status.success(), "server exited with {status}");
    gone_within(grandchild, GONE_WITHIN, "the server's SIGTERM").await?;
    if let Some(dir) = cgroups {
        ensure!(
            !dir.exists(),
            "{} left behind after a clean shutdown",
            dir.display()
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_detached_setsid_grandchild_dies_with_the_server() -> Result<()> {
    shutdown_kills(false, "a_detached_setsid_grandchild_dies_with_the_server").await
}

/// Fallback: a grandchild that left group and session but holds the output is attributed.
#[tokio::test]
async fn subreaper_kills_a_setsid_grandchild_holding_the_output_at_terminate() -> Result<()> {
    terminate_kills(Grandchild::KeepsOutput, true, false, "subreaper terminate").await
}

#[tokio::test]
async fn subreaper_kills_a_setsid_grandchild_of_a_pty_process_at_terminate() -> Result<()> {
    terminate_kills(
        Grandchild::KeepsOutput,
        true,
        true,
        "subreaper pty terminate",
    )
    .await
}

/// Fallback: at shutdown even an unattributable orphan (it was re-parented to the server).
#[tokio::test]
async fn subreaper_kills_a_detached_grandchild_at_shutdown() -> Result<()> {
    shutdown_kills(true, "subreaper shutdown").await
}
