//! Failures already understood and tracked elsewhere. They still count as failures (the
//! matrix exits non-zero); the report names the reason beside each, so that a new failure
//! stands out from the known ones.

/// A test known to fail in the guests, on some kernels and modes.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    pub binary: &'static str,
    pub test: &'static str,
    /// Kernel names (`6.1`, ...); empty: every guest kernel.
    pub kernels: &'static [&'static str],
    /// Probe modes; empty: every mode.
    pub modes: &'static [&'static str],
    pub reason: &'static str,
}

/// Debian's 6.1 and 6.12 builds inline `cap_capable` into `cap_vm_enough_memory`: the
/// no-audit `CAP_SYS_ADMIN` check of every mmap/exec never reaches fexit or kprobe.
const INLINED: &str = "issue 13 part 3: cap_capable is inlined into cap_vm_enough_memory in \
                       Debian's builds, so fexit/kprobe never see the no-audit CAP_SYS_ADMIN \
                       check of mmap/exec (expected as `probe`)";

pub const KNOWN: &[Known] = &[
    Known {
        binary: "privileged",
        test: "chown_uses_cap_chown_and_fchownat",
        kernels: &[],
        modes: &[],
        reason: INLINED,
    },
    Known {
        binary: "containers",
        test: "mmap_exec_without_sys_admin_is_a_probe_never_denied",
        kernels: &[],
        modes: &[],
        reason: INLINED,
    },
    Known {
        binary: "containers",
        test: "mmap_exec_with_all_capabilities_does_not_use_sys_admin",
        kernels: &[],
        modes: &[],
        reason: INLINED,
    },
    // In kprobe mode it fails earlier, for another reason: not listed.
    Known {
        binary: "daemon",
        test: "daemon_works_with_exactly_the_deployment_capabilities_and_fails_clearly_without_one",
        kernels: &[],
        modes: &["fexit"],
        reason: INLINED,
    },
];

/// Why `binary::test` is known to fail on `kernel` in `mode`, if it is.
pub fn reason(
    known: &[Known],
    kernel: &str,
    mode: &str,
    binary: &str,
    test: &str,
) -> Option<&'static str> {
    known
        .iter()
        .find(|k| {
            k.binary == binary
                && k.test == test
                && (k.kernels.is_empty() || k.kernels.contains(&kernel))
                && (k.modes.is_empty() || k.modes.contains(&mode))
        })
        .map(|k| k.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_and_modes_narrow_a_known_failure() {
        let known = [Known {
            binary: "daemon",
            test: "t",
            kernels: &["6.1"],
            modes: &["fexit"],
            reason: "r",
        }];
        assert_eq!(reason(&known, "6.1", "fexit", "daemon", "t"), Some("r"));
        assert_eq!(reason(&known, "6.1", "kprobe", "daemon", "t"), None);
        assert_eq!(reason(&known, "6.12", "fexit", "daemon", "t"), None);
        assert_eq!(reason(&known, "6.1", "fexit", "daemon", "u"), None);
    }
}
