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

/// None at present: the fexit and kprobe modes' unseen `cap_vm_enough_memory` check, the
/// first failures listed here, is expected by the tests themselves now (docs/limitations.md).
pub const KNOWN: &[Known] = &[];

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
