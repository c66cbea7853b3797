//! Named persistent shells: [`Client::shell`] and the [`Shell`] handle (`shell/*`).
//!
//! A named shell lives on the server, belongs to the caller's principal and keeps its
//! working directory, variables and functions between commands, across disconnects and
//! client restarts, until it exits or sits unused past the server's idle timeout. Each
//! [`Shell::run`] is one command line with an exact end: its exit code, the working
//! directory after it and its output (head and tail, the rest counted).

use crate::client::Client;
use crate::error::ClientError;
use crate::procs::shell_output;
use rexec_protocol::method;
use rexec_protocol::sandbox::SandboxContext;
use rexec_protocol::shell::{
    ShellCommandResult, ShellEntry, ShellListParams, ShellListResult, ShellRunParams,
    ShellWaitParams, ShellWriteParams, ShellWriteResult,
};
use rexec_protocol::{PathUri, extensions};
use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

pub use rexec_protocol::shell::ShellKind;

impl Client {
    /// The named shell `name` of this client's principal; nothing is sent until a command
    /// runs, and the first command creates the shell.
    ///
    /// ```no_run
    /// # async fn demo(client: rexec_client::Client) -> Result<(), rexec_client::ClientError> {
    /// use std::time::Duration;
    /// let shell = client.shell("build");
    /// shell.run("cd /tmp && export GREETING=hi").await?;
    /// let done = shell.run("pwd; echo $GREETING").timeout(Duration::from_secs(10)).await?;
    /// assert_eq!(done.exit_code, Some(0));
    /// assert_eq!(done.output.text(), "/tmp\nhi\n");
    ///
    /// // A command that waits for input answers once it went quiet; type, then wait on.
    /// let asking = shell.run("read -p 'name? ' n; echo hello $n")
    ///     .idle_timeout(Duration::from_millis(300))
    ///     .await?;
    /// assert!(asking.awaiting_input);
    /// shell.write("ada\n").await?;
    /// let done = shell.wait(&asking.command_id).await?;
    /// assert!(done.output.text().ends_with("hello ada\n"));
    /// # Ok(()) }
    /// ```
    pub fn shell(&self, name: impl Into<String>) -> Shell {
        Shell {
            client: self.clone(),
            name: name.into(),
            kind: None,
            cwd: None,
            env: BTreeMap::new(),
            sandbox: None,
        }
    }

    /// `shell/list`: this principal's named shells.
    pub async fn shells(&self) -> Result<Vec<ShellEntry>, ClientError> {
        self.require_shells().await?;
        let result: ShellListResult = self
            .inner
            .rpc
            .call(method::SHELL_LIST, &ShellListParams::default())
            .await?;
        Ok(result.shells)
    }

    async fn require_shells(&self) -> Result<(), ClientError> {
        self.inner.rpc.ensure_connected().await?;
        if !self.supports(extensions::NAMED_SHELLS) {
            return Err(ClientError::unsupported(extensions::NAMED_SHELLS));
        }
        Ok(())
    }
}

/// A handle on a named shell; cheap to clone, and dropping it leaves the shell running.
#[derive(Debug, Clone)]
pub struct Shell {
    client: Client,
    name: String,
    kind: Option<ShellKind>,
    cwd: Option<PathBuf>,
    env: BTreeMap<String, String>,
    sandbox: Option<SandboxContext>,
}

impl Shell {
    /// The shell's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which shell to start (bash unless set); used only when a command creates it.
    pub fn kind(mut self, kind: ShellKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// The working directory a new shell starts in (the server's, unless set).
    pub fn cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// A variable for a new shell, on top of the server's core ones (HOME, PATH, …).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Run a new shell, and everything it starts, under `sandbox`. Its project roots
    /// default to the shell's cwd when that is set.
    pub fn sandbox(mut self, sandbox: SandboxContext) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// Run one command line (it may span lines); await it for its [`ShellOutcome`].
    /// Commands of one shell run in the order they were sent.
    pub fn run(&self, command: impl Into<String>) -> ShellRun<'_> {
        ShellRun {
            shell: self,
            command: command.into(),
            timeout: None,
            idle_timeout: None,
            on_output: None,
        }
    }

    /// Keep waiting for a command that answered [`ShellOutcome::awaiting_input`].
    pub fn wait(&self, command_id: &str) -> ShellWait<'_> {
        ShellWait {
            shell: self,
            command_id: command_id.to_owned(),
            timeout: None,
            idle_timeout: None,
            on_output: None,
        }
    }

    /// Type `data` into the shell's terminal (a line for `read`, `"\u{3}"` for Ctrl-C).
    pub async fn write(&self, data: impl Into<String>) -> Result<(), ClientError> {
        self.client.require_shells().await?;
        let params = ShellWriteParams {
            name: self.name.clone(),
            data: data.into(),
        };
        let _: ShellWriteResult = self
            .client
            .inner
            .rpc
            .call(method::SHELL_WRITE, &params)
            .await?;
        Ok(())
    }
}

impl Shell {
    /// `shell/run` or `shell/wait` (of `command_id`), streaming the output to `on_output`
    /// when given.
    async fn call<P: serde::Serialize + Sync>(
        &self,
        method: &str,
        params: &P,
        command_id: Option<&str>,
        on_output: Option<OnOutput<'_>>,
    ) -> Result<ShellOutcome, ClientError> {
        let rpc = &self.client.inner.rpc;
        let Some(mut on_output) = on_output else {
            let result: ShellCommandResult = rpc.call(method, params).await?;
            let taps = &self.client.inner.shell_taps;
            taps.answered(&result.command_id, result.seq, result.output.total_bytes);
            return Ok(ShellOutcome::from(result));
        };
        let tap = self.client.inner.shell_taps.open(&self.name);
        let call = rpc.call::<_, ShellCommandResult>(method, params);
        let (result, missed) =
            shell_output::with_output(call, tap, command_id, &mut *on_output).await;
        let mut outcome = ShellOutcome::from(result?);
        outcome.missed_output_bytes = missed;
        Ok(outcome)
    }

    fn sandbox_params(&self) -> Result<Option<serde_json::Value>, ClientError> {
        let Some(mut sandbox) = self.sandbox.clone() else {
            return Ok(None);
        };
        if let Some(cwd) = &self.cwd {
            let cwd = PathUri::from_path(cwd.clone());
            sandbox.cwd.get_or_insert_with(|| cwd.clone());
            sandbox.workspace_roots.get_or_insert_with(|| vec![cwd]);
        }
        serde_json::to_value(&sandbox)
            .map(Some)
            .map_err(|err| crate::client::encoding_error(&err))
    }
}

/// A command about to run; set its limits, then `.await` it.
#[must_use = "a command runs when awaited"]
pub struct ShellRun<'a> {
    shell: &'a Shell,
    command: String,
    timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    on_output: Option<OnOutput<'a>>,
}

/// What [`ShellRun::on_output`] and [`ShellWait::on_output`] call.
type OnOutput<'a> = Box<dyn FnMut(&[u8]) + Send + 'a>;

impl<'a> ShellRun<'a> {
    /// Interrupt the command after `timeout` (SIGINT to its foreground job, SIGKILL after
    /// a grace); the outcome says `timed_out` and the shell runs the next command.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Return with `awaiting_input` once the command printed nothing for `idle`.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// Hand the command's output to `on_output` as it arrives (markers removed), while
    /// this call waits; the outcome still has its head and tail. It sees all output of
    /// this shell that reaches this client during the call, so run one command of a
    /// shell at a time per client when using it.
    pub fn on_output(mut self, on_output: impl FnMut(&[u8]) + Send + 'a) -> Self {
        self.on_output = Some(Box::new(on_output));
        self
    }
}

impl<'a> IntoFuture for ShellRun<'a> {
    type Output = Result<ShellOutcome, ClientError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let shell = self.shell;
            shell.client.require_shells().await?;
            let params = ShellRunParams {
                name: shell.name.clone(),
                command: self.command,
                timeout_ms: self.timeout.map(millis),
                idle_timeout_ms: self.idle_timeout.map(millis),
                shell: shell.kind,
                cwd: shell.cwd.clone(),
                env: shell.env.clone(),
                sandbox: shell.sandbox_params()?,
            };
            shell
                .call(method::SHELL_RUN, &params, None, self.on_output)
                .await
        })
    }
}

/// Waiting on a running command again; set its limits, then `.await` it.
#[must_use = "the wait happens when awaited"]
pub struct ShellWait<'a> {
    shell: &'a Shell,
    command_id: String,
    timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    on_output: Option<OnOutput<'a>>,
}

impl<'a> ShellWait<'a> {
    /// Interrupt the command if it has not finished `timeout` from now.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Return with `awaiting_input` once the command printed nothing for `idle`.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// Hand the command's output to `on_output` (markers removed): first what it printed
    /// that this client has not seen (through an earlier `on_output` or in an earlier
    /// outcome of it), then the rest as it arrives while this call waits. Each byte comes
    /// once, in order; the server keeps the latest
    /// [`SHELL_REPLAY_BYTES`](crate::SHELL_REPLAY_BYTES) of a command's output for this,
    /// and bytes it no longer kept are counted in [`ShellOutcome::missed_output_bytes`].
    /// The outcome still has its head and tail.
    pub fn on_output(mut self, on_output: impl FnMut(&[u8]) + Send + 'a) -> Self {
        self.on_output = Some(Box::new(on_output));
        self
    }
}

impl<'a> IntoFuture for ShellWait<'a> {
    type Output = Result<ShellOutcome, ClientError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let shell = self.shell;
            shell.client.require_shells().await?;
            // Streaming: the server first sends again what this client has not taken.
            let after_seq = self
                .on_output
                .is_some()
                .then(|| shell.client.inner.shell_taps.after_seq(&self.command_id));
            let params = ShellWaitParams {
                name: shell.name.clone(),
                command_id: self.command_id,
                timeout_ms: self.timeout.map(millis),
                idle_timeout_ms: self.idle_timeout.map(millis),
                after_seq,
            };
            shell
                .call(
                    method::SHELL_WAIT,
                    &params,
                    Some(&params.command_id),
                    self.on_output,
                )
                .await
        })
    }
}

/// How a shell command went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellOutcome {
    /// The server's id of the command (what [`Shell::wait`] takes).
    pub command_id: String,
    /// What it printed to the terminal, markers removed.
    pub output: ShellOutput,
    /// `$?` after the command, or the shell's exit status when it ended the shell; `None`
    /// while it still runs (`awaiting_input`).
    pub exit_code: Option<i32>,
    /// The shell's working directory after the command (`None` if the shell ended).
    pub cwd: Option<PathBuf>,
    /// From the command's start to its end (zero while it runs).
    pub duration: Duration,
    /// Its timeout interrupted it.
    pub timed_out: bool,
    /// It still runs and printed nothing for the idle timeout: it may wait for input.
    pub awaiting_input: bool,
    /// The command ended the shell (`exit`, `exec`); the next command starts a new one.
    pub shell_exited: bool,
    /// Output `on_output` never got because the server no longer kept it (it was printed
    /// while no call streamed the command, past the server's replay window); 0 without
    /// `on_output`.
    pub missed_output_bytes: u64,
}

impl From<ShellCommandResult> for ShellOutcome {
    fn from(result: ShellCommandResult) -> Self {
        let finished = result.finished;
        Self {
            command_id: result.command_id,
            output: ShellOutput {
                head: result.output.head.0,
                tail: result.output.tail.0,
                omitted_bytes: result.output.omitted_bytes,
            },
            exit_code: finished.as_ref().map(|f| f.exit_code),
            cwd: finished.as_ref().and_then(|f| f.cwd.clone()),
            duration: Duration::from_millis(finished.as_ref().map_or(0, |f| f.duration_ms)),
            timed_out: result.timed_out,
            awaiting_input: result.awaiting_input,
            shell_exited: result.shell_exited,
            missed_output_bytes: 0,
        }
    }
}

/// A command's output: all of it when `omitted_bytes` is 0, else its first and last bytes
/// with exactly `omitted_bytes` between them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShellOutput {
    /// The first bytes.
    pub head: Vec<u8>,
    /// The last bytes (after the omitted ones).
    pub tail: Vec<u8>,
    /// Bytes between head and tail that were not kept.
    pub omitted_bytes: u64,
}

impl ShellOutput {
    /// Head and tail as text (lossy UTF-8), with a marker where bytes were omitted.
    pub fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.omitted_bytes > 0 {
            text.push_str(&format!("\n[… {} bytes omitted …]\n", self.omitted_bytes));
        }
        text.push_str(&String::from_utf8_lossy(&self.tail));
        text
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
