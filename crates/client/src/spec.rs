//! `ProcessSpec`: what to run, and how it becomes `process/start` params.

use bytes::Bytes;
use rexec_protocol::PathUri;
use rexec_protocol::environment::EnvironmentInfo;
use rexec_protocol::process::{EnvPolicy, StartParams};
use rexec_protocol::sandbox::SandboxContext;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Bytes of each output stream a `Completion` keeps by default (head + tail).
pub const DEFAULT_OUTPUT_BUDGET: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    /// `None`: the server's cwd from `environmentInfo`, else `/`.
    pub cwd: Option<PathBuf>,
    /// The child's **whole** environment (exec-server semantics: nothing is inherited from
    /// the server) unless `env_policy` says otherwise. Set `PATH` and friends explicitly.
    pub env: BTreeMap<String, String>,
    /// Inherit from the server's own environment first (e.g. `inherit: core` for its HOME,
    /// PATH, USER, SHELL, TMPDIR), then apply `env` on top.
    pub env_policy: Option<EnvPolicy>,
    pub tty: bool,
    /// Give the child a stdin pipe that `Process::write` feeds (always true for a tty).
    pub pipe_stdin: bool,
    /// The child's whole stdin, given up front (a one-shot's `input`): one `process/write`
    /// with `closeStdin` leaves right behind `process/start`, in the same flight, and the
    /// child reads these bytes, then EOF. Implies `pipe_stdin`; needs the server's
    /// `process/write.closeStdin` extension (the start is refused without it).
    pub stdin: Option<Bytes>,
    pub arg0: Option<String>,
    /// `None`: a generated UUID.
    pub process_id: Option<String>,
    /// Hold the process's output for a lossless subscriber from the first event: the
    /// connection waits (once the replay history is full) until `process.events().lossless()`
    /// takes over. Without it, output that arrives between `start` returning and that call
    /// is only kept by the bounded history, and a busy machine can lose it to a `Gap`. Set
    /// it only if that subscriber will be created (and polled).
    pub lossless_events: bool,
    /// The policy the server must enforce (`SandboxContext::managed` for the common
    /// read-everything, write-here case); a server that cannot refuses the start.
    pub sandbox: Option<SandboxContext>,
    /// Bytes kept per output stream in the `Completion`: the first half and the last half;
    /// everything between is counted in `Completion::omitted_bytes`.
    pub output_budget: usize,
}

impl ProcessSpec {
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            cwd: None,
            env: BTreeMap::new(),
            env_policy: None,
            tty: false,
            pipe_stdin: false,
            stdin: None,
            arg0: None,
            process_id: None,
            sandbox: None,
            lossless_events: false,
            output_budget: DEFAULT_OUTPUT_BUDGET,
        }
    }

    pub fn cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

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

    pub fn env_policy(mut self, policy: EnvPolicy) -> Self {
        self.env_policy = Some(policy);
        self
    }

    pub fn tty(mut self, tty: bool) -> Self {
        self.tty = tty;
        self
    }

    pub fn pipe_stdin(mut self, pipe_stdin: bool) -> Self {
        self.pipe_stdin = pipe_stdin;
        self
    }

    /// Feed the child exactly `bytes` on stdin, then EOF, with no extra round trip.
    pub fn stdin(mut self, bytes: impl Into<Bytes>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn arg0(mut self, arg0: impl Into<String>) -> Self {
        self.arg0 = Some(arg0.into());
        self
    }

    pub fn process_id(mut self, process_id: impl Into<String>) -> Self {
        self.process_id = Some(process_id.into());
        self
    }

    pub fn lossless_events(mut self, lossless: bool) -> Self {
        self.lossless_events = lossless;
        self
    }

    pub fn sandbox(mut self, sandbox: SandboxContext) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    pub fn output_budget(mut self, bytes: usize) -> Self {
        self.output_budget = bytes;
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
            hold_output: false,
        })
    }
}
