//! The file-system half of a plan, enforced with Landlock in the helper before it execs.
//!
//! Landlock only grants: every access right the kernel knows is handled, then read rights
//! are granted beneath the readable trees, all rights beneath the writable ones, and
//! read/write/ioctl on the device nodes a program needs (its terminal, `/dev/null`…).
//! A symlink inside a writable tree that points outside it grants nothing: rules bind to
//! the inode a path resolved to when the rule was made, and every access is checked on the
//! file finally reached.
//!
//! Older kernels: the crate degrades best-effort; the helper then refuses to run when
//! Landlock is missing altogether, or too old to confine truncation (ABI < 3), since
//! either would leave writes the policy forbids.

use super::policy::{DEVICE_WRITE, FileSystemRules};
use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, LandlockStatus, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, path_beneath_rules,
};
use std::path::Path;

/// The newest file-system rights rexec asks for (ABI 5 added device ioctls).
const TARGET_ABI: ABI = ABI::V5;

/// `network`: whether the plan allows the network; when it does not, abstract UNIX
/// sockets outside the sandbox are out of reach too (ABI 6, best effort). Signals to
/// processes outside the sandbox (the server, its other children) are always refused.
pub fn restrict(rules: &FileSystemRules, network: bool) -> Result<(), String> {
    let mut scopes: BitFlags<Scope> = Scope::Signal.into();
    if !network {
        scopes |= Scope::AbstractUnixSocket;
    }
    let all = AccessFs::from_all(TARGET_ABI);
    let read = AccessFs::from_read(TARGET_ABI);
    let device: BitFlags<AccessFs> = read | AccessFs::WriteFile | AccessFs::IoctlDev;
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .and_then(|r| r.scope(scopes))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(&rules.read, read)))
        .and_then(|r| r.add_rules(path_beneath_rules(&rules.write, all)))
        .and_then(|r| r.add_rules(path_beneath_rules(existing(DEVICE_WRITE), device)))
        .and_then(|r| r.restrict_self())
        .map_err(|err| format!("Landlock: {err}"))?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err("Landlock is not available on this kernel".to_owned());
    }
    if let LandlockStatus::Available { effective_abi, .. } = status.landlock
        && effective_abi < ABI::V3
    {
        return Err(format!(
            "Landlock ABI {} cannot confine truncation (needs 3)",
            effective_abi as i32
        ));
    }
    Ok(())
}

fn existing(paths: &'static [&'static str]) -> Vec<&'static Path> {
    paths
        .iter()
        .map(|p| Path::new(*p))
        .filter(|p| p.exists())
        .collect()
}
