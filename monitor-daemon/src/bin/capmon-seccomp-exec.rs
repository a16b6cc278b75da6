//! `capmon-seccomp-exec PROFILE -- CMD [ARGS...]`: installs a Docker-format seccomp profile on
//! itself with real seccomp (no container runtime needed), then execs CMD.
//!
//! Supported: `defaultAction` ALLOW / ERRNO / KILL*, rules without `args`/`includes`/
//! `excludes` that all share one action. Anything else is refused with a clear error rather
//! than applied approximately. Syscall names unknown on this architecture are skipped (as
//! libseccomp does) with a note on stderr.

use std::{collections::BTreeMap, ffi::CString, process::ExitCode};

use capmon_core::{names::Arch, seccomp::Profile};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

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

fn build(profile: &Profile) -> Result<BpfProgram, String> {
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
                "syscalls[{i}]: args/includes/excludes are not supported by this helper"
            ));
        }
        let a = action(&rule.action, rule.errno_ret, profile.default_errno_ret)
            .map_err(|e| format!("syscalls[{i}].action: {e}"))?;
        if match_action.is_some_and(|m| m != a) {
            return Err(format!(
                "syscalls[{i}]: all rules must share one action in this helper"
            ));
        }
        match_action = Some(a);
        for name in &rule.names {
            match arch.syscall_number(name) {
                Some(nr) => {
                    rules.insert(i64::from(nr), Vec::new());
                }
                None => eprintln!(
                    "capmon-seccomp-exec: note: syscall {name} does not exist on this architecture; skipped"
                ),
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some("--"), Some(_)) =
        (args.first(), args.get(1).map(String::as_str), args.get(2))
    else {
        eprintln!("usage: capmon-seccomp-exec PROFILE.json -- CMD [ARGS...]");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("capmon-seccomp-exec: cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let program = match Profile::from_json(&text)
        .map_err(|e| e.to_string())
        .and_then(|p| build(&p))
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("capmon-seccomp-exec: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let argv: Vec<CString> = match args[2..].iter().map(|a| CString::new(a.as_str())).collect() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("capmon-seccomp-exec: argument with a NUL byte: {e}");
            return ExitCode::from(2);
        }
    };
    // Everything execvp needs is prepared before the filter is installed, so that nothing but
    // execve (and the PATH search's failed execve calls) runs under it.
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    if let Err(e) = seccompiler::apply_filter(&program) {
        eprintln!("capmon-seccomp-exec: cannot install the filter: {e}");
        return ExitCode::from(2);
    }
    // SAFETY: NUL-terminated strings and a NULL-terminated array that outlive the call.
    unsafe { libc::execvp(ptrs[0], ptrs.as_ptr()) };
    let err = std::io::Error::last_os_error();
    eprintln!("capmon-seccomp-exec: cannot execute {}: {err}", args[2]);
    ExitCode::from(127)
}
