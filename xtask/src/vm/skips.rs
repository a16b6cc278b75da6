//! Privileged tests that cannot run in the matrix's guests, each with the reason the table
//! shows. The guests are a kernel, busybox's init and the host's root read-only: no services run
//! and `/var/lib` cannot be written. Everything else runs there, runc containers included.

use super::binaries::TestBinary;

/// One test (or every test of a binary) that the guests skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skip {
    /// The test binary (the integration test's file name: `containers`, `daemon`, ...).
    pub binary: &'static str,
    /// The test's name; `None` skips every test of the binary.
    pub test: Option<&'static str>,
    pub reason: &'static str,
}

/// Skipped in every guest.
pub const GUEST_SKIPS: &[Skip] = &[
    Skip {
        binary: "engines",
        test: None,
        reason: "needs the Docker Engine and containerd daemons, which the minimal guest does not run",
    },
    Skip {
        binary: "daemon",
        test: Some("container_churn_leaks_no_memory_series_or_map_entries"),
        reason: "240 runc containers take about 5 minutes per guest under TCG, a third of the \
                 matrix's budget; the host's row runs it",
    },
    Skip {
        binary: "dashboards",
        test: None,
        reason: "needs a Prometheus server and the dashboard queries `cargo xtask test` writes; \
                 nothing in it depends on the kernel",
    },
    FLEET,
    Skip {
        binary: "workloads",
        test: None,
        reason: "needs the Docker Engine and containerd daemons, which the minimal guest does not run",
    },
];

/// The fleet test runs on the host against a guest node, in the fleet row ([`super::fleet`]).
pub const FLEET: Skip = Skip {
    binary: "fleet",
    test: None,
    reason: "runs in the fleet row: the host and a kernel-matrix guest as two nodes of one \
             Prometheus",
};

/// The reason given for tests that no `--test` filter selects.
pub const NOT_SELECTED: &str = "not selected by --test";

/// The tests of `binary` not to run, with the reasons: those of `skips`, and those no filter
/// selects (a filter selects the tests whose `binary::test` name contains it; no filter
/// selects all).
pub fn for_binary<'a>(
    binary: &'a TestBinary,
    skips: &[Skip],
    filters: &[String],
) -> Vec<(&'a str, &'static str)> {
    binary
        .tests
        .iter()
        .filter_map(|t| {
            let full = format!("{}::{t}", binary.name);
            let reason =
                if !filters.is_empty() && !filters.iter().any(|f| full.contains(f.as_str())) {
                    Some(NOT_SELECTED)
                } else {
                    reason(skips, &binary.name, t)
                };
            Some((t.as_str(), reason?))
        })
        .collect()
}

/// Skipped too in the pass with another OCI runtime than runc.
pub const OTHER_RUNTIME_SKIPS: &[Skip] = &[Skip {
    binary: "containers",
    test: Some("podman_container_is_attributed_with_exactly_its_granted_capabilities"),
    reason: "podman runs its container with runc whatever CAPMON_TEST_RUNTIME says: the runc \
             pass covers it",
}];

/// Why `binary`'s `test` is skipped in the guests, if it is.
pub fn reason(skips: &[Skip], binary: &str, test: &str) -> Option<&'static str> {
    skips
        .iter()
        .find(|s| s.binary == binary && s.test.is_none_or(|t| t == test))
        .map(|s| s.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_binaries_and_single_tests() {
        let skips = [
            Skip {
                binary: "engines",
                test: None,
                reason: "all",
            },
            Skip {
                binary: "containers",
                test: Some("podman_x"),
                reason: "one",
            },
        ];
        assert_eq!(reason(&skips, "engines", "anything"), Some("all"));
        assert_eq!(reason(&skips, "containers", "podman_x"), Some("one"));
        assert_eq!(reason(&skips, "containers", "podman_xy"), None);
        assert_eq!(reason(&skips, "privileged", "podman_x"), None);
    }

    #[test]
    fn filters_select_by_binary_and_test_name() {
        let bin = TestBinary {
            name: "containers".into(),
            path: "/x".into(),
            tests: vec!["ping_x".into(), "podman_x".into(), "mmap_y".into()],
        };
        let skips = [Skip {
            binary: "containers",
            test: Some("podman_x"),
            reason: "no podman",
        }];
        assert_eq!(for_binary(&bin, &skips, &[]), [("podman_x", "no podman")]);
        assert_eq!(
            for_binary(&bin, &skips, &["containers::p".to_owned()]),
            [("podman_x", "no podman"), ("mmap_y", NOT_SELECTED)]
        );
        assert_eq!(for_binary(&bin, &[], &["nothing".to_owned()]).len(), 3);
    }
}
