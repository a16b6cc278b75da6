//! Classifying capability checks. The `cap_capable` tracepoint has no audit flag, so a check
//! made through a no-audit path (the kernel asking "may this task do X?" without the task
//! trying to) is recognised from its call stack: a frame of a known no-audit caller.
//!
//! Classes (see docs/recommendations.md):
//! - `ignored`: made with borrowed credentials (overlayfs), or before the first `execve` in the
//!   cgroup (the container runtime's setup) — the kernel side marks both in `CapKey::context`;
//! - `probe`: a no-audit check, or a refused check whose syscall still succeeded (or failed
//!   for another reason), or a refused check outside any syscall — never a reason to keep or
//!   add a capability;
//! - `used`: granted, own credentials, after the first exec, audited;
//! - `denied`: refused, audited, and the enclosing syscall failed with `EPERM` or `EACCES`.

use monitor_common::{OUTCOME_IDS_UNCHANGED, OUTCOME_SYSCALL_OK, context};
use serde::Serialize;

/// Kernel functions that check a capability without auditing it. A check whose stack contains
/// one of them is a `probe`.
///
/// - `cap_vm_enough_memory` / `security_vm_enough_memory_mm` / `__vm_enough_memory`: every
///   `mmap`, `brk`, `execve` asks whether the task holds `CAP_SYS_ADMIN` (for the overcommit
///   reserve), with `CAP_OPT_NOAUDIT`.
/// - `has_ns_capability_noaudit`, `has_capability_noaudit`, `ns_capable_noaudit`: the generic
///   no-audit helpers of `kernel/capability.c` (used by ptrace access checks with
///   `PTRACE_MODE_NOAUDIT`, `/proc` permission checks, the OOM killer, ...).
/// - `ptrace_has_cap`: `__ptrace_may_access` asking about `CAP_SYS_PTRACE` for `/proc`
///   reads with `PTRACE_MODE_NOAUDIT`.
pub const NOAUDIT_CALLERS: &[&str] = &[
    "cap_vm_enough_memory",
    "security_vm_enough_memory_mm",
    "__vm_enough_memory",
    "has_ns_capability_noaudit",
    "has_capability_noaudit",
    "ns_capable_noaudit",
];

/// Generic capability helpers between a caller and `cap_capable`: skipped when naming the
/// call site of a check.
pub const PLUMBING: &[&str] = &[
    "security_capable",
    "ns_capable",
    "ns_capable_common",
    "ns_capable_noaudit",
    "ns_capable_setid",
    "capable",
    "has_ns_capability",
    "has_ns_capability_noaudit",
    "has_capability",
    "has_capability_noaudit",
    "capable_wrt_inode_uidgid",
    "privileged_wrt_inode_uidgid",
    "file_ns_capable",
    "sk_ns_capable",
    "sk_capable",
    "sk_net_capable",
    "netlink_ns_capable",
    "cap_vm_enough_memory",
    "security_vm_enough_memory_mm",
    "__vm_enough_memory",
];

/// The function that asked for the capability: the first frame below `cap_capable` that is not
/// generic plumbing (`chown_ok` for chown's `CAP_CHOWN`).
pub fn call_site<'a>(frames_below_cap_capable: &[&'a str]) -> Option<&'a str> {
    frames_below_cap_capable
        .iter()
        .copied()
        .find(|f| !PLUMBING.contains(&base_symbol(f)))
        .map(base_symbol)
}

/// The class of one capability check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CapClass {
    /// Granted and audited: the workload needs it.
    Used,
    /// Refused and audited: the workload tried and lacks it.
    Denied,
    /// A no-audit check, or a refusal that did not make a syscall fail: not a reason to keep or
    /// add it.
    Probe,
    /// Not the workload's own check (borrowed credentials, runtime setup before exec).
    Ignored,
}

impl CapClass {
    /// Lower-case name, as in JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            CapClass::Used => "used",
            CapClass::Denied => "denied",
            CapClass::Probe => "probe",
            CapClass::Ignored => "ignored",
        }
    }

    /// The class named `s` (as [`CapClass::as_str`] writes it).
    pub fn parse(s: &str) -> Option<Self> {
        [
            CapClass::Used,
            CapClass::Denied,
            CapClass::Probe,
            CapClass::Ignored,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// A kernel symbol without the compiler's clone suffixes (`.isra.0`, `.constprop.0`, `.cold`).
pub fn base_symbol(sym: &str) -> &str {
    sym.split('.').next().unwrap_or(sym)
}

/// The first frame (innermost first) that is a known no-audit caller.
pub fn noaudit_frame<'a>(frames: &[&'a str]) -> Option<&'a str> {
    frames
        .iter()
        .copied()
        .find(|f| NOAUDIT_CALLERS.contains(&base_symbol(f)))
}

/// What the kernel side knew about a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckFacts {
    /// `cap_capable`'s result: 0 granted, `-errno` refused.
    pub ret: i32,
    /// `monitor_common::context` bits.
    pub context: u32,
    /// For refused checks inside a syscall: the syscall's `-errno`, or `OUTCOME_SYSCALL_OK`.
    pub outcome: i32,
}

/// Classifies a check; returns the class and why.
pub fn classify(facts: CheckFacts, frames: &[&str]) -> (CapClass, String) {
    if facts.context & context::BORROWED_CRED != 0 {
        return (
            CapClass::Ignored,
            "borrowed credentials (not the task's own real_cred)".into(),
        );
    }
    if facts.context & context::BEFORE_EXEC != 0 {
        return (
            CapClass::Ignored,
            "before the first execve in the cgroup (runtime setup)".into(),
        );
    }
    if facts.context & context::NOAUDIT != 0 {
        return (CapClass::Probe, "no-audit check (CAP_OPT_NOAUDIT)".into());
    }
    if let Some(f) = noaudit_frame(frames) {
        return (
            CapClass::Probe,
            format!("no-audit check from {}", base_symbol(f)),
        );
    }
    if facts.ret == 0 && facts.context & context::MODE_WITHOUT_SGID != 0 {
        return (
            CapClass::Probe,
            "granted, but the chmod's new mode has no set-group-ID bit: CAP_FSETID only decides \
             whether S_ISGID survives (in_group_or_capable), so the call does the same without it"
                .into(),
        );
    }
    if facts.ret == 0 && facts.outcome == OUTCOME_IDS_UNCHANGED {
        return (
            CapClass::Probe,
            "granted, but the set*id call left every id as it was: it succeeds without the \
             capability"
                .into(),
        );
    }
    if facts.ret == 0 {
        if frames.is_empty() {
            // Kept as used, the safe side for recommendations: dropping it might break the
            // workload, keeping it only costs least privilege.
            return (
                CapClass::Used,
                "granted (no kernel stack to rule out a no-audit check)".into(),
            );
        }
        return (CapClass::Used, "granted".into());
    }
    if facts.context & context::PENDING_OVERFLOW != 0 {
        return (
            CapClass::Denied,
            "refused (syscall outcome not tracked: too many refusals in one syscall)".into(),
        );
    }
    if facts.context & context::NO_SYSCALL != 0 {
        return (
            CapClass::Probe,
            "refused outside any observed syscall".into(),
        );
    }
    match facts.outcome {
        o if o == -libc::EPERM || o == -libc::EACCES => (
            CapClass::Denied,
            format!(
                "refused, and the syscall failed with {}",
                crate::names::errno_name((-o) as u32)
            ),
        ),
        OUTCOME_SYSCALL_OK => (CapClass::Probe, "refused, but the syscall succeeded".into()),
        o if o < 0 => (
            CapClass::Probe,
            format!(
                "refused, and the syscall failed with {} (not a permission error)",
                crate::names::errno_name((-o) as u32)
            ),
        ),
        _ => (
            CapClass::Probe,
            "refused; the syscall's outcome is unknown".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stack of a CAP_SYS_ADMIN check taken on this machine (6.18) during `mmap`.
    const MMAP: &[&str] = &[
        "bpf_trace_run5",
        "cap_capable",
        "cap_vm_enough_memory",
        "security_vm_enough_memory_mm",
        "mmap_region",
        "do_mmap",
        "vm_mmap_pgoff",
        "ksys_mmap_pgoff",
        "do_syscall_64",
        "entry_SYSCALL_64_after_hwframe",
    ];

    /// CAP_CHOWN checked by `chown(2)`.
    const CHOWN: &[&str] = &[
        "bpf_trace_run5",
        "cap_capable",
        "security_capable",
        "capable_wrt_inode_uidgid",
        "chown_ok",
        "notify_change",
        "chown_common",
        "do_fchownat",
        "__x64_sys_fchownat",
        "do_syscall_64",
    ];

    const EPERM: i32 = -1;

    fn facts(ret: i32, context: u32, outcome: i32) -> CheckFacts {
        CheckFacts {
            ret,
            context,
            outcome,
        }
    }

    fn class(f: CheckFacts, frames: &[&str]) -> CapClass {
        classify(f, frames).0
    }

    #[test]
    fn mmap_reserve_check_is_a_probe_granted_or_not() {
        assert_eq!(class(facts(0, 0, 0), MMAP), CapClass::Probe);
        assert_eq!(
            class(facts(EPERM, 0, OUTCOME_SYSCALL_OK), MMAP),
            CapClass::Probe
        );
        assert_eq!(class(facts(EPERM, 0, -libc::EPERM), MMAP), CapClass::Probe);
        assert_eq!(noaudit_frame(MMAP), Some("cap_vm_enough_memory"));
        assert_eq!(
            classify(facts(0, 0, 0), MMAP).1,
            "no-audit check from cap_vm_enough_memory"
        );
    }

    #[test]
    fn setid_calls_that_change_no_id_do_not_use_the_capability() {
        assert_eq!(
            class(facts(0, 0, OUTCOME_IDS_UNCHANGED), CHOWN),
            CapClass::Probe
        );
        assert_eq!(class(facts(0, 0, 0), CHOWN), CapClass::Used);
    }

    #[test]
    fn fsetid_in_a_chmod_without_sgid_is_a_probe() {
        let (class, why) = classify(facts(0, context::MODE_WITHOUT_SGID, 0), CHOWN);
        assert_eq!(class, CapClass::Probe);
        assert!(why.contains("S_ISGID"), "{why}");
        // Without a stack too: the kernel side judged it from the syscall's mode argument.
        assert_eq!(
            self::class(facts(0, context::MODE_WITHOUT_SGID, 0), &[]),
            CapClass::Probe
        );
    }

    #[test]
    fn audited_checks_are_used_or_denied_by_the_syscall_outcome() {
        assert_eq!(class(facts(0, 0, 0), CHOWN), CapClass::Used);
        assert_eq!(
            class(facts(EPERM, 0, -libc::EPERM), CHOWN),
            CapClass::Denied
        );
        assert_eq!(
            class(facts(EPERM, 0, -libc::EACCES), CHOWN),
            CapClass::Denied
        );
        assert_eq!(
            classify(facts(EPERM, 0, -libc::EACCES), CHOWN).1,
            "refused, and the syscall failed with EACCES"
        );
        // The kernel asked, was told no, and the syscall went on fine: a probe.
        assert_eq!(
            class(facts(EPERM, 0, OUTCOME_SYSCALL_OK), CHOWN),
            CapClass::Probe
        );
        assert_eq!(
            class(facts(EPERM, 0, -libc::ENOENT), CHOWN),
            CapClass::Probe
        );
        assert_eq!(
            class(facts(EPERM, context::NO_SYSCALL, 0), CHOWN),
            CapClass::Probe
        );
        assert_eq!(
            class(facts(EPERM, context::PENDING_OVERFLOW, 0), CHOWN),
            CapClass::Denied
        );
        assert_eq!(class(facts(0, 0, 0), &[]), CapClass::Used);
    }

    #[test]
    fn kprobe_mode_noaudit_flag_makes_a_probe_without_a_stack() {
        assert_eq!(class(facts(0, context::NOAUDIT, 0), &[]), CapClass::Probe);
        assert_eq!(
            classify(facts(EPERM, context::NOAUDIT, 0), &[]).1,
            "no-audit check (CAP_OPT_NOAUDIT)"
        );
    }

    #[test]
    fn borrowed_credentials_and_runtime_setup_are_ignored() {
        assert_eq!(
            class(facts(0, context::BORROWED_CRED, 0), CHOWN),
            CapClass::Ignored
        );
        assert_eq!(
            class(facts(EPERM, context::BEFORE_EXEC, 0), CHOWN),
            CapClass::Ignored
        );
        // Ignored wins over probe: it is not the workload's check at all.
        assert_eq!(
            class(facts(0, context::BEFORE_EXEC, 0), MMAP),
            CapClass::Ignored
        );
    }

    #[test]
    fn call_sites_skip_plumbing() {
        assert_eq!(call_site(&CHOWN[2..]), Some("chown_ok"));
        assert_eq!(call_site(&MMAP[2..]), Some("mmap_region"));
        assert_eq!(call_site(&["security_capable", "ns_capable"]), None);
        assert_eq!(
            call_site(&["security_capable", "do_jit.isra.0"]),
            Some("do_jit")
        );
    }

    #[test]
    fn compiler_suffixes_are_ignored() {
        assert_eq!(
            base_symbol("ns_capable_noaudit.isra.0"),
            "ns_capable_noaudit"
        );
        assert_eq!(
            class(
                facts(0, 0, 0),
                &["cap_capable", "has_ns_capability_noaudit.constprop.0"]
            ),
            CapClass::Probe
        );
        // A similar name is not a match.
        assert_eq!(
            class(facts(0, 0, 0), &["cap_capable", "ns_capable"]),
            CapClass::Used
        );
    }
}
