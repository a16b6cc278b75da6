//! Real seccomp from a Docker-format profile, without a container runtime: the profile
//! compiled to a classic BPF program (seccompiler) for this architecture, and installed on the
//! calling thread just before it executes a command. Used by `capmon record --verify` (the
//! re-run under the generated profile) and the tests' `capmon-seccomp-exec`.

use std::collections::BTreeMap;

use capmon_core::{names::Arch, seccomp::Profile};
pub use seccompiler::BpfProgram;
use seccompiler::{SeccompAction, SeccompFilter, TargetArch};

fn action(
    name: &str,
    errno: Option<u32>,
    default_errno: Option<u32>,
) -> Result<SeccompAction, String> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => SeccompAction::Allow,
        "SCMP_ACT_ERRNO" => {
            SeccompAction::Errno(errno.or(default_errno).unwrap_or(libc::EPERM as u32))
        }
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => SeccompAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => SeccompAction::KillProcess,
        "SCMP_ACT_LOG" => SeccompAction::Log,
        "SCMP_ACT_TRAP" => SeccompAction::Trap,
        other => return Err(format!("unsupported action {other}")),
    })
}

/// Compiles a Docker-format profile for this architecture: `defaultAction` ALLOW / ERRNO /
/// KILL*, rules without `args`/`includes`/`excludes` that all share one action; anything
/// else is refused with a message rather than applied approximately. Names unknown on this
/// architecture are skipped, as libseccomp does.
pub fn compile(profile: &Profile) -> Result<BpfProgram, String> {
    let arch = Arch::host();
    let mismatch = action(&profile.default_action, None, profile.default_errno_ret)
        .map_err(|e| format!("defaultAction: {e}"))?;
    let mut match_action = None;
    let mut rules = BTreeMap::new();
    for (i, rule) in profile.syscalls.iter().enumerate() {
        if rule.args.as_ref().is_some_and(|a| !a.is_empty())
            || rule.includes.is_some()
            || rule.excludes.is_some()
        {
            return Err(format!(
                "syscalls[{i}]: args/includes/excludes are not supported by capmon's filter compiler"
            ));
        }
        let a = action(&rule.action, rule.errno_ret, profile.default_errno_ret)
            .map_err(|e| format!("syscalls[{i}].action: {e}"))?;
        if match_action.is_some_and(|m| m != a) {
            return Err(format!(
                "syscalls[{i}]: all rules must share one action in capmon's filter compiler"
            ));
        }
        match_action = Some(a);
        for name in &rule.names {
            match arch.syscall_number(name) {
                Some(nr) => {
                    rules.insert(i64::from(nr), Vec::new());
                }
                None => tracing::debug!("syscall {name} does not exist on this architecture"),
            }
        }
    }
    let match_action = match_action.unwrap_or(mismatch.clone());
    let target = match arch {
        Arch::X86_64 => TargetArch::x86_64,
        Arch::Aarch64 => TargetArch::aarch64,
    };
    let filter =
        SeccompFilter::new(rules, mismatch, match_action, target).map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}
