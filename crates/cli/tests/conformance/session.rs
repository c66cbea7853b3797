//! Sessions: UUID `sessionId`, detach on disconnect and resume with `resumeSessionId`
//! (output produced while detached is readable), resume refused while attached (-32010)
//! or unknown (-32600); rexec-only with short flags: expiry kills the session's children,
//! and a closed process is forgotten after its retention so its id can be reused.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

use crate::client::{Client, RPC_TIMEOUT};
use crate::harness::{Ctx, EVENT_TIMEOUT, b64, check_error, poll_until, sh, start_params};
use crate::server::ServerOptions;

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    lens == [8, 4, 4, 4, 12]
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

pub fn session_id(init: &Value) -> Result<String> {
    init["sessionId"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("initialize result without sessionId: {init}"))
}

/// A unique marker path under /tmp for a child to touch.
fn marker_path(label: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "rexec-conformance-{label}-{}-{nanos}",
        std::process::id()
    ))
}

async fn session_id_is_uuid(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    let mut a = Client::connect(&server).await?;
    let mut b = Client::connect(&server).await?;
    let (id_a, id_b) = (
        session_id(&a.initialize().await?)?,
        session_id(&b.initialize().await?)?,
    );
    ensure!(
        is_uuid(&id_a) && is_uuid(&id_b),
        "session ids {id_a:?} {id_b:?} are not UUIDs"
    );
    ensure!(id_a != id_b, "two connections got the same session {id_a}");
    Ok(())
}
conformance_test!(session_id_is_uuid);

async fn sessions_are_isolated(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    let mut a = Client::connect(&server).await?;
    let mut b = Client::connect(&server).await?;
    a.initialize().await?;
    b.initialize().await?;
    a.start(sh("mine", "echo private")).await?;
    a.events_until_closed("mine", EVENT_TIMEOUT).await?;
    // Another session neither hears about nor can read the process.
    let quiet = tokio::time::Instant::now() + Duration::from_millis(300);
    if let Some(leaked) = b.next_notification(quiet).await? {
        bail!("another session received {leaked}");
    }
    let error = b
        .expect_error("process/read", json!({"processId": "mine", "afterSeq": 0}))
        .await?;
    check_error(&error, -32600, "unknown process id mine")?;
    // Process ids are per session: b may use the same id.
    b.start(sh("mine", "echo other")).await?;
    let events = b.events_until_closed("mine", EVENT_TIMEOUT).await?;
    ensure!(
        events.output("stdout")? == b"other\n",
        "b's process: {events:?}"
    );
    Ok(())
}
conformance_test!(sessions_are_isolated);

async fn resume_after_disconnect(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    let mut first = Client::connect(&server).await?;
    let session = session_id(&first.initialize().await?)?;
    let marker = marker_path("resume");
    let script = format!("sleep 0.3; echo while-detached; touch {}", marker.display());
    first.start(sh("det", &script)).await?;
    first.close().await;

    poll_until("the detached child ran", Duration::from_secs(5), || {
        marker.exists()
    })
    .await?;
    let _ = std::fs::remove_file(&marker);
    let mut second = Client::connect(&server).await?;
    let init = second
        .initialize_with(json!({"clientName": "conformance", "resumeSessionId": session}))
        .await?
        .map_err(|e| anyhow::anyhow!("resume failed: {e}"))?;
    ensure!(
        session_id(&init)? == session,
        "resume returned another session: {init}"
    );

    // Catch up from the retained log.
    let mut output = Vec::new();
    let mut after = 0;
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "not closed; output so far {output:?}"
        );
        let read = second.read("det", Some(after), None, 2000).await?;
        for chunk in read["chunks"].as_array().context("chunks")? {
            output.extend(b64(&chunk["chunk"])?);
        }
        after = read["nextSeq"].as_u64().context("nextSeq")? - 1;
        if read["closed"] == true {
            ensure!(read["exitCode"] == 0, "exit code {read}");
            break;
        }
    }
    ensure!(
        output == b"while-detached\n",
        "output retained while detached: {output:?}"
    );
    Ok(())
}
conformance_test!(resume_after_disconnect);

async fn resume_while_attached_refused(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    let mut owner = Client::connect(&server).await?;
    let session = session_id(&owner.initialize().await?)?;
    let mut thief = Client::connect(&server).await?;
    let error = thief
        .expect_error(
            "initialize",
            json!({"clientName": "thief", "resumeSessionId": session}),
        )
        .await?;
    check_error(
        &error,
        -32010,
        &format!("session {session} is already attached"),
    )?;
    // The owner keeps its session.
    owner.start(start_params("still-mine", &["true"])).await?;
    owner
        .events_until_closed("still-mine", EVENT_TIMEOUT)
        .await?;
    Ok(())
}
conformance_test!(resume_while_attached_refused);

async fn resume_unknown_session(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    let mut client = Client::connect(&server).await?;
    let unknown = "00000000-0000-4000-8000-000000000000";
    let error = client
        .expect_error(
            "initialize",
            json!({"clientName": "c", "resumeSessionId": unknown}),
        )
        .await?;
    check_error(&error, -32600, &format!("unknown session id {unknown}"))?;
    Ok(())
}
conformance_test!(resume_unknown_session);

/// A client that pipelines `initialized` behind a resume (as one flight) still hears why
/// the resume was refused: the server answers the `initialize` before it closes the
/// connection for the `initialized` that followed a failed handshake. (codex 0.169 and
/// 0.171 reset the connection with the refusal still queued.)
async fn refused_resume_is_answered_before_the_close(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    let mut client = Client::connect(&server).await?;
    let unknown = "00000000-0000-4000-8000-000000000000";
    let id = client.next_request_id();
    client
        .send_burst(&[
            json!({"jsonrpc": "2.0", "id": id, "method": "initialize",
                   "params": {"clientName": "c", "resumeSessionId": unknown}}),
            json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}),
        ])
        .await?;
    let deadline = Instant::now() + RPC_TIMEOUT;
    let answer = client
        .wait_response(&json!(id), deadline)
        .await
        .context("the refusal was lost with the connection")?;
    let error = answer
        .err()
        .context("the resume of an unknown session succeeded")?;
    check_error(&error, -32600, &format!("unknown session id {unknown}"))?;
    client.expect_closed(Duration::from_secs(5)).await?;
    Ok(())
}
conformance_test!(rexec_only("codex resets the connection before the refusal leaves") refused_resume_is_answered_before_the_close);

/// Start `id` as a shell that prints its pid and sleeps 30 s; returns the running pid.
pub async fn start_sleeper(client: &mut Client, id: &str) -> Result<u32> {
    client.start(sh(id, "echo $$; exec sleep 30")).await?;
    let (text, _) = client
        .wait_output_containing(id, "\n", EVENT_TIMEOUT)
        .await?;
    let pid: u32 = text
        .trim()
        .parse()
        .with_context(|| format!("pid line {text:?}"))?;
    ensure!(!process_gone(pid), "child {pid} is not running");
    Ok(pid)
}

/// True once `/proc/<pid>` is gone or the process is a zombie.
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // Field 3, after the parenthesised command name, is the state.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

async fn session_expiry_kills_children(ctx: Ctx) -> Result<()> {
    let options = ServerOptions {
        session_ttl_ms: Some(300),
        ..Default::default()
    };
    let server = ctx.server_with(&options).await?;
    let mut client = Client::connect(&server).await?;
    let session = session_id(&client.initialize().await?)?;
    let pid = start_sleeper(&mut client, "sleeper").await?;
    client.close().await;

    poll_until(
        "the expired session's child died",
        Duration::from_secs(5),
        || process_gone(pid),
    )
    .await?;
    let mut late = Client::connect(&server).await?;
    let error = late
        .expect_error(
            "initialize",
            json!({"clientName": "late", "resumeSessionId": session}),
        )
        .await?;
    check_error(&error, -32600, &format!("unknown session id {session}"))
}
conformance_test!(rexec_only("--session-ttl-ms") session_expiry_kills_children);

async fn closed_process_forgotten_after_retention(ctx: Ctx) -> Result<()> {
    let options = ServerOptions {
        closed_retention_ms: Some(200),
        ..Default::default()
    };
    let server = ctx.server_with(&options).await?;
    let mut client = Client::connect(&server).await?;
    client.initialize().await?;
    client.start(sh("short", "echo once")).await?;
    client.events_until_closed("short", EVENT_TIMEOUT).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match client
            .request("process/read", json!({"processId": "short", "afterSeq": 0}))
            .await?
        {
            Err(error) => {
                check_error(&error, -32600, "unknown process id short")?;
                break;
            }
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(read) => bail!("closed process still readable after 5 s: {read}"),
        }
    }
    client.start(sh("short", "echo twice")).await?;
    let events = client.events_until_closed("short", EVENT_TIMEOUT).await?;
    events.check_sequence(ctx.target)?;
    ensure!(
        events.output("stdout")? == b"twice\n",
        "reused id ran {events:?}"
    );
    Ok(())
}
conformance_test!(rexec_only("--closed-retention-ms") closed_process_forgotten_after_retention);
