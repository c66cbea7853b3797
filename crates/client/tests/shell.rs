//! Named shells end to end: a real server on loopback, real bash and sh (dash here), the
//! client's `Client::shell`. Each boundary case of a command line is one test, run in
//! every shell it makes sense for; zsh runs where it is installed and is skipped visibly
//! otherwise.

mod support;

use rexec_client::{Client, Shell, ShellKind, ShellOutcome};
use rexec_server::ServerConfig;
use rexec_testkit::harness::installed_or_skipped;
use std::future::IntoFuture;
use std::path::Path;
use std::time::Duration;
use support::{Peer, TestServer, connect, within};
use tokio::time::Instant;

/// One test per shell kind; the body gets a fresh server's client and the kind.
macro_rules! each_shell {
    ($name:ident, $body:ident) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn bash() {
                super::$body(ShellKind::Bash).await;
            }
            #[tokio::test]
            async fn sh() {
                super::$body(ShellKind::Sh).await;
            }
            #[tokio::test]
            async fn zsh() {
                // zsh is not on every machine (CI installs it).
                let test = concat!(stringify!($name), "::zsh");
                if installed_or_skipped("zsh", "--version", test).expect("zsh") {
                    super::$body(ShellKind::Zsh).await;
                }
            }
        }
    };
}

async fn setup(kind: ShellKind) -> (TestServer, Client, Shell) {
    let server = TestServer::start().await;
    let client = connect(&server.url).await;
    let shell = client.shell(format!("test-{kind:?}")).kind(kind);
    (server, client, shell)
}

async fn run(shell: &Shell, command: &str) -> ShellOutcome {
    within(command, shell.run(command).into_future())
        .await
        .unwrap_or_else(|err| panic!("{command}: {err}"))
}

fn text(outcome: &ShellOutcome) -> String {
    assert_eq!(outcome.output.omitted_bytes, 0);
    outcome.output.text()
}

async fn state_persists_between_commands(kind: ShellKind) {
    let (_server, _client, shell) = setup(kind).await;
    let first = run(&shell, "cd /tmp && export X=1").await;
    assert_eq!((first.exit_code, text(&first).as_str()), (Some(0), ""));
    let second = run(&shell, "pwd; echo $X").await;
    assert_eq!(text(&second), "/tmp\n1\n");
    assert_eq!(second.exit_code, Some(0));
    assert_eq!(second.cwd.as_deref(), Some(Path::new("/tmp")));
    assert!(!second.timed_out && !second.awaiting_input && !second.shell_exited);
}
each_shell!(state_persists, state_persists_between_commands);

async fn exit_codes_pass_through(kind: ShellKind) {
    let (_server, _client, shell) = setup(kind).await;
    assert_eq!(run(&shell, "false").await.exit_code, Some(1));
    assert_eq!(run(&shell, "(exit 7)").await.exit_code, Some(7));
    assert_eq!(run(&shell, "sh -c 'exit 42'").await.exit_code, Some(42));
    assert_eq!(run(&shell, "true").await.exit_code, Some(0));
}
each_shell!(exit_codes, exit_codes_pass_through);

async fn multi_line_input_is_one_command(kind: ShellKind) {
    let (_server, _client, shell) = setup(kind).await;
    let outcome = run(
        &shell,
        "echo one\necho two\nfor i in a b; do\n  echo $i\ndone\nfalse",
    )
    .await;
    assert_eq!(text(&outcome), "one\ntwo\na\nb\n");
    assert_eq!(outcome.exit_code, Some(1));
    // Nothing of it is left over for the next command.
    assert_eq!(text(&run(&shell, "echo next").await), "next\n");
}
each_shell!(multi_line, multi_line_input_is_one_command);

async fn heredoc(kind: ShellKind) {
    let (_server, _client, shell) = setup(kind).await;
    run(&shell, "Y=expanded").await;
    let outcome = run(
        &shell,
        "cat <<EOF\nline 'one'\n$Y\nEOF\ncat <<'RAW'\n$Y\nRAW",
    )
    .await;
    assert_eq!(text(&outcome), "line 'one'\nexpanded\n$Y\n");
    assert_eq!(outcome.exit_code, Some(0));
}
each_shell!(heredocs, heredoc);

async fn syntax_error(kind: ShellKind) {
    let (_server, _client, shell) = setup(kind).await;
    // zsh calls it a parse error and fails with 1; bash and sh a syntax error, with 2.
    let (code, words) = match kind {
        ShellKind::Zsh => (1, "parse error"),
        _ => (2, "syntax error"),
    };
    let outcome = run(&shell, "echo )").await;
    assert_eq!(outcome.exit_code, Some(code), "{:?}", text(&outcome));
    assert!(
        text(&outcome).to_lowercase().contains(words),
        "{:?}",
        text(&outcome)
    );
    assert!(!outcome.shell_exited);
    let after = run(&shell, "fi; echo unreachable").await;
    assert_ne!(after.exit_code, Some(0));
    assert!(!text(&after).contains("unreachable"));
    assert_eq!(text(&run(&shell, "echo ok").await), "ok\n");
}
each_shell!(syntax_errors, syntax_error);

/// `set -e` in an interactive shell: the failing command ends the shell, as it would in a
/// terminal; that is reported as the shell's exit, and the next command gets a new shell.
async fn set_e_ends_the_shell(kind: ShellKind) {
    let (_server, _client, shell) = setup(kind).await;
    let outcome = run(&shell, "set -e; echo before; false; echo after").await;
    assert!(outcome.shell_exited, "{outcome:?}");
    assert_eq!(outcome.exit_code, Some(1));
    assert!(
        text(&outcome).starts_with("before\n"),
        "{:?}",
        text(&outcome)
    );
    assert!(!text(&outcome).contains("after"));
    let next = run(&shell, "echo fresh; false; echo on").await;
    assert_eq!(text(&next), "fresh\non\n", "the new shell has no set -e");
}
each_shell!(set_e, set_e_ends_the_shell);

async fn exit_ends_the_shell(kind: ShellKind) {
    let (_server, _client, shell) = setup(kind).await;
    let old_pid = text(&run(&shell, "echo $$").await);
    run(&shell, "cd /tmp").await;
    let exit = run(&shell, "exit 5").await;
    assert!(exit.shell_exited, "{exit:?}");
    assert_eq!(exit.exit_code, Some(5));
    assert_eq!(exit.cwd, None);
    let next = run(&shell, "echo $$; pwd").await;
    assert!(!next.shell_exited);
    let lines: Vec<&str> = next.output.text().leak().lines().collect();
    assert_ne!(lines[0], old_pid.trim(), "a new shell");
    assert_ne!(lines[1], "/tmp", "the new shell starts afresh");
}
each_shell!(exit, exit_ends_the_shell);

async fn exec_replaces_the_shell(kind: ShellKind) {
    let (_server, _client, shell) = setup(kind).await;
    // `exec` with only redirections keeps the shell.
    let redirect = run(&shell, "exec 3>/dev/null; echo kept >&3; echo shown").await;
    assert_eq!(
        (text(&redirect).as_str(), redirect.shell_exited),
        ("shown\n", false)
    );
    let replaced = run(&shell, "exec sh -c 'echo replaced; exit 7'").await;
    assert!(replaced.shell_exited, "{replaced:?}");
    assert_eq!(replaced.exit_code, Some(7));
    assert!(text(&replaced).contains("replaced\n"));
    assert_eq!(text(&run(&shell, "echo again").await), "again\n");
}
each_shell!(exec, exec_replaces_the_shell);

async fn background_job_does_not_hold_the_command(kind: ShellKind) {
    let (_server, _client, shell) = setup(kind).await;
    let started = Instant::now();
    let outcome = run(&shell, "sleep 5 & echo started").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(outcome.exit_code, Some(0));
    assert!(
        text(&outcome).ends_with("started\n"),
        "{:?}",
        text(&outcome)
    );
    assert_eq!(text(&run(&shell, "echo next").await), "next\n");
}
each_shell!(background_job, background_job_does_not_hold_the_command);

async fn nested_shell(kind: ShellKind) {
    let (_server, _client, shell) = setup(kind).await;
    let outcome = run(&shell, "bash -c 'echo inner; exit 3'; echo outer $?").await;
    assert_eq!(text(&outcome), "inner\nouter 3\n");
    assert_eq!(outcome.exit_code, Some(0));
    let nested = run(&shell, "sh -c 'bash -c \"cd /; pwd\"'; pwd").await;
    assert_eq!(nested.exit_code, Some(0));
    assert_eq!(text(&nested).lines().next(), Some("/"));
}
each_shell!(nested, nested_shell);

async fn escape_sequences_and_fake_markers(kind: ShellKind) {
    let (_server, _client, shell) = setup(kind).await;
    let outcome = run(
        &shell,
        r"printf '\033[31mred\033[0m\n'; printf '\033]133;D;0\007'; printf '\033]133;D;abc;0\007\033]133;A\007\033]7;file:///x\007'; echo still",
    )
    .await;
    assert_eq!(
        outcome.output.head,
        b"\x1b[31mred\x1b[0m\n\x1b]133;D;0\x07\x1b]133;D;abc;0\x07\x1b]133;A\x07\x1b]7;file:///x\x07still\n"
    );
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(text(&run(&shell, "echo next").await), "next\n");
}
each_shell!(escape_sequences, escape_sequences_and_fake_markers);

async fn timeout_interrupts_and_the_shell_survives(kind: ShellKind) {
    let (_server, _client, shell) = setup(kind).await;
    run(&shell, "cd /tmp; Z=kept").await;
    let started = Instant::now();
    let outcome = within(
        "timed-out command",
        shell
            .run("echo going; sleep 30; echo never")
            .timeout(Duration::from_millis(300))
            .into_future(),
    )
    .await
    .expect("run");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(outcome.timed_out, "{outcome:?}");
    assert!(!outcome.shell_exited);
    assert_eq!(outcome.exit_code, Some(130));
    assert!(!text(&outcome).contains("never"));
    let next = run(&shell, "pwd; echo $Z").await;
    assert_eq!(text(&next), "/tmp\nkept\n");
}
each_shell!(timeout, timeout_interrupts_and_the_shell_survives);

async fn idle_timeout_waits_for_input(kind: ShellKind) {
    let (_server, _client, shell) = setup(kind).await;
    // zsh's `read -p` reads from a coprocess; its prompt is `name?prompt`.
    let ask = match kind {
        ShellKind::Zsh => "read 'n?name? '; echo hello $n",
        _ => "read -p 'name? ' n; echo hello $n",
    };
    let asking = within(
        "read",
        shell
            .run(ask)
            .idle_timeout(Duration::from_millis(300))
            .into_future(),
    )
    .await
    .expect("run");
    assert!(asking.awaiting_input, "{asking:?}");
    assert_eq!(asking.exit_code, None);
    let mut asking = asking;
    // A loaded machine may go quiet before `read` prints its prompt: wait on for it.
    while text(&asking).is_empty() {
        asking = within(
            "prompt",
            shell
                .wait(&asking.command_id)
                .idle_timeout(Duration::from_millis(300))
                .into_future(),
        )
        .await
        .expect("wait");
        assert!(asking.awaiting_input, "{asking:?}");
    }
    assert_eq!(text(&asking), "name? ");
    within("write", shell.write("ada\n")).await.expect("write");
    let done = within("wait", shell.wait(&asking.command_id).into_future())
        .await
        .expect("wait");
    assert!(!done.awaiting_input);
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(text(&done), "name? hello ada\n");
}
each_shell!(idle_timeout, idle_timeout_waits_for_input);

async fn queued_commands_run_in_order(kind: ShellKind) {
    let (_server, client, shell) = setup(kind).await;
    let file =
        std::env::temp_dir().join(format!("rexec-shell-queue-{kind:?}-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let path = file.display().to_string();
    run(&shell, "true").await;
    let first = tokio::spawn({
        let shell = shell.clone();
        // It runs until the test types a line: B and C are sent while it runs.
        let command = format!("read go; echo A >> {path}");
        async move { shell.run(command).await }
    });
    // The first runs, then each later one is queued behind it before the next is sent.
    let until_queued = |queued: u64| {
        let (client, name) = (client.clone(), shell.name().to_owned());
        within("queueing", async move {
            loop {
                let shells = client.shells().await.expect("list");
                let entry = shells.iter().find(|e| e.name == name).expect("listed");
                let running = entry.running.as_ref();
                if running.is_some_and(|r| r.command.contains("read go")) && entry.queued == queued
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    until_queued(0).await;
    let mut later = Vec::new();
    for (index, letter) in ["B", "C"].into_iter().enumerate() {
        let shell_handle = shell.clone();
        let command = format!("echo {letter} >> {path}");
        later.push(tokio::spawn(async move { shell_handle.run(command).await }));
        until_queued(index as u64 + 1).await;
    }
    within("write", shell.write("go\n")).await.expect("write");
    let first = within("first", first).await.expect("join").expect("run");
    assert_eq!(first.exit_code, Some(0));
    for handle in later {
        let outcome = within("queued", handle).await.expect("join").expect("run");
        assert_eq!(outcome.exit_code, Some(0));
    }
    assert_eq!(std::fs::read_to_string(&file).expect("file"), "A\nB\nC\n");
    let _ = std::fs::remove_file(&file);
}
each_shell!(queue, queued_commands_run_in_order);

#[tokio::test]
async fn a_shell_survives_its_client() {
    let server = TestServer::start().await;
    let first = connect(&server.url).await;
    let shell = first.shell("kept");
    run(&shell, "cd /tmp && export Y=2 && f() { echo from f; }").await;
    first.close().await;
    drop(first);
    // A new client of the same principal: another connection and another session.
    let second = connect(&server.url).await;
    let outcome = run(&second.shell("kept"), "pwd; echo $Y; f").await;
    assert_eq!(text(&outcome), "/tmp\n2\nfrom f\n");
    let listed = second.shells().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "kept");
    assert_eq!(listed[0].cwd.as_deref(), Some(Path::new("/tmp")));
    assert!(listed[0].running.is_none());
}

#[tokio::test]
async fn an_unused_shell_closes_after_the_idle_timeout() {
    let config = ServerConfig {
        shell_idle_timeout: Duration::from_millis(400),
        ..ServerConfig::default()
    };
    let server = TestServer::with_config(config).await;
    let client = connect(&server.url).await;
    let shell = client.shell("idle");
    let pid: i32 = text(&run(&shell, "echo $$").await)
        .trim()
        .parse()
        .expect("pid");
    within("idle close", async {
        while !client.shells().await.expect("list").is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    within("shell process gone", async {
        while Path::new(&format!("/proc/{pid}")).exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let next: i32 = text(&run(&shell, "echo $$").await)
        .trim()
        .parse()
        .expect("pid");
    assert_ne!(next, pid, "a new shell");
}

#[tokio::test]
async fn a_long_command_line_and_control_bytes_are_refused_cleanly() {
    let (_server, _client, shell) = setup(ShellKind::Bash).await;
    let err = shell.run("echo \u{3}").await.expect_err("control byte");
    assert!(err.to_string().contains("control byte 0x03"), "{err}");
    let err = shell.run("x".repeat(5000)).await.expect_err("long line");
    assert!(err.to_string().contains("at most"), "{err}");
    assert_eq!(text(&run(&shell, "echo fine").await), "fine\n");
}

/// A client authenticated as `subject` with a signed bearer token.
async fn client_of(server: &TestServer, secret: &str, subject: &str) -> Client {
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    let claims = serde_json::json!({"sub": subject, "exp": expires});
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).expect("key");
    let token =
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("sign");
    let options = rexec_client::ClientOptions {
        token: Some(token),
        ..support::options()
    };
    support::connect_with(&server.url, options).await
}

#[tokio::test]
async fn shells_belong_to_their_principal() {
    let secret = "a shared secret of at least thirty-two bytes";
    let verifier =
        rexec_server::SignedBearer::new(secret.as_bytes(), None, None, 30).expect("verifier");
    let config = ServerConfig {
        auth: rexec_server::Authenticator::SignedBearer(Box::new(verifier)),
        ..ServerConfig::default()
    };
    let server = TestServer::with_config(config).await;
    let alice = client_of(&server, secret, "alice").await;
    let bob = client_of(&server, secret, "bob").await;
    run(&alice.shell("work"), "cd /tmp; SECRET=alice").await;
    assert!(
        bob.shells().await.expect("list").is_empty(),
        "bob sees none of alice's"
    );
    let err = bob
        .shell("work")
        .wait("cmd-1")
        .await
        .expect_err("not bob's");
    assert!(err.to_string().contains("no shell named"), "{err}");
    // The same name is another shell for bob.
    let bobs = run(&bob.shell("work"), "echo \"[$SECRET]\"; pwd").await;
    assert_ne!(text(&bobs), "[alice]\n/tmp\n");
    assert!(text(&bobs).starts_with("[]\n"), "{:?}", text(&bobs));
    assert_eq!(
        text(&run(&alice.shell("work"), "echo $SECRET").await),
        "alice\n"
    );
    // A second client of alice's finds her shell.
    let alice_again = client_of(&server, secret, "alice").await;
    assert_eq!(alice_again.shells().await.expect("list").len(), 1);
}

#[tokio::test]
async fn a_principal_holds_a_bounded_number_of_shells() {
    let (_server, client, _) = setup(ShellKind::Sh).await;
    let mut created = 0;
    let refused = loop {
        let shell = client.shell(format!("many-{created}")).kind(ShellKind::Sh);
        match within("run", shell.run("true").into_future()).await {
            Ok(_) => created += 1,
            Err(err) => break err,
        }
        assert!(created <= 64, "no bound");
    };
    assert_eq!(created, 16);
    assert!(refused.to_string().contains("too many shells"), "{refused}");
    // Ending one makes room.
    let exited = run(&client.shell("many-0"), "exit").await;
    assert!(exited.shell_exited);
    within("slot released", async {
        loop {
            if client.shells().await.expect("list").len() < 16 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    run(&client.shell("one-more").kind(ShellKind::Sh), "true").await;
}

/// On the wire: the output notifications and the finish record share one seq sequence, in
/// order, all before the response; the response's record is the notified one.
#[tokio::test]
async fn output_and_finish_are_one_ordered_sequence_on_the_wire() {
    let server = TestServer::start().await;
    let mut raw = rexec_testkit::client::Client::connect_with_headers(&server.url, &[])
        .await
        .expect("connect");
    raw.initialize().await.expect("initialize");
    let command = "for i in 1 2 3; do echo line $i; sleep 0.05; done; (exit 3)";
    let id = raw
        .send_request(
            "shell/run",
            serde_json::json!({"name": "wire", "command": command}),
        )
        .await
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seqs = Vec::new();
    let mut output = Vec::new();
    let mut finished = None;
    let response = loop {
        let Some(rexec_testkit::client::Incoming::Json(message)) =
            raw.recv_until(deadline).await.expect("recv")
        else {
            panic!("no response before the deadline");
        };
        match message["method"].as_str() {
            Some("shell/output") => {
                assert!(finished.is_none(), "output after the finish record");
                seqs.push(message["params"]["seq"].as_u64().expect("seq"));
                let chunk = message["params"]["chunk"].as_str().expect("chunk");
                output.extend(base64_simd::STANDARD.decode_to_vec(chunk).expect("base64"));
            }
            Some("shell/finished") => finished = Some(message["params"].clone()),
            Some(other) => panic!("unexpected {other}"),
            None if message["id"] == serde_json::json!(id) => break message["result"].clone(),
            None => panic!("unexpected {message}"),
        }
    };
    let finished = finished.expect("a shell/finished notification before the response");
    assert_eq!(output, b"line 1\nline 2\nline 3\n");
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free from 1"
    );
    assert_eq!(finished["seq"].as_u64(), Some(seqs.len() as u64 + 1));
    assert_eq!(finished["exitCode"], 3);
    assert_eq!(finished["shellExited"], false);
    assert_eq!(finished["cwd"], response["finished"]["cwd"]);
    assert_eq!(response["finished"]["seq"], finished["seq"]);
    assert_eq!(response["commandId"], finished["commandId"]);
    assert_eq!(response["output"]["totalBytes"], 21);
}

rexec_testkit::codex_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn codex_has_no_named_shells() {
        let peer = Peer::codex("codex_has_no_named_shells").await;
        let client = connect(peer.url()).await;
        let err = within("run", client.shell("x").run("true").into_future())
            .await
            .expect_err("codex has no shells");
        assert!(
            matches!(&err, rexec_client::ClientError::Unsupported { extension } if extension == "shell/run"),
            "{err}"
        );
    }
}
