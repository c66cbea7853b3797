//! The `sandboxDenied` verdict of a sandboxed process, made once, when it exits.
//!
//! Exact: a network socket the seccomp supervisor refused (the kernel told us which call).
//! Inferred: upstream's rule — a failed process whose output says "permission denied",
//! "operation not permitted" or "read-only file system" — refined with the plan: when such
//! a line names a path, the path is checked against the policy, and a refusal on a path the
//! policy lets the child write (plain file permissions, say) is not blamed on the sandbox.
//! A death by SIGSYS (128 + 31) is blamed on the filter. Processes that exit 0 are never
//! denied, whatever they printed.

use super::policy::{Plan, resolve_path};
use rexec_protocol::sandbox::{DenialRule, SandboxDenial};
use std::path::{Path, PathBuf};

const KEYWORDS: &[&str] = &[
    "permission denied",
    "operation not permitted",
    "read-only file system",
];
const SIGSYS_EXIT: i32 = 128 + 31;
/// Longest output line quoted in an inferred denial.
const DETAIL_CHARS: usize = 200;

/// What a verdict found: `None` is not denied.
pub fn judge(
    exit_code: i32,
    plan: &Plan,
    cwd: &Path,
    refusals: &[SandboxDenial],
    output: &str,
) -> Option<SandboxDenial> {
    if exit_code == 0 {
        return None;
    }
    if let Some(refusal) = refusals.first() {
        return Some(refusal.clone());
    }
    if let Some(denial) = output.lines().find_map(|line| judge_line(line, plan, cwd)) {
        return Some(denial);
    }
    (exit_code == SIGSYS_EXIT).then(|| SandboxDenial {
        rule: DenialRule::Syscall,
        exact: false,
        detail: "killed by SIGSYS".to_owned(),
    })
}

fn judge_line(line: &str, plan: &Plan, cwd: &Path) -> Option<SandboxDenial> {
    let lower = line.to_ascii_lowercase();
    if !KEYWORDS.iter().any(|k| lower.contains(k)) {
        return None;
    }
    let paths = mentioned_paths(line, cwd);
    if !paths.is_empty() && paths.iter().all(|p| plan.allows_write(p)) {
        // Every path the line names is one the policy allows: the refusal came from
        // somewhere else (file modes, a read-only mount the policy did not make).
        return None;
    }
    let detail = match paths.iter().find(|p| !plan.allows_write(p)) {
        Some(path) => path.display().to_string(),
        None => line.trim().chars().take(DETAIL_CHARS).collect(),
    };
    Some(SandboxDenial {
        rule: DenialRule::FileSystem,
        exact: false,
        detail,
    })
}

/// Paths a diagnostic line names: quoted ('x', ‘x’, "x", `x') or bare absolute tokens,
/// made absolute against `cwd` and canonicalized as far as they exist.
fn mentioned_paths(line: &str, cwd: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for (open, close) in [('\'', '\''), ('‘', '’'), ('"', '"'), ('`', '\'')] {
        let mut rest = line;
        while let Some(start) = rest.find(open) {
            let after = &rest[start + open.len_utf8()..];
            let Some(end) = after.find(close) else { break };
            found.push(after[..end].to_owned());
            rest = &after[end + close.len_utf8()..];
        }
    }
    // Unquoted: absolute paths, and relative ones with a directory part (`sh: 1: cannot
    // create .git/x: Read-only file system`).
    for token in line.split(|c: char| c.is_whitespace()) {
        let token = token.trim_end_matches([':', ',', ';', '.']);
        if token.starts_with('/') || (token.contains('/') && !token.contains("://")) {
            found.push(token.to_owned());
        }
    }
    found
        .into_iter()
        .filter(|p| !p.is_empty() && !p.contains(char::is_whitespace))
        .map(|p| resolve_path(&cwd.join(p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::policy::FileSystemRules;

    fn workspace_plan(root: &Path) -> Plan {
        Plan {
            file_system: Some(FileSystemRules {
                read: vec![PathBuf::from("/")],
                write: vec![root.to_path_buf()],
                protected: vec![root.join(".git")],
            }),
            network: false,
        }
    }

    #[test]
    fn success_is_never_denied() {
        let plan = workspace_plan(Path::new("/ws"));
        let out = "touch: cannot touch '/etc/x': Permission denied";
        assert_eq!(judge(0, &plan, Path::new("/ws"), &[], out), None);
    }

    #[test]
    fn a_refusal_outside_the_workspace_is_denied_with_its_path() {
        let plan = workspace_plan(Path::new("/ws"));
        let out = "bash: line 1: /etc/zz_test: Read-only file system\n";
        let denial = judge(1, &plan, Path::new("/ws"), &[], out).expect("denied");
        assert_eq!(denial.rule, DenialRule::FileSystem);
        assert!(!denial.exact);
        assert_eq!(denial.detail, "/etc/zz_test");
    }

    #[test]
    fn a_refusal_inside_the_workspace_is_not_the_sandbox() {
        let ws = std::env::temp_dir();
        let plan = workspace_plan(&std::fs::canonicalize(&ws).expect("tmp"));
        let out = "touch: cannot touch 'locked.txt': Permission denied";
        assert_eq!(judge(1, &plan, &ws, &[], out), None);
        let git = "touch: cannot touch '.git/config': Read-only file system";
        assert!(judge(1, &plan, &ws, &[], git).is_some());
        let dash = "sh: 1: cannot create .git/c: Read-only file system";
        let denial = judge(1, &plan, &ws, &[], dash).expect("denied");
        assert!(denial.detail.ends_with(".git/c"), "{denial:?}");
    }

    #[test]
    fn exact_refusals_win_and_other_failures_are_not_denied() {
        let plan = workspace_plan(Path::new("/ws"));
        let refusal = SandboxDenial {
            rule: DenialRule::Network,
            exact: true,
            detail: "socket(AF_INET, SOCK_STREAM)".to_owned(),
        };
        let got = judge(
            7,
            &plan,
            Path::new("/ws"),
            std::slice::from_ref(&refusal),
            "",
        );
        assert_eq!(got, Some(refusal));
        let missing = "cat: /ws/nope: No such file or directory";
        assert_eq!(judge(1, &plan, Path::new("/ws"), &[], missing), None);
        assert!(judge(SIGSYS_EXIT, &plan, Path::new("/ws"), &[], "").is_some());
    }
}
