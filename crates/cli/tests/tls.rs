//! `wss://` end to end: `rexec serve --listen wss://…` with certificates from a throw-away
//! CA made here (rcgen), driven by the `rexec` CLI and the client library as a user would.
//! Refusals are checked by exit code (255) and by the reason the message gives; rotation by
//! SIGHUP is checked on a connection kept open across it, waiting on the server's log line.

#[path = "tls/support.rs"]
mod support;

use anyhow::{Context, Result, bail, ensure};
use rexec_client::{ClientError, ProcessSpec};
use rexec_testkit::server;
use server::{Server, ServerOptions, ServerTls, Target};
use std::time::{Duration, Instant};
use support::{
    Ca, CutProxy, DEADLINE, Setup, arg, echo, ensure_refused, library_client, output_of, raw_tls,
    rexec, run, sighup, text, wait_for_log,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn run_over_wss_with_a_private_ca() -> Result<()> {
    let setup = Setup::new()?;
    let server = setup.server(&setup.server_cert, None).await?;
    ensure!(
        server.url.starts_with("wss://127.0.0.1:"),
        "url {}",
        server.url
    );
    let ca = arg(&setup.ca.pem);
    let output = run(
        &server.url,
        &["--ca-file", ca],
        "echo hi; echo err >&2; exit 3",
    )
    .await?;
    ensure!(
        output.stdout == b"hi\n",
        "stdout {:?}",
        text(&output.stdout)
    );
    ensure!(
        output.stderr == b"err\n",
        "stderr {:?}",
        text(&output.stderr)
    );
    ensure!(
        output.status.code() == Some(3),
        "status {:?}",
        output.status
    );

    // The CA from the environment, and the server's DNS name.
    let by_name = server.url.replace("127.0.0.1", "localhost");
    let mut command = rexec();
    command
        .env("REXEC_CA_FILE", ca)
        .args(["run", "--server", &by_name, "--", "echo", "named"]);
    let output = output_of(command).await?;
    ensure!(
        output.status.success() && output.stdout == b"named\n",
        "{:?}: {}",
        output.status,
        text(&output.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn cp_and_ls_over_wss() -> Result<()> {
    let setup = Setup::new()?;
    let server = setup.server(&setup.server_cert, None).await?;
    let ca = arg(&setup.ca.pem);
    let local = setup.path().join("local.txt");
    std::fs::write(&local, "over tls\n")?;
    let remote_dir = setup.path().join("remote");
    std::fs::create_dir(&remote_dir)?;
    let remote = format!("{}:{}/copy.txt", server.url, remote_dir.display());

    let mut command = rexec();
    command.args(["cp", "--ca-file", ca, arg(&local), &remote]);
    let output = output_of(command).await?;
    ensure!(output.status.success(), "cp up: {}", text(&output.stderr));
    ensure!(std::fs::read(remote_dir.join("copy.txt"))? == b"over tls\n");

    let mut command = rexec();
    command.args([
        "ls",
        "--ca-file",
        ca,
        &format!("{}:{}", server.url, remote_dir.display()),
    ]);
    let output = output_of(command).await?;
    ensure!(
        output.status.success() && output.stdout == b"copy.txt\n",
        "ls: {:?} {}",
        text(&output.stdout),
        text(&output.stderr)
    );

    let back = setup.path().join("back.txt");
    let mut command = rexec();
    command.args(["cp", "--ca-file", ca, &remote, arg(&back)]);
    let output = output_of(command).await?;
    ensure!(output.status.success(), "cp down: {}", text(&output.stderr));
    ensure!(std::fs::read(&back)? == b"over tls\n");
    Ok(())
}

#[tokio::test]
async fn server_certificate_refusals_say_what_did_not_match() -> Result<()> {
    let setup = Setup::new()?;
    let ca = arg(&setup.ca.pem);

    let other_name = setup
        .ca
        .issue(setup.path(), "other", &["other.example"], false)?;
    let server = setup.server(&other_name, None).await?;
    let output = run(&server.url, &["--ca-file", ca], "echo no").await?;
    ensure_refused(
        &output,
        "not valid for the name `127.0.0.1`: it is for other.example",
    )?;
    drop(server);

    let expired = setup
        .ca
        .issue(setup.path(), "expired", &["127.0.0.1"], true)?;
    let server = setup.server(&expired, None).await?;
    let output = run(&server.url, &["--ca-file", ca], "echo no").await?;
    ensure_refused(&output, "the server's certificate has expired")?;
    drop(server);

    let server = setup.server(&setup.server_cert, None).await?;
    let output = run(&server.url, &[], "echo no").await?;
    ensure_refused(&output, "issued by an unknown CA")?;
    let stranger = Ca::new(setup.path(), "stranger")?;
    let output = run(&server.url, &["--ca-file", arg(&stranger.pem)], "echo no").await?;
    ensure_refused(&output, "issued by an unknown CA")?;
    Ok(())
}

#[tokio::test]
async fn mtls_accepts_a_good_client_certificate_and_refuses_others() -> Result<()> {
    let setup = Setup::new()?;
    let ca = arg(&setup.ca.pem);
    let clients = Ca::new(setup.path(), "clients")?;
    let server = setup.server(&setup.server_cert, Some(&clients.pem)).await?;

    let alice = clients.issue(setup.path(), "alice", &["alice.example"], false)?;
    let with_alice = [
        "--ca-file",
        ca,
        "--client-cert",
        arg(&alice.cert),
        "--client-key",
        arg(&alice.key),
    ];
    let output = run(&server.url, &with_alice, "echo alice").await?;
    ensure!(
        output.status.success() && output.stdout == b"alice\n",
        "{:?}: {}",
        output.status,
        text(&output.stderr)
    );
    wait_for_log(&server, "client_certificate=CN=alice,O=Example", 1).await?;

    let output = run(&server.url, &["--ca-file", ca], "echo no").await?;
    ensure_refused(&output, "the server requires a client certificate")?;

    let mallory = setup
        .ca
        .issue(setup.path(), "mallory", &["mallory.example"], false)?;
    let with_mallory = [
        "--ca-file",
        ca,
        "--client-cert",
        arg(&mallory.cert),
        "--client-key",
        arg(&mallory.key),
    ];
    let output = run(&server.url, &with_mallory, "echo no").await?;
    ensure_refused(&output, "not issued by a CA the server trusts")?;
    Ok(())
}

/// SIGHUP swaps in a certificate from another CA: the connection opened before keeps
/// working, new connections get the new certificate.
#[tokio::test]
async fn sighup_rotates_the_certificate_without_dropping_connections() -> Result<()> {
    let setup = Setup::new()?;
    let files = setup.live_files()?;
    let server = setup.server(&files, None).await?;
    let before = library_client(&server.url, &setup.ca.pem).await?;
    echo(&before, "before").await?;

    let next_ca = Ca::new(setup.path(), "next-ca")?;
    let next = next_ca.issue(setup.path(), "next", &["127.0.0.1"], false)?;
    std::fs::copy(&next.cert, &files.cert)?;
    std::fs::copy(&next.key, &files.key)?;
    sighup(&server)?;
    wait_for_log(&server, "TLS certificate reloaded", 1).await?;

    echo(&before, "after").await?;
    let output = run(&server.url, &["--ca-file", arg(&setup.ca.pem)], "echo no").await?;
    ensure_refused(&output, "issued by an unknown CA")?;
    let output = run(&server.url, &["--ca-file", arg(&next_ca.pem)], "echo new").await?;
    ensure!(
        output.status.success() && output.stdout == b"new\n",
        "{:?}: {}",
        output.status,
        text(&output.stderr)
    );
    before.close().await;
    Ok(())
}

/// A reload from a broken key, then from a key of another certificate, fails with the file
/// named and the server keeps its certificate.
#[tokio::test]
async fn a_failed_reload_keeps_the_old_certificate() -> Result<()> {
    let setup = Setup::new()?;
    let files = setup.live_files()?;
    let server = setup.server(&files, None).await?;
    let key_name = files.key.display().to_string();

    std::fs::write(
        &files.key,
        "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
    )?;
    sighup(&server)?;
    wait_for_log(&server, "TLS reload failed", 1).await?;
    ensure!(
        server::lock(&server.log()).count(&key_name) > 0,
        "the error names no file\n{}",
        server::lock(&server.log()).render()
    );

    let stranger = setup
        .ca
        .issue(setup.path(), "stranger", &["127.0.0.1"], false)?;
    std::fs::copy(&stranger.key, &files.key)?;
    sighup(&server)?;
    wait_for_log(&server, "TLS reload failed", 2).await?;
    ensure!(
        server::lock(&server.log()).count("does not fit") > 0,
        "{}",
        server::lock(&server.log()).render()
    );

    let output = run(
        &server.url,
        &["--ca-file", arg(&setup.ca.pem)],
        "echo still",
    )
    .await?;
    ensure!(
        output.status.success() && output.stdout == b"still\n",
        "{:?}: {}",
        output.status,
        text(&output.stderr)
    );
    Ok(())
}

/// A socket that never starts its TLS handshake is a pending handshake: closed at the
/// handshake timeout, and evicted for a newer connection at the pending cap.
#[tokio::test]
async fn a_stalled_tls_handshake_is_shed() -> Result<()> {
    let setup = Setup::new()?;
    let tls = ServerTls {
        cert: setup.server_cert.cert.clone(),
        key: setup.server_cert.key.clone(),
        client_ca: None,
    };
    let options = ServerOptions {
        tls: Some(tls.clone()),
        handshake_timeout_ms: Some(1000),
        ..Default::default()
    };
    let server = Server::spawn(Target::Rexec, &options).await?;
    let timeout = Duration::from_millis(1000);
    // Silent; half a TLS record; a late TLS handshake and no request. The last is closed at
    // the same deadline: the TLS handshake and the request share one timeout.
    for stall in ["silent", "half a record", "no request"] {
        let started = Instant::now();
        let mut answer = Vec::new();
        let read = match stall {
            "silent" => {
                let mut tcp = TcpStream::connect(server.addr).await?;
                tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await
            }
            "half a record" => {
                let mut tcp = TcpStream::connect(server.addr).await?;
                tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await?;
                tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await
            }
            _ => {
                // A slow start: most of the timeout is gone when the TLS handshake is done.
                let tcp = TcpStream::connect(server.addr).await?;
                tokio::time::sleep(timeout * 6 / 10).await;
                let mut tls = raw_tls(tcp, &setup.ca.pem).await?;
                tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await
            }
        };
        ensure!(
            read.is_ok(),
            "{stall}: the socket was kept open past the handshake timeout"
        );
        let elapsed = started.elapsed();
        ensure!(
            elapsed >= timeout - Duration::from_millis(100),
            "{stall}: closed after {elapsed:?}, before the timeout"
        );
        ensure!(
            stall != "no request" || elapsed < timeout + timeout * 3 / 10,
            "{stall}: closed after {elapsed:?}: the request got a timeout of its own"
        );
    }
    drop(server);

    let options = ServerOptions {
        tls: Some(tls),
        max_pending_handshakes: Some(1),
        ..Default::default()
    };
    let server = Server::spawn(Target::Rexec, &options).await?;
    let mut stalled = TcpStream::connect(server.addr).await?;
    let client = library_client(&server.url, &setup.ca.pem).await?;
    echo(&client, "in").await?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut answer))
        .await
        .context("a stalled TLS handshake was not evicted for a newer connection")?;
    Ok(())
}

/// A connection cut under a running process: the client resumes its session over a new
/// TLS connection, its stdin write goes through, and the output is whole.
#[tokio::test]
async fn a_session_resumes_over_wss_after_a_cut() -> Result<()> {
    let setup = Setup::new()?;
    let server = setup.server(&setup.server_cert, None).await?;
    let proxy = CutProxy::start(server.addr).await?;
    let client = library_client(&format!("wss://{}", proxy.addr), &setup.ca.pem).await?;
    let spec = ProcessSpec::new(["sh", "-c", "echo one; read x; echo two $x"])
        .env("PATH", "/usr/bin:/bin")
        .pipe_stdin(true);
    let process = client.start(spec).await?;
    proxy.cut_all();
    tokio::time::timeout(DEADLINE, process.write(b"go\n"))
        .await
        .context("the write after the cut did not finish")??;
    let done = tokio::time::timeout(DEADLINE, process.wait())
        .await
        .context("no completion after the cut")??;
    ensure!(
        done.stdout == b"one\ntwo go\n" && done.gaps.is_empty(),
        "stdout {:?}, gaps {:?}",
        text(&done.stdout),
        done.gaps
    );
    let initializes = client.stats().requests("initialize");
    ensure!(
        initializes == 2,
        "{initializes} initialize requests: no resume happened"
    );
    client.close().await;
    Ok(())
}

/// At the connection cap a TLS client is closed on, not sent a plaintext 503 it would
/// take for a TLS failure: the error is a connect error (retried on a resume), not a
/// certificate one (final).
#[tokio::test]
async fn the_connection_cap_refuses_tls_clients_with_a_close() -> Result<()> {
    let setup = Setup::new()?;
    let options = ServerOptions {
        tls: Some(ServerTls {
            cert: setup.server_cert.cert.clone(),
            key: setup.server_cert.key.clone(),
            client_ca: None,
        }),
        max_connections: Some(1),
        ..Default::default()
    };
    let server = Server::spawn(Target::Rexec, &options).await?;
    let first = library_client(&server.url, &setup.ca.pem).await?;
    match library_client(&server.url, &setup.ca.pem).await {
        Ok(_) => bail!("a second connection was admitted past --max-connections 1"),
        Err(err) => match err.downcast_ref::<ClientError>() {
            Some(ClientError::Connect { .. }) => {}
            other => bail!("expected a connect error, got {other:?}: {err:#}"),
        },
    }
    echo(&first, "first").await?;
    Ok(())
}

/// `/readyz` answers on the TLS listener.
#[tokio::test]
async fn readyz_over_tls() -> Result<()> {
    let setup = Setup::new()?;
    let server = setup.server(&setup.server_cert, None).await?;
    let mut tls = raw_tls(TcpStream::connect(server.addr).await?, &setup.ca.pem).await?;
    tls.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
        .await
        .context("no answer to /readyz")??;
    ensure!(
        text(&answer).starts_with("HTTP/1.1 200"),
        "answer {:?}",
        text(&answer)
    );
    Ok(())
}

#[tokio::test]
async fn serve_refuses_inconsistent_tls_flags() -> Result<()> {
    let setup = Setup::new()?;
    let cert = arg(&setup.server_cert.cert);
    let key = arg(&setup.server_cert.key);
    let cases: [(&[&str], &str); 3] = [
        (
            &["--listen", "wss://127.0.0.1:0"],
            "needs both --tls-cert FILE and --tls-key FILE",
        ),
        (
            &["--listen", "wss://127.0.0.1:0", "--tls-cert", cert],
            "needs both --tls-cert",
        ),
        (
            &[
                "--listen",
                "ws://127.0.0.1:0",
                "--tls-cert",
                cert,
                "--tls-key",
                key,
            ],
            "need a --listen wss://",
        ),
    ];
    for (args, reason) in cases {
        let mut command = rexec();
        command.arg("serve").args(args);
        let output = output_of(command).await?;
        ensure!(!output.status.success(), "{args:?} started");
        ensure!(output.stdout.is_empty(), "{args:?} printed a URL");
        ensure!(
            text(&output.stderr).contains(reason),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
    let missing = setup.path().join("missing.key");
    let mut command = rexec();
    command.args([
        "serve",
        "--listen",
        "wss://127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        arg(&missing),
    ]);
    let output = output_of(command).await?;
    ensure!(!output.status.success(), "started with a missing key");
    ensure!(
        text(&output.stderr).contains(arg(&missing)),
        "{}",
        text(&output.stderr)
    );
    Ok(())
}
