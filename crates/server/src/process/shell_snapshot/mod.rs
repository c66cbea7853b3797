//! `process/start.shellSnapshot` (capability `shellSnapshotV2`): run a login shell's
//! startup files once per scope, keep the state they leave, and start later `shell -lc
//! script` commands from that state instead of re-running the startup files.
//!
//! As upstream: the request is `{scopeId, shell: {name, path}}`; it applies only to an
//! argv `[shell.path, "-lc", script, …]` (anything else starts plainly); the shell is
//! bash, zsh or sh. The cache belongs to a session and is keyed by the request, the cwd,
//! the env policy and the sandbox — not by `env`, whose entries are laid over the
//! snapshot's environment instead. A failed capture falls back to the plain start; it is
//! tried again after [`RETRY_BACKOFF`], at most [`MAX_ATTEMPTS`] times per entry.
//!
//! The command is rewritten to skip the startup files (`bash -p`, `zsh -f`, `sh -c`) and
//! replay the state first; the state travels in environment variables that the replay
//! unsets before the command runs.

mod capture;

use crate::process::env::child_env;
use crate::sandbox::Plan;
use capture::{Captured, Launch};
use rexec_protocol::RpcError;
use rexec_protocol::process::{EnvInherit, EnvPolicy, StartParams};
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::Instant;

const MAX_SCOPE_BYTES: usize = 256;
const MAX_CACHED: usize = 16;
const RETRY_BACKOFF: Duration = Duration::from_secs(1);
const MAX_ATTEMPTS: usize = 3;
/// Environment values stay well below the kernel's 128 KiB per string.
const STATE_CHUNK_BYTES: usize = 60 * 1024;
const STATE_VARIABLE: &str = "__REXEC_SHELL_SNAPSHOT_STATE_";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotRequest {
    scope_id: String,
    shell: ShellRequest,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct ShellRequest {
    name: String,
    path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellKind {
    Bash,
    Zsh,
    Sh,
}

#[derive(PartialEq)]
struct Key {
    request: SnapshotRequest,
    cwd: PathBuf,
    env_policy: Option<EnvPolicy>,
    sandbox: Option<serde_json::Value>,
}

/// A capture's outcome: the snapshot, or when the next attempt may start.
type Outcome = Result<Arc<Captured>, Instant>;

struct Entry {
    key: Key,
    attempts: usize,
    outcome: Arc<OnceCell<Outcome>>,
}

/// One session's snapshots, least recently used first.
#[derive(Default)]
pub struct SnapshotCache {
    entries: Mutex<VecDeque<Entry>>,
}

/// The command to spawn instead of the requested one.
pub struct Rewrite {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// How the start would run without a snapshot: its argv, cwd, environment and sandbox.
pub struct Start<'a> {
    pub params: &'a StartParams,
    pub cwd: &'a Path,
    pub env: &'a BTreeMap<String, String>,
    pub sandbox: Option<(&'a Path, &'a Plan)>,
}

impl SnapshotCache {
    /// Validate `shellSnapshot` and, when it applies, the command restoring the snapshot
    /// (capturing it first when the cache has none). `None`: start as requested.
    pub async fn prepare(&self, start: &Start<'_>) -> Result<Option<Rewrite>, RpcError> {
        let params = start.params;
        let Some(raw) = &params.shell_snapshot else {
            return Ok(None);
        };
        let request = SnapshotRequest::deserialize(raw)
            .map_err(|err| RpcError::invalid_params(err.to_string()))?;
        if request.scope_id.is_empty() || request.scope_id.len() > MAX_SCOPE_BYTES {
            return Err(RpcError::invalid_params(format!(
                "shell snapshot scope must be non-empty and at most {MAX_SCOPE_BYTES} bytes"
            )));
        }
        let argv = &params.argv;
        if argv.len() < 3 || argv[0] != request.shell.path || argv[1] != "-lc" {
            return Ok(None);
        }
        let kind = match request.shell.name.as_str() {
            "bash" => ShellKind::Bash,
            "zsh" => ShellKind::Zsh,
            "sh" => ShellKind::Sh,
            name => {
                return Err(RpcError::invalid_params(format!(
                    "shell snapshots are unsupported for shell `{name}`"
                )));
            }
        };
        let key = Key {
            request,
            cwd: start.cwd.to_path_buf(),
            env_policy: params.env_policy.clone(),
            sandbox: params.sandbox.clone(),
        };
        let outcome = self.entry(key);
        let launch = Launch {
            argv,
            arg0: params.arg0.as_deref(),
            cwd: start.cwd,
            env: start.env,
            sandbox: start.sandbox,
        };
        let outcome = outcome
            .get_or_init(|| async {
                match capture::capture(kind, &launch).await {
                    Ok(captured) => Ok(Arc::new(captured)),
                    Err(why) => {
                        tracing::warn!(%why, "shell snapshot capture failed; starting plainly");
                        Err(Instant::now() + RETRY_BACKOFF)
                    }
                }
            })
            .await;
        let Ok(captured) = outcome else {
            return Ok(None);
        };
        Ok(Some(rewrite(kind, captured, start)))
    }

    /// The entry for `key`, made most recent; a failed one past its backoff starts over
    /// while it has attempts left.
    fn entry(&self, key: Key) -> Arc<OnceCell<Outcome>> {
        let mut entries = crate::sync::lock(&self.entries);
        if let Some(at) = entries.iter().position(|entry| entry.key == key) {
            let mut entry = entries.remove(at).expect("position is in range");
            if entry.attempts < MAX_ATTEMPTS
                && let Some(Err(retry_at)) = entry.outcome.get()
                && Instant::now() >= *retry_at
            {
                entry.attempts += 1;
                entry.outcome = Arc::new(OnceCell::new());
            }
            let outcome = Arc::clone(&entry.outcome);
            entries.push_back(entry);
            return outcome;
        }
        let outcome = Arc::new(OnceCell::new());
        entries.push_back(Entry {
            key,
            attempts: 1,
            outcome: Arc::clone(&outcome),
        });
        if entries.len() > MAX_CACHED {
            entries.pop_front();
        }
        outcome
    }
}

/// The snapshot's environment under the request's env policy, the request's own `env`
/// on top; the shell without its startup files, replaying the state before the script.
fn rewrite(kind: ShellKind, captured: &Captured, start: &Start<'_>) -> Rewrite {
    let params = start.params;
    let snapshot_env = match &params.env_policy {
        Some(policy) => {
            let policy = EnvPolicy {
                inherit: EnvInherit::All,
                ..policy.clone()
            };
            child_env(
                &BTreeMap::new(),
                Some(&policy),
                captured.env.clone().into_iter(),
            )
        }
        None => captured.env.clone(),
    };
    let mut env = start.env.clone();
    for (name, value) in snapshot_env {
        if !params.env.contains_key(&name) {
            env.insert(name, value);
        }
    }
    let mut names = Vec::new();
    let mut state = captured.state.as_str();
    while !state.is_empty() {
        let mut end = state.len().min(STATE_CHUNK_BYTES);
        while !state.is_char_boundary(end) {
            end -= 1;
        }
        let (chunk, rest) = state.split_at(end);
        let name = format!("{STATE_VARIABLE}{}", names.len());
        env.insert(name.clone(), chunk.to_owned());
        names.push(name);
        state = rest;
    }
    let (flag, prelude) = match kind {
        ShellKind::Bash => ("-pc", "set +o privileged\n"),
        ShellKind::Zsh => ("-fc", "setopt RCS\n"),
        ShellKind::Sh => ("-c", ""),
    };
    let replay = if names.is_empty() {
        String::new()
    } else {
        let expansion: String = names.iter().map(|n| format!("${{{n}}}")).collect();
        format!(
            "if ! eval \"unset {}\n{expansion}\" >/dev/null; then printf 'failed to restore shell snapshot\\n' >&2; fi\n",
            names.join(" ")
        )
    };
    let mut argv = params.argv.clone();
    argv[1] = flag.to_owned();
    argv[2] = format!("{prelude}{replay}{}", params.argv[2]);
    Rewrite { argv, env }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(argv: &[&str], env: &[(&str, &str)]) -> StartParams {
        serde_json::from_value(serde_json::json!({
            "processId": "p",
            "argv": argv,
            "env": env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            "tty": false,
        }))
        .expect("params")
    }

    #[test]
    fn the_request_env_wins_over_the_snapshot_and_the_state_is_chunked() {
        let params = params(&["/bin/bash", "-lc", "echo hi"], &[("MINE", "request")]);
        let env = params.env.clone();
        let start = Start {
            params: &params,
            cwd: Path::new("/"),
            env: &env,
            sandbox: None,
        };
        let captured = Captured {
            state: "é".repeat(STATE_CHUNK_BYTES),
            env: BTreeMap::from([
                ("MINE".to_owned(), "snapshot".to_owned()),
                ("THEIRS".to_owned(), "snapshot".to_owned()),
            ]),
        };
        let rewrite = rewrite(ShellKind::Bash, &captured, &start);
        assert_eq!(rewrite.env["MINE"], "request");
        assert_eq!(rewrite.env["THEIRS"], "snapshot");
        let chunks: Vec<_> = rewrite
            .env
            .iter()
            .filter(|(k, _)| k.starts_with(STATE_VARIABLE))
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(chunks.len(), 2);
        assert!(chunks.iter().all(|c| c.len() <= STATE_CHUNK_BYTES));
        assert_eq!(chunks.concat(), captured.state);
        assert_eq!(rewrite.argv[..2], ["/bin/bash", "-pc"]);
        assert!(
            rewrite.argv[2].ends_with("\necho hi"),
            "{}",
            rewrite.argv[2]
        );
    }
}
