//! `rexec run`: run one command on the server, stream its stdout and stderr to ours as they
//! arrive, forward our stdin when it is not a terminal, and exit with its exit code.

use crate::connect::{ServerArgs, parse_env_pair};
use crate::local_stdin::LocalStdin;
use anyhow::Context;
use rexec_client::{Process, ProcessEvent, ProcessSpec};
use rexec_protocol::PathUri;
use rexec_protocol::extensions;
use rexec_protocol::process::{EnvInherit, EnvPolicy, OutputStream};
use rexec_protocol::sandbox::{
    AccessMode, DenialRule, FileSystemEntry, FileSystemPath, FileSystemPermissions, NetworkAccess,
    PermissionProfile, SandboxContext, SandboxDenial, SpecialPath,
};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
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
fn sandbox_policy(mode: SandboxMode, writable: &[PathBuf], network: Network) -> SandboxContext {
    let entry = |path: FileSystemPath, access: AccessMode| FileSystemEntry {
        path,
        access,
        missing_path_behavior: None,
    };
    let special = |value: SpecialPath| FileSystemPath::Special { value };
    let mut entries = vec![entry(special(SpecialPath::Root), AccessMode::Read)];
    if mode == SandboxMode::WorkspaceWrite {
        for value in [
            SpecialPath::ProjectRoots { subpath: None },
            SpecialPath::SlashTmp,
            SpecialPath::Tmpdir,
        ] {
            entries.push(entry(special(value), AccessMode::Write));
        }
    }
    entries.extend(writable.iter().map(|dir| {
        let path = FileSystemPath::Path {
            path: PathUri::from_path(dir.clone()),
        };
        entry(path, AccessMode::Write)
    }));
    SandboxContext {
        permissions: Some(PermissionProfile::Managed {
            file_system: FileSystemPermissions::Restricted {
                entries,
                glob_scan_max_depth: None,
            },
            network: match network {
                Network::Off => NetworkAccess::Restricted,
                Network::On => NetworkAccess::Enabled,
            },
        }),
        ..SandboxContext::default()
    }
}

/// The environment a command-line user expects: the server's core variables (so `PATH`
/// and `HOME` are the remote machine's), then the `--env` overrides.
pub fn spec_environment(spec: &mut ProcessSpec, env: &[(String, String)], clean: bool) {
    if !clean {
        spec.env_policy = Some(EnvPolicy {
            inherit: EnvInherit::Core,
            ignore_default_excludes: false,
            exclude: Vec::new(),
            set: Default::default(),
            include_only: Vec::new(),
        });
    }
    spec.env.extend(env.iter().cloned());
}

/// Run the command; the exit code to leave with.
pub async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let mut spec = ProcessSpec::new(args.command.clone());
    spec.tty = args.tty;
    // The output is streamed by a lossless subscriber: hold it from the first byte.
    spec.lossless_events = true;
    spec.cwd = args.cwd.clone();
    spec_environment(&mut spec, &args.env, args.clean_env);
    if let Some(mode) = args.sandbox {
        spec.sandbox = Some(sandbox_policy(mode, &args.writable, args.network));
    }
    if args.tty
        && let Ok(term) = std::env::var("TERM")
    {
        spec.env.entry("TERM".to_owned()).or_insert(term);
    }
    let stdin_has_data = !args.tty && !std::io::stdin().is_terminal() && !stdin_is_dev_null();
    let (client, process) = if stdin_has_data {
        // Read our stdin while connecting. Forwarding needs `closeStdin` (or the command
        // would never see EOF), which only the initialize result tells: connect first.
        let mut stdin = LocalStdin::read_ahead();
        let client = args.server.connect("rexec-run").await?;
        let mut forward = None;
        if !client.supports(extensions::WRITE_CLOSE_STDIN) {
            eprintln!(
                "rexec: the server cannot close a command's stdin ({} is missing): stdin is not forwarded",
                extensions::WRITE_CLOSE_STDIN
            );
        } else if let Some(input) = stdin.if_complete() {
            // The whole input is here: it goes in the same flight as the start.
            spec.stdin = Some(input);
        } else {
            spec.pipe_stdin = true;
            forward = Some(stdin);
        }
        let process = client
            .start(spec)
            .await
            .with_context(|| format!("failed to start `{}`", args.command.join(" ")))?;
        if let Some(stdin) = forward {
            tokio::spawn(stdin.forward(process.clone()));
        }
        (client, process)
    } else {
        // Nothing to forward: the start rides in the same flight as the handshake.
        args.server.connect_and_start("rexec-run", spec).await?
    };
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
    let mut events = process.events().lossless();
    let mut interrupts = signal(SignalKind::interrupt())?;
    let mut interrupted = false;
    let mut exit_code = None;
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
            Some(ProcessEvent::Exited {
                code,
                sandbox_denied,
                denial,
                ..
            }) => {
                exit_code = Some(code);
                if sandbox_denied {
                    eprintln!("rexec: {}", denial_line(denial.as_deref()));
                }
            }
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
    Ok(local_exit_code(
        exit_code.context("the command closed without an exit status")?,
    ))
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
