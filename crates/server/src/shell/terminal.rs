//! One running shell on its PTY: spawning it (through the process module's spawn, so
//! containment and the sandbox apply to the whole shell), writing to its terminal, the
//! terminal modes a command runs with, and interrupting its foreground job.

use super::integration::Integration;
use crate::process::containment::Descendants;
use crate::process::spawn::{Child, SpawnRequest, spawn};
use crate::sandbox::{HelperCommand, Plan, Sandbox, SetupError};
use rexec_protocol::RpcError;
use rustix::process::{Pid, Signal};
use rustix::termios::{InputModes, LocalModes, OptionalActions, OutputModes};
use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// What a new shell is started with (the fields of the `shell/run` that creates it).
pub struct Creation {
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    /// The resolved sandbox policy and the helper that applies it.
    pub sandbox: Option<(PathBuf, Plan)>,
}

/// The writing side of a running shell, shared with `shell/write` and the interrupter.
pub struct TerminalControl {
    writer: AsyncFd<OwnedFd>,
    /// Writes do not interleave: a command line or a `shell/write` goes in whole.
    write_turn: tokio::sync::Mutex<()>,
    descendants: Descendants,
}

/// A spawned shell: the child, its terminal's read end and the shared control.
pub struct Terminal {
    pub child: Child,
    pub reader: AsyncFd<OwnedFd>,
    pub control: Arc<TerminalControl>,
    /// Keeps a sandboxed shell's network supervisor running.
    _sandbox: Option<Sandbox>,
}

impl Terminal {
    pub async fn spawn(integration: &Integration, creation: &Creation) -> Result<Self, RpcError> {
        let argv = integration.argv();
        let mut env = creation.env.clone();
        integration.prepare_env(&mut env);
        let helper = match &creation.sandbox {
            None => None,
            Some((helper, plan)) => Some((
                HelperCommand::new(helper, plan, &argv, None).map_err(|err| {
                    RpcError::internal(format!("failed to prepare shell sandbox: {err}"))
                })?,
                plan.clone(),
            )),
        };
        let spawned = spawn(&SpawnRequest {
            argv: &argv,
            arg0: None,
            cwd: &creation.cwd,
            env: &env,
            tty: true,
            pipe_stdin: true,
            helper: helper.as_ref().map(|(command, _)| command),
        })
        .map_err(|err| RpcError::internal(format!("failed to start the shell: {err}")))?;
        let sandbox = match helper {
            None => None,
            Some((command, plan)) => match Sandbox::launch(command, plan, &creation.cwd).await {
                Ok(sandbox) => Some(sandbox),
                Err(err) => {
                    spawned.descendants.kill();
                    return Err(match err {
                        SetupError::Sandbox(why) => RpcError::invalid_params(format!(
                            "failed to prepare shell sandbox: {why}"
                        )),
                        SetupError::Spawn(err) => RpcError::internal(err.to_string()),
                    });
                }
            },
        };
        let started = (|| -> io::Result<_> {
            let reader = spawned
                .outputs
                .into_iter()
                .next()
                .map(|(_, fd)| fd)
                .ok_or_else(|| io::Error::other("the shell has no terminal"))?;
            let writer = spawned
                .stdin
                .ok_or_else(|| io::Error::other("the shell's terminal is not writable"))?;
            Ok((
                crate::sync::register(reader)?,
                crate::sync::register(writer)?,
            ))
        })();
        let (reader, writer) = match started {
            Ok(fds) => fds,
            Err(err) => {
                spawned.descendants.kill();
                return Err(RpcError::internal(format!(
                    "failed to watch the shell's terminal: {err}"
                )));
            }
        };
        let control = Arc::new(TerminalControl {
            writer,
            write_turn: tokio::sync::Mutex::new(()),
            descendants: spawned.descendants,
        });
        Ok(Self {
            child: spawned.child,
            reader,
            control,
            _sandbox: sandbox,
        })
    }
}

impl TerminalControl {
    /// Write all of `bytes` to the terminal, as typed.
    pub async fn write(&self, bytes: &[u8]) -> io::Result<()> {
        let _turn = self.write_turn.lock().await;
        let mut rest = bytes;
        while !rest.is_empty() {
            let written = self
                .writer
                .async_io(Interest::WRITABLE, |fd| {
                    rustix::io::write(fd, rest).map_err(io::Error::from)
                })
                .await?;
            rest = &rest[written..];
        }
        Ok(())
    }

    /// The modes every command starts with: no echo of what is written to the terminal,
    /// and output exactly as printed (no `\n` → `\r\n`). A program that changed them (a
    /// REPL) does not leak its modes into the next command.
    pub fn reset_modes(&self) -> io::Result<()> {
        let fd = self.writer.get_ref();
        let mut termios = rustix::termios::tcgetattr(fd)?;
        termios
            .local_modes
            .remove(LocalModes::ECHO | LocalModes::ECHONL | LocalModes::ECHOE | LocalModes::ECHOK);
        termios
            .local_modes
            .insert(LocalModes::ICANON | LocalModes::ISIG);
        termios.output_modes.remove(OutputModes::ONLCR);
        termios.input_modes.remove(InputModes::IXON);
        rustix::termios::tcsetattr(fd, OptionalActions::Now, &termios)?;
        Ok(())
    }

    /// The shell's own pid (it leads its session and process group).
    pub fn shell_pid(&self) -> Pid {
        self.descendants.pid()
    }

    /// The terminal's foreground process group: the running job, or the shell itself.
    pub fn foreground_group(&self) -> Pid {
        rustix::termios::tcgetpgrp(self.writer.get_ref()).unwrap_or(self.shell_pid())
    }

    /// Send `signal` to the foreground group (what Ctrl-C reaches).
    pub fn signal_foreground(&self, signal: Signal) {
        crate::process::signal_group(self.foreground_group(), signal);
    }

    /// SIGKILL the shell and everything it started.
    pub fn kill(&self) {
        self.descendants.kill();
    }

    pub fn descendants(&self) -> &Descendants {
        &self.descendants
    }
}
