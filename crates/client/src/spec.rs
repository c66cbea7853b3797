//! `ProcessSpec`: what to run, and how it becomes `process/start` params.

use crate::event::OutputCallback;
use bytes::Bytes;
use rexec_protocol::PathUri;
use rexec_protocol::environment::EnvironmentInfo;
use rexec_protocol::process::{EnvPolicy, OutputStream, StartParams};
use rexec_protocol::sandbox::SandboxContext;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Bytes of each output stream a `Completion` keeps by default (head + tail).
pub const DEFAULT_OUTPUT_BUDGET: usize = 1024 * 1024;

/// What to run and how: the `process/start` a [`Client::start`](crate::Client::start) or
/// [`Client::run`](crate::Client::run) sends, plus what the client does around it (timeout,
/// output callback, lossless streaming, the completion's budget).
///
/// ```
/// use rexec_client::ProcessSpec;
/// use std::time::Duration;
/// let spec = ProcessSpec::new(["make", "-j4"])
///     .cwd("/src/project")
///     .env("CC", "clang") // on top of the server's HOME, PATH, USER, SHELL, TMPDIR
///     .timeout(Duration::from_secs(600));
/// assert_eq!(spec.argv, ["make", "-j4"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The program and its arguments (`argv[0]` is looked up in the child's `PATH`).
    pub argv: Vec<String>,
    /// `None`: the server's cwd from `environmentInfo`, else `/`.
    pub cwd: Option<PathBuf>,
    /// Variables set on top of what `env_policy` inherits (with `env_policy: None`, the
    /// child's whole environment).
    pub env: BTreeMap<String, String>,
    /// What the child inherits from the server's own environment before `env` applies:
    /// by default its core variables (HOME, PATH, USER, SHELL, TMPDIR); `None`
    /// ([`ProcessSpec::clean_env`]) inherits nothing (exec-server semantics).
    pub env_policy: Option<EnvPolicy>,
    /// Run in a pseudo-terminal: output arrives as one `Pty` stream.
    pub tty: bool,
    /// Give the child a stdin pipe that `Process::write` feeds (always true for a tty).
    pub pipe_stdin: bool,
    /// The child's whole stdin, given up front (a one-shot's `input`): one `process/write`
    /// with `closeStdin` leaves right behind `process/start`, in the same flight, and the
    /// child reads these bytes, then EOF. Implies `pipe_stdin`; needs the server's
    /// `process/write.closeStdin` extension (the start is refused without it).
    pub stdin: Option<Bytes>,
    /// The `argv[0]` the child sees, when it differs from the program.
    pub arg0: Option<String>,
    /// `None`: a generated UUID.
    pub process_id: Option<String>,
    /// See [`ProcessSpec::lossless`].
    pub lossless: bool,
    /// The policy the server must enforce (`SandboxContext::managed` for the common
    /// read-everything, write-here case); a server that cannot refuses the start.
    pub sandbox: Option<SandboxContext>,
    /// Bytes kept per output stream in the `Completion`: the first half and the last half;
    /// everything between is counted in `Completion::omitted_bytes`.
    pub output_budget: usize,
    /// See [`ProcessSpec::timeout`].
    pub timeout: Option<Duration>,
    /// See [`ProcessSpec::on_output`].
    pub on_output: Option<OutputCallback>,
}

impl ProcessSpec {
    /// Run `argv` with the server's core environment, in the server's cwd, without a tty or
    /// stdin.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            cwd: None,
            env: BTreeMap::new(),
            env_policy: Some(EnvPolicy::default()),
            tty: false,
            pipe_stdin: false,
            stdin: None,
            arg0: None,
            process_id: None,
            sandbox: None,
            lossless: false,
            output_budget: DEFAULT_OUTPUT_BUDGET,
            timeout: None,
            on_output: None,
        }
    }

    /// The working directory on the server.
    pub fn cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// Set one variable (on top of the inherited ones).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Set several variables (on top of the inherited ones).
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Inherit nothing from the server: the child's environment is exactly `env`.
    pub fn clean_env(mut self) -> Self {
        self.env_policy = None;
        self
    }

    /// Inherit from the server's environment by `policy` (`inherit: all`, excludes, …).
    pub fn env_policy(mut self, policy: EnvPolicy) -> Self {
        self.env_policy = Some(policy);
        self
    }

    /// Run in a pseudo-terminal.
    pub fn tty(mut self, tty: bool) -> Self {
        self.tty = tty;
        self
    }

    /// Give the child a stdin pipe for [`Process::write`](crate::Process::write).
    pub fn pipe_stdin(mut self, pipe_stdin: bool) -> Self {
        self.pipe_stdin = pipe_stdin;
        self
    }

    /// Feed the child exactly `bytes` on stdin, then EOF, with no extra round trip.
    pub fn stdin(mut self, bytes: impl Into<Bytes>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// The `argv[0]` the child sees.
    pub fn arg0(mut self, arg0: impl Into<String>) -> Self {
        self.arg0 = Some(arg0.into());
        self
    }

    /// Choose the process id (unique among the session's live processes) instead of a
    /// generated UUID.
    pub fn process_id(mut self, process_id: impl Into<String>) -> Self {
        self.process_id = Some(process_id.into());
        self
    }

    /// Make the first [`Process::events`](crate::Process::events) stream lossless: instead
    /// of letting it fall behind the bounded replay history (256 events / 1 MiB) and then
    /// repair from the server (which may have evicted the output by then), the output is
    /// held until that stream has consumed it, and the child blocks on its pipe meanwhile:
    /// nothing is lost however slow the consumer is. Output is held from the first event,
    /// before `start` returns. Later subscribers are ordinary.
    ///
    /// A rexec server holds the output itself (`process/start.holdOutput`; the stream
    /// acknowledges what it consumed): the stream may pause, and other requests of the
    /// same client may be awaited between two `next()` calls. Against a server without
    /// that extension (codex) the client holds it by not reading its connection, and then
    /// while the stream is not polled the **whole connection** waits: poll it
    /// continuously (or drop it), and spawn other requests instead of awaiting them
    /// between two `next()` calls. The hold is released when the stream ends or is
    /// dropped, or when every handle of the process is dropped before anyone subscribed
    /// ([`Client::run`](crate::Client::run) releases it at once: it does not subscribe).
    pub fn lossless(mut self, lossless: bool) -> Self {
        self.lossless = lossless;
        self
    }

    /// Run under `sandbox`, which the server must enforce.
    pub fn sandbox(mut self, sandbox: SandboxContext) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// Bytes per stream the [`Completion`](crate::Completion) keeps (head + tail).
    pub fn output_budget(mut self, bytes: usize) -> Self {
        self.output_budget = bytes;
        self
    }

    /// Terminate the process once `limit` has passed since `start` was called, whether or
    /// not anyone waits for it; its [`Completion::timed_out`](crate::Completion::timed_out)
    /// then says so.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Call `callback` with every output chunk, in seq order, each before
    /// [`Process::wait`](crate::Process::wait) (or `run`) returns the completion.
    /// It runs on the client's connection reader, with the process's state locked: keep it
    /// quick, and do not call into the process or its client from it.
    ///
    /// ```no_run
    /// # async fn demo(client: rexec_client::Client) -> Result<(), rexec_client::ClientError> {
    /// use rexec_client::ProcessSpec;
    /// let spec = ProcessSpec::new(["cargo", "build"])
    ///     .on_output(|_stream, bytes| print!("{}", String::from_utf8_lossy(bytes)));
    /// let done = client.run(spec).await?;
    /// assert!(done.success());
    /// # Ok(()) }
    /// ```
    pub fn on_output(
        mut self,
        callback: impl Fn(OutputStream, &[u8]) + Send + Sync + 'static,
    ) -> Self {
        self.on_output = Some(OutputCallback::new(callback));
        self
    }

    /// The `process/start` params, with the id and cwd decided.
    pub(crate) fn start_params(
        &self,
        process_id: String,
        environment: Option<&EnvironmentInfo>,
    ) -> Result<StartParams, serde_json::Error> {
        // `None`: neither the spec nor the server said (the server's own cwd applies).
        let cwd = match (&self.cwd, environment.and_then(|e| e.cwd.as_ref())) {
            (Some(cwd), _) => Some(PathUri::from_path(cwd.clone())),
            (None, Some(server_cwd)) => Some(server_cwd.clone()),
            (None, None) => None,
        };
        // Project roots default to the process's cwd; say so when it is known, since peers
        // differ on the default (codex 0.169 needs `workspaceRoots`).
        let sandbox = self.sandbox.clone().map(|mut sandbox| {
            if let Some(cwd) = &cwd {
                sandbox.cwd.get_or_insert_with(|| cwd.clone());
                sandbox
                    .workspace_roots
                    .get_or_insert_with(|| vec![cwd.clone()]);
            }
            sandbox
        });
        let sandbox = sandbox.as_ref().map(serde_json::to_value).transpose()?;
        Ok(StartParams {
            process_id,
            argv: self.argv.clone(),
            cwd,
            env: self.env.clone(),
            env_policy: self.env_policy.clone(),
            tty: self.tty,
            pipe_stdin: self.pipe_stdin || self.stdin.is_some(),
            arg0: self.arg0.clone(),
            sandbox,
            enforce_managed_network: false,
            managed_network: None,
            network_proxy: None,
            shell_snapshot: None,
            metadata: None,
            // The server holds the output for the lossless subscriber (upstream ignores
            // the field, so it can ride in the first flight before the extensions are known).
            hold_output: self.lossless,
        })
    }
}
