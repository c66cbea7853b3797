//! `rexec run --shell`, `rexec shells` and `rexec shell --attach`, end to end: the real
//! `rexec` binary against a real `rexec serve`, as a user (or an agent) runs them.

use anyhow::{Context, Result, ensure};
use rexec_testkit::harness::{installed_or_skipped, output_within};
use rexec_testkit::server::{Server, ServerOptions, Target};
use rexec_testkit::tmux::Tmux;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

const DEADLINE: Duration = Duration::from_secs(20);

fn rexec(server: &Server) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rexec"));
    command.env("REXEC_SERVER", &server.url).kill_on_drop(true);
    command
}

/// `rexec ARGS` with `stdin` piped in (or /dev/null), to its end.
async fn cli(server: &Server, args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
    let mut command = rexec(server);
    command.args(args);
    output_within(command, stdin, DEADLINE).await
}

/// `rexec run --shell NAME -- LINE`.
async fn in_shell(server: &Server, name: &str, line: &str) -> Result<Output> {
    cli(server, &["run", "--shell", name, "--", line], None).await
}

/// `rexec ARGS LINE` running, once its first line of stdout is `first` (the rest of its
/// stdout is returned to be kept open).
async fn started(
    server: &Server,
    args: &[&str],
    line: &str,
    first: &str,
) -> Result<(Child, BufReader<ChildStdout>)> {
    let mut child = rexec(server)
        .args(args)
        .arg(line)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
    let mut seen = String::new();
    tokio::time::timeout(DEADLINE, stdout.read_line(&mut seen))
        .await
        .context("no first line")??;
    ensure!(seen == first, "first line {seen:?}");
    Ok((child, stdout))
}

/// `rexec run --shell NAME -- LINE` prints `stdout` and exits `code`.
async fn expect_run(
    server: &Server,
    name: &str,
    line: &str,
    stdout: &str,
    code: i32,
) -> Result<()> {
    expect(&in_shell(server, name, line).await?, stdout, code)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn expect(output: &Output, stdout: &str, code: i32) -> Result<()> {
    ensure!(
        text(&output.stdout) == stdout && output.status.code() == Some(code),
        "wanted {stdout:?} and exit {code}, got {:?} and {:?} (stderr {:?})",
        text(&output.stdout),
        output.status,
        text(&output.stderr)
    );
    Ok(())
}

async fn rexec_server() -> Result<Server> {
    Server::spawn(Target::Rexec, &ServerOptions::default()).await
}

#[tokio::test]
async fn cd_and_exports_persist_between_runs() -> Result<()> {
    let server = rexec_server().await?;
    expect_run(&server, "s", "cd /tmp && export X=1", "", 0).await?;
    expect_run(&server, "s", "pwd; echo $X", "/tmp\n1\n", 0).await?;
    // Functions persist too, and words are joined as a shell would see them.
    expect_run(&server, "s", "greet() { echo hi $1; }", "", 0).await?;
    let output = cli(
        &server,
        &["run", "--shell", "s", "--", "greet", "ada"],
        None,
    )
    .await?;
    expect(&output, "hi ada\n", 0)?;
    // Another name is another shell.
    expect_run(&server, "t", "echo ${X:-unset}", "unset\n", 0).await
}

#[tokio::test]
async fn exit_codes_pass_through() -> Result<()> {
    let server = rexec_server().await?;
    expect_run(&server, "codes", "(exit 7)", "", 7).await?;
    expect_run(&server, "codes", "false", "", 1).await?;
    // A signal's death is 128+N (bash also reports `Terminated` on the terminal).
    let killed = in_shell(&server, "codes", "sh -c 'kill -TERM $$'").await?;
    ensure!(killed.status.code() == Some(143), "{killed:?}");
    expect_run(&server, "codes", "echo fine", "fine\n", 0).await
}

#[tokio::test]
async fn a_timeout_exits_124_and_the_shell_runs_the_next_command() -> Result<()> {
    let server = rexec_server().await?;
    expect_run(&server, "slow", "cd /tmp", "", 0).await?;
    let started = Instant::now();
    let output = cli(
        &server,
        &[
            "run",
            "--shell",
            "slow",
            "--timeout",
            "1s",
            "--",
            "sleep 30",
        ],
        None,
    )
    .await?;
    let took = started.elapsed();
    ensure!(
        output.status.code() == Some(124),
        "status {:?}, stderr {:?}",
        output.status,
        text(&output.stderr)
    );
    ensure!(took < Duration::from_secs(2), "took {took:?}");
    ensure!(
        text(&output.stderr).contains("timed out after 1s"),
        "stderr {:?}",
        text(&output.stderr)
    );
    expect_run(&server, "slow", "pwd", "/tmp\n", 0).await
}

#[tokio::test]
async fn output_streams_while_the_command_runs() -> Result<()> {
    let server = rexec_server().await?;
    let args = ["run", "--shell", "live", "--timeout", "5s", "--"];
    let (mut child, _stdout) = started(
        &server,
        &args,
        "echo first; sleep 30; echo never",
        "first\n",
    )
    .await?;
    ensure!(
        child.try_wait()?.is_none(),
        "rexec ended before the command did"
    );
    let status = tokio::time::timeout(DEADLINE, child.wait()).await??;
    ensure!(status.code() == Some(124), "status {status:?}");
    Ok(())
}

#[tokio::test]
async fn shells_lists_the_shell_with_its_cwd_and_running_command() -> Result<()> {
    let server = rexec_server().await?;
    expect_run(&server, "listed", "cd /tmp", "", 0).await?;
    let output = cli(&server, &["shells"], None).await?;
    let table = text(&output.stdout);
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    ensure!(
        header.split_whitespace().collect::<Vec<_>>()
            == ["NAME", "SHELL", "CWD", "IDLE", "RUNNING", "QUEUED"],
        "header {header:?}"
    );
    let row: Vec<&str> = lines
        .find(|line| line.starts_with("listed "))
        .context(format!("no row for the shell:\n{table}"))?
        .split_whitespace()
        .collect();
    ensure!(
        row[1] == "bash" && row[2] == "/tmp" && row[4] == "-" && row[5] == "0",
        "row {row:?}"
    );

    // While a command runs (another rexec waits on it), the table shows it.
    let mut busy = rexec(&server);
    busy.args(["run", "--shell", "listed", "--timeout", "10s", "--"])
        .arg("sleep 30")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut busy = busy.spawn()?;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let table = text(&cli(&server, &["shells"], None).await?.stdout);
        if table
            .lines()
            .any(|line| line.starts_with("listed ") && line.contains("sleep 30 ("))
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "never listed as running:\n{table}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    busy.kill().await?;
    Ok(())
}

#[tokio::test]
async fn a_command_waiting_for_input_gets_a_line_of_stdin_or_ends_with_125() -> Result<()> {
    let server = rexec_server().await?;
    let ask = ["run", "--shell", "ask", "--idle-timeout", "300ms", "--"];
    let read = "read -p 'name? ' n; echo hello $n";
    let answered = cli(&server, &[&ask[..], &[read]].concat(), Some(b"ada\n")).await?;
    expect(&answered, "name? hello ada\n", 0)?;

    let unanswered = cli(&server, &[&ask[..], &[read]].concat(), None).await?;
    ensure!(
        unanswered.status.code() == Some(125)
            && text(&unanswered.stderr).contains("waited for input"),
        "{unanswered:?}"
    );
    // The shell was not left blocked on the read.
    expect_run(&server, "ask", "echo next", "next\n", 0).await
}

#[tokio::test]
async fn attach_runs_each_line_in_the_named_shell() -> Result<()> {
    let server = rexec_server().await?;
    expect_run(&server, "shared", "export FROM_AGENT=yes", "", 0).await?;
    let script = b"cd /tmp\npwd; echo $FROM_AGENT\nfalse\n";
    let output = cli(&server, &["shell", "--attach", "shared"], Some(script)).await?;
    let transcript = text(&output.stdout);
    for expected in [
        "shared:/tmp$ pwd; echo $FROM_AGENT\n/tmp\nyes\n",
        "[exit 1]\n",
    ] {
        ensure!(
            transcript.contains(expected),
            "no {expected:?} in:\n{transcript}"
        );
    }
    ensure!(
        output.status.code() == Some(1),
        "status {:?}",
        output.status
    );
    // What the person did is in the shell the agent uses.
    expect_run(&server, "shared", "pwd", "/tmp\n", 0).await
}

#[tokio::test]
async fn zsh_keeps_state_too_when_installed() -> Result<()> {
    if !installed_or_skipped("zsh", "--version", "zsh_keeps_state_too")? {
        return Ok(());
    }
    let server = rexec_server().await?;
    let zsh = ["run", "--shell", "z", "--shell-kind", "zsh", "--"];
    let first = cli(
        &server,
        &[&zsh[..], &["cd /tmp && export X=1"]].concat(),
        None,
    )
    .await?;
    expect(&first, "", 0)?;
    let second = cli(
        &server,
        &[&zsh[..], &["pwd; echo $X; (exit 3)"]].concat(),
        None,
    )
    .await?;
    expect(&second, "/tmp\n1\n", 3)
}

#[tokio::test]
async fn ctrl_c_interrupts_the_remote_command_and_the_shell_survives() -> Result<()> {
    let server = rexec_server().await?;
    // One foreground program from the first byte on: bash's own builtins between two
    // programs may miss a SIGINT (the server escalates only on --timeout).
    let line = "sh -c 'echo started; exec sleep 30'; echo never";
    let args = ["run", "--shell", "intr", "--"];
    let (mut child, _stdout) = started(&server, &args, line, "started\n").await?;
    let pid = child.id().context("pid")?.to_string();
    let kill = Command::new("kill").args(["-INT", &pid]).status().await?;
    ensure!(kill.success(), "kill -INT failed");
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .context("rexec did not end after Ctrl-C")??;
    ensure!(status.code() == Some(130), "status {status:?}");
    expect_run(&server, "intr", "echo alive", "alive\n", 0).await
}

#[tokio::test]
async fn exit_ends_the_shell_and_the_next_run_starts_a_new_one() -> Result<()> {
    let server = rexec_server().await?;
    expect_run(&server, "ends", "export GONE=1", "", 0).await?;
    let ended = in_shell(&server, "ends", "exit 3").await?;
    ensure!(
        ended.status.code() == Some(3) && text(&ended.stderr).contains("ended shell `ends`"),
        "{ended:?}"
    );
    expect_run(&server, "ends", "echo ${GONE:-fresh}", "fresh\n", 0).await
}

#[tokio::test]
async fn attach_on_a_terminal_types_into_a_running_command_and_interrupts_it() -> Result<()> {
    let server = rexec_server().await?;
    expect_run(&server, "seen", "cd /tmp", "", 0).await?;
    let command = format!(
        "{} shell --server {} --attach seen",
        env!("CARGO_BIN_EXE_rexec"),
        server.url
    );
    let Some(tmux) = Tmux::start("attach_on_a_terminal", &command, 100, 30).await? else {
        return Ok(());
    };
    tmux.wait_for("seen:/tmp$").await?;
    // Each needle appears only in output, never in the typed line the terminal echoes.
    tmux.type_line("read -p 'na''me? ' n; echo hello-$n")
        .await?;
    tmux.wait_for("name?").await?;
    tmux.type_line("ada").await?;
    tmux.wait_for("hello-ada").await?;

    tmux.type_line("sh -c 'echo sleep\"\"ing; exec sleep 30'")
        .await?;
    tmux.wait_for("sleeping").await?;
    tmux.press("C-c").await?;
    tmux.wait_for("[exit 130]").await?;
    tmux.type_line("echo after-$((1+1))").await?;
    tmux.wait_for("after-2").await?;

    tmux.press("C-d").await?;
    tmux.until_ended("Ctrl-D").await?;
    // The shell stays.
    expect_run(&server, "seen", "echo $n", "ada\n", 0).await
}
