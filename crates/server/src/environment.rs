//! What `environment/info` reports about this host, computed once at startup.

use rexec_protocol::PathUri;
use rexec_protocol::environment::{
    EnvironmentCapabilities, EnvironmentInfo, ProcessContainment, RexecEnvironmentInfo, ShellInfo,
};
use std::path::{Path, PathBuf};

pub fn local_environment_info(containment: ProcessContainment) -> EnvironmentInfo {
    let shell_path = std::env::var_os("SHELL")
        .filter(|s| !s.is_empty())
        .map_or_else(|| PathBuf::from("/bin/sh"), PathBuf::from);
    let shell_name = shell_path
        .file_name()
        .map_or_else(|| "sh".to_owned(), |n| n.to_string_lossy().into_owned());
    let temp_dir = absolute(std::env::temp_dir());
    EnvironmentInfo {
        shell: ShellInfo {
            name: shell_name,
            path: shell_path.to_string_lossy().into_owned(),
        },
        executor_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        cwd: std::env::current_dir().ok().map(PathUri::from_path),
        user_home_dir: std::env::var_os("HOME")
            .filter(|h| Path::new(h).is_absolute())
            .map(PathUri::from_path),
        platform_os: Some(std::env::consts::OS.to_owned()),
        temporary_directories: vec![PathUri::from_path(temp_dir.clone())],
        temp_dir: Some(PathUri::from_path(temp_dir)),
        // README's capability table says why each false one is false.
        capabilities: EnvironmentCapabilities {
            fs_watch_missing: true,
            http_header_env_vars: true,
            file_write_streaming: true,
            shell_snapshot_v2: true,
            sandboxed_file_streaming: true,
            linux_root_write_preserves_devices: true,
            ..EnvironmentCapabilities::default()
        },
        rexec: Some(RexecEnvironmentInfo {
            process_containment: containment,
        }),
    }
}

/// `TMPDIR` may be relative; report it resolved against the server's cwd.
fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    std::env::current_dir().map_or(path.clone(), |cwd| cwd.join(path))
}
