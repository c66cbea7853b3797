//! Reattach after a restart: a harness notes its session id, goes away without closing the
//! session, and a new `Client` built with `ClientOptions::resume_session` picks up a process
//! the session still has — output from the first retained seq, then the exit.

mod support;

use rexec_client::{Client, ClientOptions, Endpoint, ProcessEvent};
use support::{TestServer, output_of, sh, within};

fn client(url: &str, options: ClientOptions) -> Client {
    Client::new(Endpoint::WebSocket(url.to_owned()), options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_reattaches_to_a_process_of_a_resumed_session() {
    let server = TestServer::start().await;
    let dir = std::env::temp_dir().join(format!("rexec-reattach-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let go = dir.join("go");
    let _ = std::fs::remove_file(&go);
    let script = format!(
        "echo first; while [ ! -e '{}' ]; do sleep 0.01; done; echo second; exit 7",
        go.display()
    );

    let first = client(&server.url, support::options());
    let process = within("start", first.start(sh(&script).process_id("job-1")))
        .await
        .expect("start");
    let mut events = process.events();
    let event = within("first output", events.next()).await;
    assert!(
        matches!(&event, Some(ProcessEvent::Output { bytes, .. }) if bytes.as_ref() == b"first\n"),
        "{event:?}"
    );
    let session = first.session_id();
    assert!(!session.is_empty());
    // The harness goes away: the socket drops, the session stays detached on the server.
    process.detach();
    drop((events, process, first));
    // What the process prints now, nobody is attached to receive.
    std::fs::write(&go, b"").expect("signal the process");

    let second = client(
        &server.url,
        support::options().resume_session(session.clone()),
    );
    let process = second.process("job-1");
    let events = support::collect(process.events()).await;
    support::assert_gap_free(&events);
    assert_eq!(output_of(&events), b"first\nsecond\n");
    let done = within("wait", process.wait()).await.expect("wait");
    assert_eq!(done.exit_code, 7);
    assert_eq!(done.stdout, b"first\nsecond\n");
    assert_eq!(second.session_id(), session, "the same session");

    // An id the session does not have ends its stream with `Failed`.
    let events = support::collect(second.process("no-such-process").events()).await;
    assert!(
        matches!(events.as_slice(), [ProcessEvent::Failed { .. }]),
        "{events:?}"
    );
    second.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A session id the server does not know fails the first connect with the server's
/// error, not a fresh session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_an_unknown_session_fails() {
    let server = TestServer::start().await;
    let client = client(
        &server.url,
        support::options().resume_session("00000000-0000-0000-0000-000000000000"),
    );
    let err = within("resume unknown", client.run(sh("true")))
        .await
        .expect_err("unknown session");
    assert!(matches!(err, rexec_client::ClientError::Rpc(_)), "{err:?}");
}
