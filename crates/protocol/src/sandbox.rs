//! The `sandbox` member of `process/start` (upstream `FileSystemSandboxContext`), and rexec's
//! report of what a sandbox refused.
//!
//! Two wire shapes exist upstream and both are accepted: the current one, a permission
//! profile (`{"permissions": {"type": "managed" | "disabled" | "external", …}, "cwd"?,
//! "workspaceRoots"?}`), and the legacy `{"sandboxPolicy": {"type": "read-only" |
//! "workspace-write" | "danger-full-access" | "external-sandbox", …}, "sandboxPolicyCwd"?}`.
//! Members this crate does not model (Windows settings, `useLegacyLandlock`, …) are kept in
//! `other` so a context round-trips.

use crate::path_uri::PathUri;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SandboxContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<PermissionProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_policy: Option<LegacySandboxPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_policy_cwd: Option<PathUri>,
    /// The directory `project_roots` entries and legacy workspace policies refer to when
    /// `workspaceRoots` is absent (default: the process cwd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathUri>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_roots: Option<Vec<PathUri>>,
    /// Required by upstream peers (codex 0.169 rejects a context without it); meaningless
    /// on Linux. Default `disabled`.
    #[serde(default = "windows_sandbox_disabled")]
    pub windows_sandbox_level: String,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

fn windows_sandbox_disabled() -> String {
    "disabled".to_owned()
}

impl Default for SandboxContext {
    fn default() -> Self {
        Self {
            permissions: None,
            sandbox_policy: None,
            sandbox_policy_cwd: None,
            cwd: None,
            workspace_roots: None,
            windows_sandbox_level: windows_sandbox_disabled(),
            other: serde_json::Map::new(),
        }
    }
}

/// What the process may touch (upstream `PermissionProfile`, snake_case members).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PermissionProfile {
    Managed {
        file_system: FileSystemPermissions,
        #[serde(default)]
        network: NetworkAccess,
    },
    /// No sandbox.
    Disabled,
    /// The caller sandboxes the executor itself; nothing to apply here.
    External {
        #[serde(default)]
        network: NetworkAccess,
    },
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NetworkAccess {
    #[default]
    Restricted,
    Enabled,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FileSystemPermissions {
    Restricted {
        entries: Vec<FileSystemEntry>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        glob_scan_max_depth: Option<u32>,
    },
    Unrestricted,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileSystemEntry {
    pub path: FileSystemPath,
    pub access: AccessMode,
    /// `skip`: a missing path is ignored (the only behaviour rexec has).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_path_behavior: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FileSystemPath {
    Path { path: PathUri },
    GlobPattern { pattern: String },
    Special { value: SpecialPath },
}

/// Paths named by role rather than spelled out. A kind not listed here is refused (serde's
/// "unknown variant"), as codex 0.169/0.171 refuse it, so no entry is dropped silently;
/// the explicit `unknown` kind names no path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SpecialPath {
    /// `/`.
    Root,
    /// What any program needs to run: loader, libraries, `/etc`, `/dev` nodes, `/proc`.
    Minimal,
    /// The workspace roots (or one subpath of each).
    #[serde(alias = "current_working_directory")]
    ProjectRoots {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subpath: Option<PathBuf>,
    },
    /// `$TMPDIR` of the process.
    Tmpdir,
    /// `/tmp`.
    SlashTmp,
    /// A kind the sender could not name, with its original text in `path`: grants nothing.
    Unknown {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subpath: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum AccessMode {
    Read,
    Write,
    #[serde(alias = "none")]
    Deny,
}

/// The legacy policies (kebab-case tags, snake_case members).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum LegacySandboxPolicy {
    DangerFullAccess,
    ReadOnly {
        #[serde(default)]
        network_access: bool,
    },
    ExternalSandbox {
        #[serde(default)]
        network_access: NetworkAccess,
    },
    WorkspaceWrite {
        #[serde(default)]
        writable_roots: Vec<PathUri>,
        #[serde(default)]
        network_access: bool,
        #[serde(default)]
        exclude_tmpdir_env_var: bool,
        #[serde(default)]
        exclude_slash_tmp: bool,
    },
}

impl SandboxContext {
    /// A managed profile: read everything, write only `writable` (none: read-only), and
    /// the network on or off.
    pub fn managed(writable: &[PathBuf], network: NetworkAccess) -> Self {
        let root = FileSystemEntry {
            path: FileSystemPath::Special {
                value: SpecialPath::Root,
            },
            access: AccessMode::Read,
            missing_path_behavior: None,
        };
        let writes = writable.iter().map(|dir| FileSystemEntry {
            path: FileSystemPath::Path {
                path: PathUri::from_path(dir.clone()),
            },
            access: AccessMode::Write,
            missing_path_behavior: None,
        });
        Self {
            permissions: Some(PermissionProfile::Managed {
                file_system: FileSystemPermissions::Restricted {
                    entries: std::iter::once(root).chain(writes).collect(),
                    glob_scan_max_depth: None,
                },
                network,
            }),
            ..Self::default()
        }
    }
}

/// rexec extension on `process/exited` and `process/read`: what the sandbox refused, when
/// the server knows or has a specific guess. Absent when nothing is known.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SandboxDenial {
    pub rule: DenialRule,
    /// True when the kernel told the server (the refused call was seen); false when it
    /// was inferred from the process's output.
    pub exact: bool,
    /// What was refused, in words: `socket(AF_INET, SOCK_STREAM)`, a path, an output line.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum DenialRule {
    /// A network socket while the network was restricted.
    Network,
    /// A file-system access outside what the policy allows.
    FileSystem,
    /// Killed by the seccomp filter (SIGSYS).
    Syscall,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_profile_codex_accepts() {
        let json = r#"{"permissions":{"type":"managed",
            "file_system":{"type":"restricted","entries":[
               {"path":{"type":"path","path":"file:///tmp/ws"},"access":"write"},
               {"path":{"type":"special","value":{"kind":"minimal"}},"access":"read"},
               {"path":{"type":"special","value":{"kind":"unknown","path":"from_the_future"}},"access":"read"}]},
            "network":"restricted"},
          "cwd":"file:///tmp/ws","windowsSandboxLevel":"disabled"}"#;
        let context: SandboxContext = serde_json::from_str(json).expect("decode");
        let Some(PermissionProfile::Managed {
            file_system: FileSystemPermissions::Restricted { entries, .. },
            network,
        }) = &context.permissions
        else {
            panic!("not managed: {context:?}");
        };
        assert_eq!(*network, NetworkAccess::Restricted);
        assert_eq!(entries[0].access, AccessMode::Write);
        assert_eq!(
            entries[2].path,
            FileSystemPath::Special {
                value: SpecialPath::Unknown {
                    path: "from_the_future".into(),
                    subpath: None
                }
            }
        );
        assert_eq!(context.windows_sandbox_level, "disabled");
    }

    #[test]
    fn refuses_an_unrecognised_special_kind() {
        let err = serde_json::from_str::<SpecialPath>(r#"{"kind":"from_the_future"}"#)
            .expect_err("an unrecognised kind decodes");
        assert!(
            err.to_string()
                .contains("unknown variant `from_the_future`"),
            "{err}"
        );
    }

    #[test]
    fn decodes_legacy_policies() {
        let json = r#"{"sandboxPolicy":{"type":"workspace-write","writable_roots":["file:///w"],
            "network_access":true}}"#;
        let context: SandboxContext = serde_json::from_str(json).expect("decode");
        assert!(matches!(
            context.sandbox_policy,
            Some(LegacySandboxPolicy::WorkspaceWrite {
                network_access: true,
                ..
            })
        ));
    }

    #[test]
    fn managed_round_trips() {
        let context = SandboxContext::managed(&[PathBuf::from("/w")], NetworkAccess::Enabled);
        let json = serde_json::to_string(&context).expect("encode");
        let back: SandboxContext = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, context);
    }
}
