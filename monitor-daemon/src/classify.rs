//! Classifying capability checks. The `cap_capable` tracepoint has no audit flag, so a check
//! made through a no-audit path (the kernel asking "may this task do X?" without the task
//! trying to) is recognised from its call stack: a frame of a known no-audit caller.
//!
//! Classes (see ARCHITECTURE.md): `used` (granted, audited), `denied` (refused, audited),
//! `probe` (a no-audit check: never a reason to keep or add a capability).

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
    /// A no-audit check: not a reason to keep or add it.
    Probe,
}

impl CapClass {
    /// Lower-case name, as in JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            CapClass::Used => "used",
            CapClass::Denied => "denied",
            CapClass::Probe => "probe",
        }
    }
}

/// A kernel symbol without the compiler's clone suffixes (`.isra.0`, `.constprop.0`, `.cold`).
pub fn base_symbol(sym: &str) -> &str {
    sym.split('.').next().unwrap_or(sym)
}

/// The first frame (innermost first) that is a known no-audit caller.
pub fn noaudit_frame<'a>(frames: &[&'a str]) -> Option<&'a str> {
    frames.iter().copied().find(|f| NOAUDIT_CALLERS.contains(&base_symbol(f)))
}

/// Classifies a check from its result (`cap_capable`'s return value) and its kernel frames.
pub fn classify(ret: i32, frames: &[&str]) -> CapClass {
    if noaudit_frame(frames).is_some() {
        CapClass::Probe
    } else if ret == 0 {
        CapClass::Used
    } else {
        CapClass::Denied
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

    #[test]
    fn mmap_reserve_check_is_a_probe_granted_or_not() {
        assert_eq!(classify(0, MMAP), CapClass::Probe);
        assert_eq!(classify(-1, MMAP), CapClass::Probe);
        assert_eq!(noaudit_frame(MMAP), Some("cap_vm_enough_memory"));
    }

    #[test]
    fn audited_checks_are_used_or_denied() {
        assert_eq!(classify(0, CHOWN), CapClass::Used);
        assert_eq!(classify(-1, CHOWN), CapClass::Denied);
        assert_eq!(classify(0, &[]), CapClass::Used);
    }

    #[test]
    fn call_sites_skip_plumbing() {
        assert_eq!(call_site(&CHOWN[2..]), Some("chown_ok"));
        assert_eq!(call_site(&MMAP[2..]), Some("mmap_region"));
        assert_eq!(call_site(&["security_capable", "ns_capable"]), None);
        assert_eq!(call_site(&["security_capable", "do_jit.isra.0"]), Some("do_jit"));
    }

    #[test]
    fn compiler_suffixes_are_ignored() {
        assert_eq!(base_symbol("ns_capable_noaudit.isra.0"), "ns_capable_noaudit");
        assert_eq!(classify(0, &["cap_capable", "has_ns_capability_noaudit.constprop.0"]), CapClass::Probe);
        // A similar name is not a match.
        assert_eq!(classify(0, &["cap_capable", "ns_capable"]), CapClass::Used);
    }
}
