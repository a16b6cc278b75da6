//! What a test binary killed at its bound leaves behind, cleared before the next one runs: the
//! tests' containers still known to the OCI runtime, and processes still in the tests' cgroups.
//! One hung test then costs its own binary, not the binaries after it (a leftover container
//! shows up in every `/v1/containers` the daemon tests read).

use std::{fs, path::Path, process::Command};

/// The cgroups the privileged tests create containers in (`/capmon-test/...`, and
/// `/kubepods/...` for containerd's pods), under each hierarchy's root.
pub const TEST_CGROUPS: &[&str] = &["capmon-test", "kubepods"];
/// The tests name their bundles (and so their containers) `capmon-bundle-<id>`.
pub const CONTAINER_PREFIX: &str = "capmon-bundle-";
/// The OCI runtimes the tests use.
const RUNTIMES: &[&str] = &["runc", "crun"];

/// The names in `list -q` output that are the tests' containers.
pub fn test_containers(list: &str) -> Vec<&str> {
    list.lines()
        .map(str::trim)
        .filter(|n| n.starts_with(CONTAINER_PREFIX))
        .collect()
}

/// Every cgroup directory at or below `root`, deepest first (the order `rmdir` needs).
fn cgroups_below(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(root) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(cgroups_below(&e.path()));
            }
        }
    }
    if root.is_dir() {
        out.push(root.to_owned());
    }
    out
}

/// Deletes the tests' containers, kills every process in the tests' cgroups of every
/// hierarchy under `cgroup_root` and removes the cgroups that are then empty. Returns what it
/// found, one line each, for the log; empty when nothing was left.
pub fn clear(cgroup_root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for runtime in RUNTIMES {
        let Ok(out) = Command::new(runtime).args(["list", "-q"]).output() else {
            continue;
        };
        for name in test_containers(&String::from_utf8_lossy(&out.stdout)) {
            let _ = Command::new(runtime)
                .args(["delete", "--force", name])
                .output();
            found.push(format!("{runtime} container {name}"));
        }
    }
    // The v2 root itself (guests) or each v1 hierarchy and the unified one (hybrid hosts).
    let mut hierarchies = vec![cgroup_root.to_owned()];
    if let Ok(entries) = fs::read_dir(cgroup_root) {
        hierarchies.extend(entries.flatten().map(|e| e.path()));
    }
    let cgroups: Vec<_> = hierarchies
        .iter()
        .flat_map(|h| {
            TEST_CGROUPS
                .iter()
                .flat_map(|top| cgroups_below(&h.join(top)))
        })
        .collect();
    for cg in &cgroups {
        found.extend(kill_all_in(cg));
    }
    if !found.is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for cg in &cgroups {
        let _ = fs::remove_dir(cg);
    }
    found
}

/// SIGKILL for each process in the cgroup `cg` (`cgroup.kill` where the kernel has it, each
/// pid of `cgroup.procs` too for v1): one line per process.
fn kill_all_in(cg: &Path) -> Vec<String> {
    let procs = fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
    let pids: Vec<i32> = procs
        .lines()
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    if pids.is_empty() {
        return Vec::new();
    }
    let _ = fs::write(cg.join("cgroup.kill"), "1");
    pids.iter()
        .map(|&pid| {
            let cmd = fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            format!("process {pid} ({}) in {}", cmd.trim(), cg.display())
        })
        .collect()
}

/// The same for a guest, in sh (busybox), after a binary that was killed (status 137): its
/// cgroup2-only hierarchy always has `cgroup.kill` (5.14+).
pub fn guest_sh() -> String {
    let mut s = String::from("for r in runc crun; do for c in $($r list -q 2>/dev/null | grep '^");
    s.push_str(CONTAINER_PREFIX);
    s.push_str("'); do $r delete --force $c; done; done; for f in $(find");
    for top in TEST_CGROUPS {
        s.push_str(&format!(" /sys/fs/cgroup/{top}"));
    }
    s.push_str(" -name cgroup.kill 2>/dev/null); do echo 1 > $f; done");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tests_containers_are_deleted() {
        let list = "capmon-bundle-0123abcd\nbuildkit\n  capmon-bundle-ff\nmy-capmon-bundle-1\n";
        assert_eq!(
            test_containers(list),
            ["capmon-bundle-0123abcd", "capmon-bundle-ff"]
        );
    }

    #[test]
    fn cgroups_are_listed_deepest_first_and_a_missing_root_is_nothing() {
        let dir = std::env::temp_dir().join(format!("capmon-leftovers-{}", std::process::id()));
        fs::create_dir_all(dir.join("a/b")).expect("mkdir");
        let found = cgroups_below(&dir);
        assert_eq!(found, [dir.join("a/b"), dir.join("a"), dir.clone()]);
        fs::remove_dir_all(&dir).expect("rm");
        assert!(cgroups_below(&dir).is_empty());
    }

    #[test]
    fn the_guest_clears_both_runtimes_and_both_cgroup_trees() {
        let s = guest_sh();
        assert!(s.contains("for r in runc crun;"), "{s}");
        assert!(s.contains("grep '^capmon-bundle-'"), "{s}");
        assert!(
            s.contains("find /sys/fs/cgroup/capmon-test /sys/fs/cgroup/kubepods -name cgroup.kill"),
            "{s}"
        );
    }
}
