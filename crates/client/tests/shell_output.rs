//! `ShellRun::on_output` and `ShellWait::on_output` against a real server: a named shell's
//! output reaches the callback while the command runs, in order, all of it.

mod support;

use rexec_client::{ClientError, Shell, ShellOutcome};
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{TestServer, connect, within};
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(20);

/// A shell call's outcome, within the deadline.
async fn answered<C>(what: &str, call: C) -> ShellOutcome
where
    C: IntoFuture<Output = Result<ShellOutcome, ClientError>>,
{
    within(what, call.into_future())
        .await
        .unwrap_or_else(|err| panic!("{what}: {err}"))
}

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
    let outcome = answered("shell/run", run).await;
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
    let asked = answered(
        "shell/run",
        shell
            .run("read -p 'name? ' n; echo hello $n")
            .idle_timeout(Duration::from_millis(300)),
    )
    .await;
    assert!(asked.awaiting_input, "{asked:?}");
    shell.write("ada\n").await.expect("shell/write");
    let mut rest = Vec::new();
    let done = answered(
        "shell/wait",
        shell
            .wait(&asked.command_id)
            .on_output(|bytes| rest.extend_from_slice(bytes)),
    )
    .await;
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(String::from_utf8_lossy(&rest), "hello ada\n");
}

/// Wait on `id` without streaming until its output so far ends with `text`: the output
/// exists on the server, and nobody streamed it. (A client remembers what an outcome
/// showed it, so the caller under test polls through another client.)
async fn until_output_ends_with(shell: &Shell, id: &str, text: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let outcome = shell
            .wait(id)
            .idle_timeout(Duration::from_millis(100))
            .await
            .expect("shell/wait");
        if outcome.output.text().ends_with(text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "output never ended with {text:?}: {outcome:?}"
        );
    }
}

/// The shell `name` of a client under test, and of another client that looks at it
/// without changing what the first has seen.
async fn caller_and_observer(server: &TestServer, name: &str) -> (Shell, Shell) {
    let caller = connect(&server.url).await.shell(name);
    (caller, connect(&server.url).await.shell(name))
}

/// Run `script`, streaming into `streamed`, until it waits for input; its command id.
async fn ask(shell: &Shell, script: impl Into<String>, streamed: &mut Vec<u8>) -> String {
    let asked = answered(
        "shell/run",
        shell
            .run(script)
            .idle_timeout(Duration::from_millis(300))
            .on_output(|bytes| streamed.extend_from_slice(bytes)),
    )
    .await;
    assert!(asked.awaiting_input, "{asked:?}");
    asked.command_id
}

#[tokio::test]
async fn output_printed_between_calls_reaches_the_next_wait_once_in_order() {
    let server = TestServer::start().await;
    let (shell, observer) = caller_and_observer(&server, "rounds").await;
    let script = "read -p 'a? ' a; echo got $a; read -p 'b? ' b; echo got $b; \
                  read -p 'c? ' c; echo bye $c";
    let mut streamed = Vec::new();
    let id = ask(&shell, script, &mut streamed).await;
    assert_eq!(String::from_utf8_lossy(&streamed), "a? ");

    // Each round: the answer is printed while no call streams, then a wait streams.
    for (typed, printed) in [("1", "got 1\nb? "), ("2", "got 2\nc? ")] {
        shell
            .write(format!("{typed}\n"))
            .await
            .expect("shell/write");
        until_output_ends_with(&observer, &id, printed).await;
        let mut round = Vec::new();
        let outcome = answered(
            "shell/wait",
            shell
                .wait(&id)
                .idle_timeout(Duration::from_millis(300))
                .on_output(|bytes| round.extend_from_slice(bytes)),
        )
        .await;
        assert!(outcome.awaiting_input, "{outcome:?}");
        assert_eq!(String::from_utf8_lossy(&round), printed);
        streamed.extend_from_slice(&round);
    }

    // The last line ends the command before anyone waits with a callback.
    shell.write("3\n").await.expect("shell/write");
    let done = answered("shell/wait", observer.wait(&id)).await;
    assert_eq!(done.exit_code, Some(0));
    let mut last = Vec::new();
    let again = shell
        .wait(&id)
        .on_output(|bytes| last.extend_from_slice(bytes))
        .await
        .expect("shell/wait");
    assert_eq!(again.exit_code, Some(0));
    assert_eq!(String::from_utf8_lossy(&last), "bye 3\n");
    streamed.extend_from_slice(&last);
    assert_eq!(
        String::from_utf8_lossy(&streamed),
        "a? got 1\nb? got 2\nc? bye 3\n"
    );
}

#[tokio::test]
async fn output_past_what_the_server_keeps_is_counted_not_lost_silently() {
    let server = TestServer::start().await;
    let (shell, observer) = caller_and_observer(&server, "floods").await;
    // 600 000 bytes while nobody streams: more than the server keeps for a replay.
    const FLOOD: usize = 600_000;
    let script = format!(
        "read -p 'go? ' a; head -c {FLOOD} /dev/zero | tr '\\0' x; echo; read -p 'end? ' b"
    );
    let mut streamed = Vec::new();
    let id = ask(&shell, script, &mut streamed).await;
    shell.write("\n").await.expect("shell/write");
    until_output_ends_with(&observer, &id, "x\nend? ").await;
    shell.write("\n").await.expect("shell/write");
    let mut rest = Vec::new();
    let done = answered(
        "shell/wait",
        shell
            .wait(&id)
            .on_output(|bytes| rest.extend_from_slice(bytes)),
    )
    .await;
    assert_eq!(done.exit_code, Some(0));
    let total = b"go? ".len() + FLOOD + b"\nend? ".len();
    assert!(done.missed_output_bytes > 0, "{done:?}");
    assert_eq!(
        streamed.len() as u64 + done.missed_output_bytes + rest.len() as u64,
        total as u64,
        "every byte is either streamed or counted as missed"
    );
    assert!(
        rest.ends_with(b"xxx\nend? "),
        "{:?}",
        String::from_utf8_lossy(&rest[rest.len().saturating_sub(20)..])
    );
    assert!(
        rest.iter()
            .all(|&b| matches!(b, b'x' | b'\n' | b'e' | b'n' | b'd' | b'?' | b' '))
    );
}
