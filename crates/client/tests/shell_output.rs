//! `ShellRun::on_output` and `ShellWait::on_output` against a real server: a named shell's
//! output reaches the callback while the command runs, in order, all of it.

mod support;

use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{TestServer, connect};
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn output_arrives_while_the_command_runs_and_all_of_it() {
    let server = TestServer::start().await;
    let client = connect(&server.url).await;
    let shell = client.shell("live");
    let seen: Arc<Mutex<(Vec<u8>, Option<Instant>)>> = Arc::default();
    let record = Arc::clone(&seen);
    // The pause is the command's own: its first line exists half a second before its end.
    let run = shell
        .run("echo first; sleep 0.5; seq 1 20000")
        .on_output(move |bytes| {
            let mut seen = record.lock().expect("not poisoned");
            seen.1.get_or_insert_with(Instant::now);
            seen.0.extend_from_slice(bytes);
        });
    let outcome = tokio::time::timeout(DEADLINE, run.into_future())
        .await
        .expect("the command did not finish")
        .expect("shell/run");
    let answered = Instant::now();
    let (streamed, first_at) = seen.lock().expect("not poisoned").clone();
    let mut expected = b"first\n".to_vec();
    for i in 1..=20000 {
        expected.extend_from_slice(format!("{i}\n").as_bytes());
    }
    assert_eq!(outcome.exit_code, Some(0));
    assert!(streamed == expected, "streamed {} bytes", streamed.len());
    // The summary's head and tail are the streamed bytes' head and tail.
    let total = outcome.output.head.len() + outcome.output.tail.len();
    assert_eq!(
        total as u64 + outcome.output.omitted_bytes,
        expected.len() as u64
    );
    assert!(expected.starts_with(&outcome.output.head));
    assert!(expected.ends_with(&outcome.output.tail));
    let lead = answered - first_at.expect("no output reached the callback");
    assert!(
        lead >= Duration::from_millis(300),
        "first output only {lead:?} before the end"
    );
}

#[tokio::test]
async fn a_wait_streams_the_rest_after_input() {
    let server = TestServer::start().await;
    let client = connect(&server.url).await;
    let shell = client.shell("asks");
    let asked = tokio::time::timeout(
        DEADLINE,
        shell
            .run("read -p 'name? ' n; echo hello $n")
            .idle_timeout(Duration::from_millis(300))
            .into_future(),
    )
    .await
    .expect("no answer")
    .expect("shell/run");
    assert!(asked.awaiting_input, "{asked:?}");
    shell.write("ada\n").await.expect("shell/write");
    let mut rest = Vec::new();
    let done = tokio::time::timeout(
        DEADLINE,
        shell
            .wait(&asked.command_id)
            .on_output(|bytes| rest.extend_from_slice(bytes))
            .into_future(),
    )
    .await
    .expect("the command did not finish")
    .expect("shell/wait");
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(String::from_utf8_lossy(&rest), "hello ada\n");
}
