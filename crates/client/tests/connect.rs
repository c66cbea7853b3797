//! Connecting: bearer tokens (401), refused and silent endpoints, the handshake's
//! environment info and extensions, a server spawned over stdio, and an orderly close.

mod support;

use rexec_client::{Client, ClientError, ClientOptions, Endpoint, ProcessEvent};
use rexec_protocol::extensions;
use rexec_server::{Authenticator, Server, ServerConfig};
use std::path::PathBuf;
use std::time::Duration;
use support::proxy::{Proxy, Verdict};
use support::{TestServer, collect, connect, sh, within};
use tokio::net::TcpListener;

async fn try_connect(url: &str, options: ClientOptions) -> Result<Client, ClientError> {
    Client::connect(Endpoint::WebSocket(url.to_owned()), options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_token_is_unauthorized() {
    let server = TestServer::with_config(ServerConfig {
        auth: Authenticator::capability_token("s3cret"),
        ..ServerConfig::default()
    })
    .await;
    let err = try_connect(&server.url, support::options())
        .await
        .expect_err("no token");
    assert!(matches!(err, ClientError::Unauthorized { .. }), "{err:?}");
    let wrong = ClientOptions {
        token: Some("guess".to_owned()),
        ..support::options()
    };
    let err = try_connect(&server.url, wrong)
        .await
        .expect_err("wrong token");
    assert!(matches!(err, ClientError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("401"), "{err}");
    let right = ClientOptions {
        token: Some("s3cret".to_owned()),
        ..support::options()
    };
    let client = try_connect(&server.url, right).await.expect("right token");
    let done = within("run", client.run(sh("echo ok"))).await.expect("run");
    assert_eq!(done.stdout, b"ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let err = try_connect(&url, support::options())
        .await
        .expect_err("refused");
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
    let err = try_connect("http://127.0.0.1:1", support::options())
        .await
        .expect_err("not ws");
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_endpoints_time_out() {
    // accepts TCP but never answers the upgrade
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("addr"));
    let hold = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(200),
        ..support::options()
    };
    let err = try_connect(&url, options).await.expect_err("silent");
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    hold.abort();

    // upgrades but never answers initialize
    let server = TestServer::start().await;
    let proxy = Proxy::start(&server.url).await;
    proxy.set_rule(|f| {
        if f.answers == Some("initialize") {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    });
    let options = ClientOptions {
        initialize_timeout: Duration::from_millis(200),
        ..support::options()
    };
    let err = try_connect(&proxy.url, options)
        .await
        .expect_err("no initialize answer");
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("initialize"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_reports_session_environment_and_extensions() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(&server.url).await;
    let client = connect(&proxy.url).await;
    assert!(!client.session_id().is_empty());
    let info = client.environment_info().expect("environment info");
    assert_eq!(info.platform_os.as_deref(), Some("linux"));
    for extension in extensions::ALL {
        assert!(client.supports(extension), "{extension}");
    }
    assert!(!client.supports("process/teleport"));
    // The default cwd is the server's.
    let done = within("run", client.run(sh("pwd"))).await.expect("run");
    let cwd = info.cwd.expect("server cwd").into_path();
    assert_eq!(
        String::from_utf8_lossy(&done.stdout).trim(),
        cwd.display().to_string()
    );
    assert_eq!(proxy.count("initialize"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialized_is_pipelined_behind_initialize() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(&server.url).await;
    proxy.set_rule(|f| {
        if f.answers == Some("initialize") {
            Verdict::Delay(Duration::from_millis(500))
        } else {
            Verdict::Pass
        }
    });
    let url = proxy.url.clone();
    let connecting = tokio::spawn(async move { connect(&url).await });
    proxy
        .wait_for("initialized before the initialize answer", |s| {
            s.client_notifications.get("initialized") == Some(&1)
        })
        .await;
    assert!(
        !connecting.is_finished(),
        "initialized must not wait for the answer"
    );
    let client = within("connect", connecting).await.expect("connect task");
    assert!(!client.session_id().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_live_streams_and_later_calls() {
    let server = TestServer::start().await;
    let client = connect(&server.url).await;
    let process = client.start(sh("sleep 30")).await.expect("start");
    let events = process.events();
    client.close().await;
    let events = collect(events).await;
    assert!(
        matches!(events.last(), Some(ProcessEvent::Failed { .. })),
        "{events:?}"
    );
    let err = within("wait", process.wait()).await.expect_err("closed");
    assert!(matches!(err, ClientError::Disconnected(_)), "{err:?}");
    let err = client.start(sh("true")).await.expect_err("closed");
    assert!(err.to_string().contains("closed"), "{err}");
}

const STDIO_CHILD: &str = "REXEC_CLIENT_TEST_STDIO_SERVER";

/// Not a test of its own: the stdio server that `a_stdio_endpoint_runs_processes` spawns by
/// running this test binary again with `STDIO_CHILD` set. libtest's own lines on stdout
/// ("running 1 test") are not JSON and the client skips them.
#[test]
fn stdio_server_child() {
    if std::env::var_os(STDIO_CHILD).is_none() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let server = Server::new(ServerConfig::default());
        rexec_server::serve_stdio(server.clone()).await;
        server.kill_all_processes();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_endpoint_runs_processes() {
    let exe = std::env::current_exe().expect("test binary");
    let endpoint = Endpoint::Stdio {
        program: PathBuf::from("/usr/bin/env"),
        args: vec![
            format!("{STDIO_CHILD}=1"),
            exe.display().to_string(),
            "--exact".to_owned(),
            "stdio_server_child".to_owned(),
            "--quiet".to_owned(),
            "--test-threads=2".to_owned(),
        ],
    };
    let client = Client::connect(endpoint, support::options())
        .await
        .expect("connect over stdio");
    assert!(client.supports(extensions::ORDERED_NOTIFICATIONS));
    // Lines are text: output stays JSON even though binary output is on by default.
    assert!(support::options().binary_output && !client.binary_output());
    let done = within("run", client.run(sh("echo over stdio; exit 4")))
        .await
        .expect("run");
    assert_eq!(
        (done.exit_code, done.stdout.as_slice()),
        (4, &b"over stdio\n"[..])
    );
    let runs = (0..8).map(|i| {
        let client = client.clone();
        async move {
            client
                .run(sh(&format!("echo {i}")))
                .await
                .expect("run")
                .stdout
        }
    });
    let outputs = within("runs", futures_util::future::join_all(runs)).await;
    assert_eq!(outputs[7], b"7\n");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_answers_the_servers_pings() {
    // The server drops a peer that stays silent for a ping interval; with resuming off, a
    // dropped connection would fail the process.
    let server = TestServer::with_config(ServerConfig {
        ping_interval: Duration::from_millis(100),
        ..ServerConfig::default()
    })
    .await;
    let options = ClientOptions {
        resume_window: Duration::ZERO,
        ..support::options()
    };
    let client = support::connect_with(&server.url, options).await;
    let done = within("run", client.run(sh("sleep 1; echo still here")))
        .await
        .expect("the connection survived 10 ping intervals");
    assert_eq!(done.stdout, b"still here\n");
}
