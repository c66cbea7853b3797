//! `initialize`, `environment/info` and `environment/status`.

use crate::path_uri::PathUri;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams {
    pub client_name: String,
    #[serde(default)]
    pub resume_session_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResult {
    pub session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_info: Option<EnvironmentInfo>,
    /// rexec extension: present only when the server is rexec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rexec: Option<RexecServerInfo>,
}

/// What a rexec server adds to the `initialize` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RexecServerInfo {
    pub version: String,
    /// Names from [`crate::extensions`].
    pub extensions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShellInfo {
    pub name: String,
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentInfo {
    pub shell: ShellInfo,
    #[serde(default)]
    pub executor_version: Option<String>,
    #[serde(default)]
    pub cwd: Option<PathUri>,
    #[serde(default)]
    pub user_home_dir: Option<PathUri>,
    #[serde(default)]
    pub platform_os: Option<String>,
    #[serde(default)]
    pub temporary_directories: Vec<PathUri>,
    #[serde(default)]
    pub temp_dir: Option<PathUri>,
    #[serde(default)]
    pub capabilities: EnvironmentCapabilities,
}

/// Capability bits that gate newer request fields. rexec implements none of the gated
/// upstream features yet, so it reports them all `false` and clients must not send them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvironmentCapabilities {
    pub network_proxy_launch: bool,
    pub capability_discovery_sandbox: bool,
    pub environment_config_read: bool,
    pub http_header_env_vars: bool,
    pub sandboxed_file_streaming: bool,
    pub shell_snapshot_v2: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvironmentStatus {
    pub status: String,
}
