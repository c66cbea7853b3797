//! `initialize`, `environment/info` and `environment/status`.

use crate::path_uri::PathUri;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams {
    pub client_name: String,
    #[serde(default)]
    pub resume_session_id: Option<String>,
    /// rexec extension: what the client asks of a rexec server. Upstream servers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rexec: Option<RexecClientRequest>,
}

/// What a rexec-aware client asks for in `initialize` (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RexecClientRequest {
    /// Send this connection's `process/output` as binary frames
    /// ([`crate::binary_output`]). Granted on WebSocket connections only.
    pub binary_output: bool,
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
    /// Whether this connection's `process/output` travels as binary frames: the client
    /// asked (`rexec.binaryOutput` in the params) and the transport is a WebSocket.
    #[serde(default)]
    pub binary_output: bool,
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
    /// rexec extension ([`crate::extensions::PROCESS_CONTAINMENT`]): present only when the
    /// server is rexec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rexec: Option<RexecEnvironmentInfo>,
}

/// What a rexec server adds to `environment/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RexecEnvironmentInfo {
    /// How the server keeps the descendants of its processes killable.
    pub process_containment: ProcessContainment,
}

/// How a rexec server finds every descendant of a process it kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProcessContainment {
    /// Each process has its own cgroup v2, killed as a whole (`cgroup.kill`): nothing it
    /// forks escapes, whatever its session or process group.
    Cgroup,
    /// No cgroup: the server is a child subreaper and kills the descendants it can
    /// attribute to the process (see ARCHITECTURE.md, "Descendants").
    Subreaper,
}

/// Capability bits that gate newer requests, fields and sandbox semantics, in upstream's
/// order. Every flag is listed so a client sees each answer; README's capability table
/// says what each gates and why rexec reports the ones it leaves false.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvironmentCapabilities {
    pub network_proxy_launch: bool,
    pub network_proxy_review_domains: bool,
    pub network_proxy_transparent_tcp: bool,
    pub credential_masking: bool,
    pub credential_masking_custom_providers: bool,
    pub capability_discovery_sandbox: bool,
    pub fs_watch_missing: bool,
    pub capability_discovery_v2: bool,
    pub environment_config_read: bool,
    pub http_header_env_vars: bool,
    pub sandboxed_file_streaming: bool,
    pub file_write_streaming: bool,
    pub shell_snapshot_v2: bool,
    pub windows_mxc: bool,
    pub linux_root_write_preserves_devices: bool,
    pub linux_approved_root_write_preserves_restrictions: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvironmentStatus {
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialize_params_without_the_rexec_request_stay_upstream_shaped() {
        let params: InitializeParams =
            serde_json::from_str(r#"{"clientName":"codex"}"#).expect("decode");
        assert_eq!(params.rexec, None);
        let json = serde_json::to_value(&params).expect("encode");
        assert!(json.get("rexec").is_none(), "{json}");
    }

    #[test]
    fn initialize_params_carry_the_binary_output_request() {
        let params: InitializeParams = serde_json::from_str(
            r#"{"clientName":"c","rexec":{"binaryOutput":true,"futureField":1}}"#,
        )
        .expect("decode");
        assert_eq!(
            params.rexec,
            Some(RexecClientRequest {
                binary_output: true
            })
        );
        let empty: InitializeParams =
            serde_json::from_str(r#"{"clientName":"c","rexec":{}}"#).expect("decode");
        assert_eq!(empty.rexec, Some(RexecClientRequest::default()));
    }

    #[test]
    fn environment_info_carries_the_containment_mode_only_from_rexec() {
        let upstream = r#"{"shell":{"name":"sh","path":"/bin/sh"}}"#;
        let info: EnvironmentInfo = serde_json::from_str(upstream).expect("decode");
        assert_eq!(info.rexec, None);
        assert!(
            serde_json::to_value(&info)
                .expect("encode")
                .get("rexec")
                .is_none()
        );
        let rexec =
            r#"{"shell":{"name":"sh","path":"/bin/sh"},"rexec":{"processContainment":"cgroup"}}"#;
        let info: EnvironmentInfo = serde_json::from_str(rexec).expect("decode");
        assert_eq!(
            info.rexec.map(|r| r.process_containment),
            Some(ProcessContainment::Cgroup)
        );
    }

    #[test]
    fn server_info_from_an_older_rexec_grants_nothing() {
        let info: RexecServerInfo =
            serde_json::from_str(r#"{"version":"0.1.0","extensions":[]}"#).expect("decode");
        assert!(!info.binary_output);
    }
}
