//! From the wire's `sandbox` context to a [`Plan`]: the concrete trees a child may read and
//! write, the paths kept read-only inside them, and whether it may use the network.
//!
//! Both upstream shapes map here (see `rexec_protocol::sandbox`). Whatever a program needs
//! to start and run — the loader, libraries, `/etc`, `/proc`, the usual `/dev` nodes and
//! its terminal — is added to every plan, so a policy only has to say what is special.
//! Decoding errors name the member that is wrong; nothing is spawned after one.

use rexec_protocol::RpcError;
use rexec_protocol::sandbox::{
    AccessMode, FileSystemEntry, FileSystemPath, FileSystemPermissions, LegacySandboxPolicy,
    NetworkAccess, PermissionProfile, SandboxContext, SpecialPath,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Readable (and executable) system trees that every sandboxed program may need.
const MINIMAL_READ: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc", "/dev",
    "/sys", "/run",
];
/// Device nodes every program may write: the sinks and its terminal.
pub const DEVICE_WRITE: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
];
/// Control directories that stay read-only inside writable trees, as upstream.
const PROTECTED_NAMES: &[&str] = &[".git", ".codex"];

/// What the helper enforces, resolved against the host. Serialized onto the helper's
/// command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// `None`: the file system is unrestricted.
    pub file_system: Option<FileSystemRules>,
    pub network: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSystemRules {
    /// Trees that may be read and executed (`/` for everything).
    pub read: Vec<PathBuf>,
    /// Trees that may be read, written and executed.
    pub write: Vec<PathBuf>,
    /// Existing paths inside `write` that stay read-only (`.git`, `.codex`, a `gitdir:`).
    pub protected: Vec<PathBuf>,
}

impl Plan {
    /// Whether `path` (resolved) is, or with `tree` contains, a path kept read-only.
    pub fn protects(&self, path: &Path, tree: bool) -> bool {
        let Some(rules) = &self.file_system else {
            return false;
        };
        let path = resolve_path(path);
        rules
            .protected
            .iter()
            .any(|p| path.starts_with(p) || (tree && p.starts_with(&path)))
    }

    /// Whether the policy lets the child write `path` (absolute, canonical when it exists).
    pub fn allows_write(&self, path: &Path) -> bool {
        let Some(rules) = &self.file_system else {
            return true;
        };
        rules.write.iter().any(|root| path.starts_with(root))
            && !rules.protected.iter().any(|p| path.starts_with(p))
    }
}

/// Canonicalize the longest existing prefix of `path` (the file itself often does not
/// exist: it could not be created).
pub fn resolve_path(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut tail = Vec::new();
    loop {
        if let Ok(canonical) = std::fs::canonicalize(existing) {
            return tail.iter().rev().fold(canonical, |p, c| p.join(c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_owned());
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Resolve `sandbox` for a process started in `cwd` (for a file-system request: `None`)
/// with environment `env`. The workspace is the context's own `cwd` when it names one, else
/// `cwd`; without either, `project_roots` and a legacy workspace name nothing. `Ok(None)` is
/// a context that asks for no platform sandbox (disabled, external, full access).
pub fn resolve(
    sandbox: &Value,
    cwd: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Result<Option<Plan>, RpcError> {
    let context: SandboxContext =
        serde_json::from_value(sandbox.clone()).map_err(|err| decode_error(sandbox, &err))?;
    let workspace = context
        .sandbox_policy_cwd
        .as_ref()
        .or(context.cwd.as_ref())
        .map(|uri| uri.as_path())
        .or(cwd);
    let plan = match (&context.permissions, &context.sandbox_policy) {
        (Some(profile), _) => from_profile(profile, &context, workspace, env)?,
        (None, Some(legacy)) => from_legacy(legacy, workspace, env),
        (None, None) => {
            return Err(RpcError::invalid_params(
                "invalid sandbox: expected `permissions` or `sandboxPolicy`",
            ));
        }
    };
    Ok(plan.map(finish))
}

fn from_profile(
    profile: &PermissionProfile,
    context: &SandboxContext,
    workspace: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Result<Option<Plan>, RpcError> {
    let (file_system, network) = match profile {
        PermissionProfile::Disabled | PermissionProfile::External { .. } => return Ok(None),
        PermissionProfile::Managed {
            file_system,
            network,
        } => (file_system, *network),
    };
    let network = network == NetworkAccess::Enabled;
    let entries = match file_system {
        FileSystemPermissions::Unrestricted => {
            return Ok(Some(Plan {
                file_system: None,
                network,
            }));
        }
        FileSystemPermissions::Restricted { entries, .. } => entries,
    };
    let project_roots: Vec<PathBuf> = match &context.workspace_roots {
        Some(roots) => roots.iter().map(|r| r.as_path().to_path_buf()).collect(),
        None => workspace.map(Path::to_path_buf).into_iter().collect(),
    };
    let mut rules = FileSystemRules {
        read: Vec::new(),
        write: Vec::new(),
        protected: Vec::new(),
    };
    let mut denied = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let paths = entry_paths(entry, index, &project_roots, env)?;
        match entry.access {
            AccessMode::Read => rules.read.extend(paths),
            AccessMode::Write => rules.write.extend(paths),
            AccessMode::Deny => denied.extend(paths),
        }
    }
    // Landlock only grants; a denial is enforced by not granting. One inside a granted
    // tree would need a mask this executor does not apply: refuse rather than ignore it.
    for path in &denied {
        let granted = rules.read.iter().chain(&rules.write);
        if let Some(root) = granted.clone().find(|root| path.starts_with(root)) {
            return Err(RpcError::invalid_params(format!(
                "failed to prepare process sandbox: deny entry {} lies inside the allowed tree {}, which this executor cannot enforce",
                path.display(),
                root.display()
            )));
        }
    }
    Ok(Some(Plan {
        file_system: Some(rules),
        network,
    }))
}

/// The host paths one entry names; the `unknown` special kind names none.
fn entry_paths(
    entry: &FileSystemEntry,
    index: usize,
    project_roots: &[PathBuf],
    env: &BTreeMap<String, String>,
) -> Result<Vec<PathBuf>, RpcError> {
    let special = match &entry.path {
        FileSystemPath::Path { path } => return Ok(vec![path.as_path().to_path_buf()]),
        FileSystemPath::GlobPattern { pattern } => {
            return Err(RpcError::invalid_params(format!(
                "failed to prepare process sandbox: sandbox.permissions.file_system.entries[{index}]: glob pattern `{pattern}` is not supported by this executor"
            )));
        }
        FileSystemPath::Special { value } => value,
    };
    Ok(match special {
        SpecialPath::Root => vec![PathBuf::from("/")],
        SpecialPath::Minimal => MINIMAL_READ.iter().map(PathBuf::from).collect(),
        SpecialPath::ProjectRoots { subpath: None } => project_roots.to_vec(),
        SpecialPath::ProjectRoots {
            subpath: Some(subpath),
        } => {
            let plain = subpath
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
            if !plain {
                return Err(RpcError::invalid_params(format!(
                    "invalid sandbox: sandbox.permissions.file_system.entries[{index}].path.value.subpath `{}` must be relative and stay inside the project root",
                    subpath.display()
                )));
            }
            project_roots
                .iter()
                .map(|root| root.join(subpath))
                .collect()
        }
        SpecialPath::Tmpdir => env.get("TMPDIR").map(PathBuf::from).into_iter().collect(),
        SpecialPath::SlashTmp => vec![PathBuf::from("/tmp")],
        SpecialPath::Unknown { .. } => Vec::new(),
    })
}

fn from_legacy(
    policy: &LegacySandboxPolicy,
    workspace: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Option<Plan> {
    let (write, network) = match policy {
        LegacySandboxPolicy::DangerFullAccess | LegacySandboxPolicy::ExternalSandbox { .. } => {
            return None;
        }
        LegacySandboxPolicy::ReadOnly { network_access } => (Vec::new(), *network_access),
        LegacySandboxPolicy::WorkspaceWrite {
            writable_roots,
            network_access,
            exclude_tmpdir_env_var,
            exclude_slash_tmp,
        } => {
            let mut write: Vec<PathBuf> = workspace.map(Path::to_path_buf).into_iter().collect();
            write.extend(writable_roots.iter().map(|r| r.as_path().to_path_buf()));
            if !exclude_slash_tmp {
                write.push(PathBuf::from("/tmp"));
            }
            if !exclude_tmpdir_env_var && let Some(tmpdir) = env.get("TMPDIR") {
                write.push(PathBuf::from(tmpdir));
            }
            (write, *network_access)
        }
    };
    Some(Plan {
        file_system: Some(FileSystemRules {
            read: vec![PathBuf::from("/")],
            write,
            protected: Vec::new(),
        }),
        network,
    })
}

/// Resolve symlinks, add what every program needs, drop what does not exist, and find the
/// control directories to protect.
fn finish(mut plan: Plan) -> Plan {
    let Some(rules) = &mut plan.file_system else {
        return plan;
    };
    rules.read.extend(MINIMAL_READ.iter().map(PathBuf::from));
    rules.read = existing(&rules.read);
    rules.write = existing(&rules.write);
    let mut protected = Vec::new();
    for root in &rules.write {
        for name in PROTECTED_NAMES {
            let path = root.join(name);
            if let Some(gitdir) = gitdir_of(&path) {
                protected.push(gitdir);
            }
            if path.exists() {
                protected.push(path);
            }
        }
    }
    protected.retain(|p| rules.write.iter().any(|root| p.starts_with(root)));
    protected.sort();
    protected.dedup();
    rules.protected = protected;
    plan
}

/// Canonical forms of the paths that exist, without duplicates.
fn existing(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The repository directory a `.git` *file* points to (worktrees, submodules).
fn gitdir_of(dot_git: &Path) -> Option<PathBuf> {
    if !dot_git.is_file() {
        return None;
    }
    let text = std::fs::read_to_string(dot_git).ok()?;
    let target = text.lines().find_map(|l| l.strip_prefix("gitdir:"))?.trim();
    let target = dot_git.parent()?.join(target);
    std::fs::canonicalize(target).ok()
}

/// A decoding error that names the member at fault.
fn decode_error(sandbox: &Value, err: &serde_json::Error) -> RpcError {
    let field = locate(sandbox).unwrap_or_else(|| "sandbox".to_owned());
    let is_path = field.ends_with(".path") || field.contains("Roots") || field.contains("Cwd");
    if is_path {
        return RpcError::invalid_params(format!(
            "invalid sandbox permission path URI: {field}: {err}"
        ));
    }
    RpcError::invalid_params(format!("invalid {field}: {err}"))
}

/// The most specific member of `sandbox` that fails to decode on its own.
fn locate(sandbox: &Value) -> Option<String> {
    fn fails<T: for<'de> Deserialize<'de>>(value: &Value) -> bool {
        serde_json::from_value::<T>(value.clone()).is_err()
    }
    if let Some(entries) = sandbox
        .pointer("/permissions/file_system/entries")
        .and_then(Value::as_array)
    {
        for (i, entry) in entries.iter().enumerate() {
            if fails::<FileSystemEntry>(entry) {
                let inner = match entry.get("path") {
                    Some(path) if fails::<FileSystemPath>(path) => ".path",
                    _ => "",
                };
                return Some(format!(
                    "sandbox.permissions.file_system.entries[{i}]{inner}"
                ));
            }
        }
    }
    type Check = fn(&Value) -> bool;
    let members: [(&str, Check); 5] = [
        ("permissions", fails::<PermissionProfile>),
        ("sandboxPolicy", fails::<LegacySandboxPolicy>),
        ("cwd", fails::<rexec_protocol::PathUri>),
        ("sandboxPolicyCwd", fails::<rexec_protocol::PathUri>),
        ("workspaceRoots", fails::<Vec<rexec_protocol::PathUri>>),
    ];
    members
        .iter()
        .find(|(name, fails)| sandbox.get(name).is_some_and(fails))
        .map(|(name, _)| format!("sandbox.{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resolve_in(sandbox: Value, cwd: &Path) -> Result<Option<Plan>, RpcError> {
        resolve(&sandbox, Some(cwd), &BTreeMap::new())
    }

    #[test]
    fn disabled_and_external_need_no_sandbox() {
        for sandbox in [
            json!({"permissions": {"type": "disabled"}}),
            json!({"permissions": {"type": "external", "network": "enabled"}}),
            json!({"sandboxPolicy": {"type": "danger-full-access"}}),
        ] {
            assert_eq!(resolve_in(sandbox, Path::new("/")).expect("valid"), None);
        }
    }

    #[test]
    fn workspace_write_protects_git_and_adds_minimal_reads() {
        let dir = std::env::temp_dir().join(format!("rexec-policy-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".git")).expect("mkdir");
        let sandbox =
            json!({"sandboxPolicy": {"type": "workspace-write", "exclude_slash_tmp": true}});
        let plan = resolve_in(sandbox, &dir)
            .expect("valid")
            .expect("sandboxed");
        let rules = plan.file_system.clone().expect("restricted");
        let dir = std::fs::canonicalize(&dir).expect("canonical");
        assert_eq!(rules.write, vec![dir.clone()]);
        assert_eq!(rules.protected, vec![dir.join(".git")]);
        assert!(rules.read.contains(&PathBuf::from("/usr")));
        assert!(!plan.network);
        assert!(plan.allows_write(&dir.join("src/main.rs")));
        assert!(!plan.allows_write(&dir.join(".git/config")));
        assert!(!plan.allows_write(Path::new("/etc/passwd")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn errors_name_the_member() {
        let bad_type = json!({"permissions": {"type": "sideways"}});
        let err = resolve_in(bad_type, Path::new("/")).expect_err("bad type");
        assert!(err.message.contains("sandbox.permissions"), "{err:?}");

        let relative = json!({"permissions": {"type": "managed", "network": "enabled",
            "file_system": {"type": "restricted", "entries": [
                {"path": {"type": "path", "path": "file:///ok"}, "access": "read"},
                {"path": {"type": "path", "path": "not/absolute"}, "access": "write"}]}}});
        let err = resolve_in(relative, Path::new("/")).expect_err("relative path");
        assert!(
            err.message
                .starts_with("invalid sandbox permission path URI: sandbox.permissions.file_system.entries[1].path"),
            "{err:?}"
        );

        let neither = json!({"cwd": "file:///tmp"});
        assert!(resolve_in(neither, Path::new("/")).is_err());
    }

    #[test]
    fn a_deny_inside_a_granted_tree_is_refused() {
        let sandbox = json!({"permissions": {"type": "managed", "network": "restricted",
            "file_system": {"type": "restricted", "entries": [
                {"path": {"type": "special", "value": {"kind": "root"}}, "access": "read"},
                {"path": {"type": "path", "path": "file:///etc/shadow"}, "access": "deny"}]}}});
        let err = resolve_in(sandbox, Path::new("/")).expect_err("unenforceable deny");
        assert!(err.message.contains("cannot enforce"), "{err:?}");
    }
}
