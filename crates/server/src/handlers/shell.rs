//! `shell/run`, `shell/wait`, `shell/write` and `shell/list`: the named shells of the
//! connection's principal (`crate::shell`).
//!
//! `shell/run` is queued at admission, so commands pipelined on one connection run in wire
//! order; the wait for its end runs in its own task. The shell is the principal's, so a
//! new connection of the same principal finds it, whatever session it has.

use super::{Admitted, Deferred, Reply, RequestContext};
use crate::process::env::child_env;
use crate::sandbox::policy;
use crate::shell::{Command, Creation, Integration, Limits, Queued, Replay};
use rexec_protocol::RpcError;
use rexec_protocol::process::{EnvInherit, EnvPolicy};
use rexec_protocol::shell::{
    ShellListResult, ShellRunParams, ShellWaitParams, ShellWriteParams, ShellWriteResult,
};
use std::sync::Arc;
use std::time::Duration;

/// A shell request that waits: for a command, or for room in the terminal.
pub enum ShellTask {
    Wait {
        slot: Arc<crate::shell::Slot>,
        command: Arc<Command>,
        limits: Limits,
        replay: Option<Replay>,
    },
    Write {
        slot: Arc<crate::shell::Slot>,
        data: String,
    },
}

pub fn admit_run(ctx: &RequestContext, params: ShellRunParams) -> Admitted {
    match enqueue(ctx, params) {
        Ok(task) => Admitted::Deferred(Deferred::Shell(task)),
        Err(error) => Admitted::Done(Err(error)),
    }
}

fn enqueue(ctx: &RequestContext, params: ShellRunParams) -> Result<ShellTask, RpcError> {
    let kind = params.shell.unwrap_or_default();
    // Refused now, not when the command reaches the shell.
    Integration::new(kind)
        .command_line(&params.command)
        .map_err(RpcError::invalid_params)?;
    let core = EnvPolicy {
        inherit: EnvInherit::Core,
        ..EnvPolicy::default()
    };
    let env = child_env(&params.env, Some(&core), super::process::server_env());
    let cwd = match params.cwd {
        Some(cwd) if cwd.is_absolute() => cwd,
        Some(cwd) => {
            return Err(RpcError::invalid_params(format!(
                "cwd {} is not absolute",
                cwd.display()
            )));
        }
        None => ctx
            .server
            .environment
            .cwd
            .as_ref()
            .map(|cwd| cwd.as_path().to_path_buf())
            .ok_or_else(|| RpcError::invalid_params("cwd is required: the server has no cwd"))?,
    };
    let sandbox = match &params.sandbox {
        None => None,
        Some(sandbox) => match policy::resolve(sandbox, Some(&cwd), &env)? {
            None => None,
            Some(plan) => {
                let helper = ctx.server.config.sandbox_helper.clone().ok_or_else(|| {
                    RpcError::invalid_params("sandbox runtime paths are not configured")
                })?;
                Some((helper, plan))
            }
        },
    };
    let shells = &ctx.server.shells;
    let command = Arc::new(Command::new(
        shells.next_command_id(),
        params.name,
        params.command,
    ));
    command.set_subscriber(Arc::clone(&ctx.session.route));
    let queued = Queued {
        command: Arc::clone(&command),
        kind,
        creation: Creation { cwd, env, sandbox },
    };
    let slot = shells.enqueue(&ctx.session.owner, queued)?;
    Ok(ShellTask::Wait {
        slot,
        command,
        limits: limits(params.timeout_ms, params.idle_timeout_ms),
        replay: None,
    })
}

pub fn admit_wait(ctx: &RequestContext, params: ShellWaitParams) -> Admitted {
    let found =
        ctx.server
            .shells
            .find_command(&ctx.session.owner, &params.name, &params.command_id);
    match found {
        Ok((slot, command)) => {
            slot.touch();
            command.set_subscriber(Arc::clone(&ctx.session.route));
            let replay = params.after_seq.map(|after_seq| Replay {
                after_seq,
                route: Arc::clone(&ctx.session.route),
            });
            Admitted::Deferred(Deferred::Shell(ShellTask::Wait {
                slot,
                command,
                limits: limits(params.timeout_ms, params.idle_timeout_ms),
                replay,
            }))
        }
        Err(error) => Admitted::Done(Err(error)),
    }
}

pub fn admit_write(ctx: &RequestContext, params: ShellWriteParams) -> Admitted {
    match ctx.server.shells.get(&ctx.session.owner, &params.name) {
        Ok(slot) => {
            slot.touch();
            Admitted::Deferred(Deferred::Shell(ShellTask::Write {
                slot,
                data: params.data,
            }))
        }
        Err(error) => Admitted::Done(Err(error)),
    }
}

pub fn list(ctx: &RequestContext) -> Result<Reply, RpcError> {
    Reply::new(&ShellListResult {
        shells: ctx.server.shells.list(&ctx.session.owner),
    })
}

pub async fn run(task: ShellTask) -> Result<Reply, RpcError> {
    match task {
        ShellTask::Wait {
            slot,
            command,
            limits,
            replay,
        } => Reply::new(&crate::shell::wait(&slot, &command, limits, replay).await?),
        ShellTask::Write { slot, data } => {
            let terminal = slot.terminal().ok_or_else(|| {
                RpcError::invalid_request(format!("shell {:?} is not running", slot.name))
            })?;
            terminal.write(data.as_bytes()).await.map_err(|err| {
                RpcError::internal(format!("failed to write to the shell: {err}"))
            })?;
            Reply::new(&ShellWriteResult {})
        }
    }
}

fn limits(timeout_ms: Option<u64>, idle_timeout_ms: Option<u64>) -> Limits {
    Limits {
        timeout: timeout_ms.map(Duration::from_millis),
        idle_timeout: idle_timeout_ms.map(Duration::from_millis),
    }
}
