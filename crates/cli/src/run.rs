//! `rexec run`: run one command on the server, stream its stdout and stderr to ours as they
//! arrive, forward our stdin when it is not a terminal, and exit with its exit code. With
//! `--shell NAME` the command line runs in a named shell instead (`shell_run`).

use crate::connect::{ServerArgs, parse_env_pair};
use crate::duration::parse_duration;
use crate::local_stdin::LocalStdin;
use crate::shell_run;
use rexec_client::sandbox::{
    AccessMode, FileSystemEntry, FileSystemPath, FileSystemPermissions, PermissionProfile,
    SpecialPath,
};
use rexec_client::{
    DenialRule, NetworkAccess, OutputStream, Process, ProcessEvent, ProcessSpec, SandboxContext,
    SandboxDenial, extensions,
};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Run the command in a pseudo-terminal (output arrives as one stream).
    #[arg(long)]
    pub tty: bool,
    /// Working directory on the server (default: the server's own).
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Set NAME=VALUE in the remote environment (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env_pair)]
    pub env: Vec<(String, String)>,
    /// Start from an empty environment instead of the server's HOME, PATH, USER, SHELL, TMPDIR.
    #[arg(long)]
    pub clean_env: bool,
    /// Run under a sandbox the server enforces: `read-only` (nothing writable) or
    /// `workspace-write` (the working directory, /tmp, $TMPDIR and every --writable DIR).
    #[arg(long, value_enum)]
    pub sandbox: Option<SandboxMode>,
    /// Another directory the sandboxed command may write (repeatable).
    #[arg(long, value_name = "DIR", requires = "sandbox")]
    pub writable: Vec<PathBuf>,
    /// Network access for the sandboxed command.
    #[arg(long, value_enum, default_value = "off", requires = "sandbox")]
    pub network: Network,
    /// Run the command line in the named shell NAME on the server (started on first use,
    /// kept between runs): `cd`, exports and functions persist. The words are joined with
    /// spaces and the shell parses the line, as with ssh.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["tty", "clean_env"])]
    pub shell: Option<String>,
    /// Which shell a new named shell runs.
    #[arg(long, value_enum, requires = "shell")]
    pub shell_kind: Option<shell_run::Kind>,
    /// Interrupt the command after DURATION (10, 1.5s, 500ms, 2m) and exit 124; the named
    /// shell survives.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "shell")]
    pub timeout: Option<Duration>,
    /// Silence this long means the command waits for input: type it the next line of our
    /// stdin, or interrupt it and exit 125 when stdin has none left.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "shell")]
    pub idle_timeout: Option<Duration>,
    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxMode {
    ReadOnly,
    WorkspaceWrite,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    Off,
    On,
}

/// The policy for `--sandbox`: read everything; write what the mode allows.
pub fn sandbox_policy(mode: SandboxMode, writable: &[PathBuf], network: Network) -> SandboxContext {
    let network = match network {
        Network::Off => NetworkAccess::Restricted,
        Network::On => NetworkAccess::Enabled,
    };
    let mut policy = SandboxContext::managed(writable, network);
    if mode == SandboxMode::WorkspaceWrite
        && let Some(PermissionProfile::Managed {
            file_system: FileSystemPermissions::Restricted { entries, .. },
            ..
        }) = &mut policy.permissions
    {
        let workspace = [
            SpecialPath::ProjectRoots { subpath: None },
            SpecialPath::SlashTmp,
            SpecialPath::Tmpdir,
        ];
        entries.extend(workspace.map(|value| FileSystemEntry {
            path: FileSystemPath::Special { value },
            access: AccessMode::Write,
            missing_path_behavior: None,
        }));
    }
    policy
}

/// Run the command; the exit code to leave with.
pub async fn run(args: RunArgs) -> anyhow::Result<i32> {
    if let Some(name) = &args.shell {
        return shell_run::run(&args, name).await;
    }
    // The output is streamed by the first subscriber (lossless: held from the first byte),
    // not kept for the completion.
    let mut spec = ProcessSpec::new(args.command.clone())
        .tty(args.tty)
        .lossless(true)
        .output_budget(0)
        .envs(args.env.iter().cloned());
    spec.cwd = args.cwd.clone();
    if args.clean_env {
        spec = spec.clean_env();
    }
    if let Some(mode) = args.sandbox {
        spec.sandbox = Some(sandbox_policy(mode, &args.writable, args.network));
    }
    if args.tty
        && let Ok(term) = std::env::var("TERM")
    {
        spec.env.entry("TERM".to_owned()).or_insert(term);
    }
    let stdin_has_data = !args.tty && !std::io::stdin().is_terminal() && !stdin_is_dev_null();
    // Forwarding stdin needs `closeStdin` (or the command would never see EOF), which only
    // the initialize result tells: then connect first, reading our stdin meanwhile.
    // Otherwise the start rides in the same flight as the handshake.
    let (client, mut forward) = match stdin_has_data.then(LocalStdin::read_ahead) {
        Some(stdin) => (args.server.connect("rexec-run").await?, Some(stdin)),
        None => (args.server.client("rexec-run")?, None),
    };
    if forward.is_some() && !client.supports(extensions::WRITE_CLOSE_STDIN) {
        eprintln!(
            "rexec: the server cannot close a command's stdin ({} is missing): stdin is not forwarded",
            extensions::WRITE_CLOSE_STDIN
        );
        forward = None;
    }
    if let Some(input) = forward.as_mut().and_then(LocalStdin::if_complete) {
        // The whole input is here: it goes in the same flight as the start.
        spec.stdin = Some(input);
        forward = None;
    }
    spec.pipe_stdin = forward.is_some();
    let command = format!("start `{}`", args.command.join(" "));
    let process = client
        .start(spec)
        .await
        .map_err(|err| args.server.explain(err, &command))?;
    if let Some(stdin) = forward {
        tokio::spawn(stdin.forward(process.clone()));
    }
    let code = stream_until_closed(&process).await;
    client.close().await;
    code
}

/// Whether our stdin is /dev/null (as under `nohup`, cron or `< /dev/null`): nothing to
/// forward, so the command may start before the server's extensions are known.
fn stdin_is_dev_null() -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata("/dev/stdin"),
        std::fs::metadata("/dev/null"),
    ) {
        (Ok(stdin), Ok(null)) => stdin.rdev() == null.rdev() && stdin.ino() == null.ino(),
        _ => false,
    }
}

/// Print output as it arrives until `closed`; Ctrl-C interrupts the remote command, a
/// second Ctrl-C kills it. The stream is lossless: a slow local consumer slows the remote
/// command down instead of losing output, so control requests are sent from their own
/// tasks (the loop must keep polling the stream).
async fn stream_until_closed(process: &Process) -> anyhow::Result<i32> {
    let mut events = process.events();
    let mut interrupts = signal(SignalKind::interrupt())?;
    let mut interrupted = false;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = interrupts.recv() => {
                let process = process.clone();
                if interrupted {
                    tokio::spawn(async move { process.terminate().await });
                } else {
                    interrupted = true;
                    tokio::spawn(async move { process.interrupt().await });
                }
                continue;
            }
        };
        match event {
            Some(ProcessEvent::Output { stream, bytes, .. }) => write_local(stream, &bytes)?,
            Some(ProcessEvent::Exited { .. }) => {}
            Some(ProcessEvent::Gap { seqs, bytes_lost }) => eprintln!(
                "rexec: {bytes_lost} bytes of output were lost in transit (events {}..={})",
                seqs.start(),
                seqs.end()
            ),
            Some(ProcessEvent::Closed { .. }) => break,
            Some(ProcessEvent::Failed { reason }) => {
                anyhow::bail!("the remote command failed: {reason}")
            }
            None => anyhow::bail!("the connection ended before the command finished"),
        }
    }
    let done = process.wait().await?;
    if done.sandbox_denied {
        eprintln!("rexec: {}", denial_line(done.sandbox_denial.as_ref()));
    }
    Ok(local_exit_code(done.exit_code))
}

/// The line printed when the server blames the sandbox for the command's failure.
fn denial_line(denial: Option<&SandboxDenial>) -> String {
    let Some(denial) = denial else {
        return "the sandbox refused something the command needed".to_owned();
    };
    let what = match denial.rule {
        DenialRule::Network => "network access",
        DenialRule::FileSystem => "file-system access",
        DenialRule::Syscall => "a system call",
    };
    let how = if denial.exact {
        ""
    } else {
        " (inferred from its output)"
    };
    format!("the sandbox refused {what}: {}{how}", denial.detail)
}

fn write_local(stream: OutputStream, bytes: &[u8]) -> std::io::Result<()> {
    if stream == OutputStream::Stderr {
        let mut err = std::io::stderr().lock();
        err.write_all(bytes)?;
        err.flush()
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    }
}

/// Remote exit codes are 0..=255 (128+N after signal N); anything else is reported as 255.
pub fn local_exit_code(code: i32) -> i32 {
    if (0..=255).contains(&code) { code } else { 255 }
}
