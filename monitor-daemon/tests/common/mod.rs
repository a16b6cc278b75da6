//! Helpers shared by the privileged tests: skips and observations the kernel matrix reads,
//! the probe mode and scale, and (in their own modules) runc containers ([`runc`]), a real
//! daemon and Prometheus ([`daemon`]), the engines and `capmon record`.

#![allow(dead_code)]

mod daemon;
pub mod engines;
/// Needs the test-support programs (`capmon-seccomp-exec`).
#[cfg(feature = "test-support")]
pub mod record;
mod runc;

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use std::{
    fs,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use capmon::kernel::reader::KernelReader;
use capmon_core::report::{self, RecordReport};
use serde_json::Value;

pub use capmon_core::seccomp::DOCKER_DEFAULT_CAPS;
pub use daemon::*;
pub use runc::*;

/// The line a test prints when it skips itself; `cargo xtask vm` reports such a test as
/// skipped, with the reason (xtask/src/vm/libtest.rs).
pub const SKIP_MARKER: &str = "capmon-test: skipped: ";

/// Skips the calling test, which returns right after: prints `reason` where the kernel
/// matrix's report finds it. For a prerequisite this machine lacks, never for a wrong result.
pub fn skip(reason: &str) {
    println!("{SKIP_MARKER}{reason}");
}

/// The prefix of an observation line: what the kernel matrix's support table shows per kernel
/// and mode comes from these (`xtask/src/vm/libtest.rs` reads them).
pub const OBSERVED_MARKER: &str = "capmon-test: observed: ";

/// Reports whether `what` was seen in this run, for the kernel matrix's support table.
pub fn observed(what: &str, seen: bool) {
    println!(
        "{OBSERVED_MARKER}{what}: {}",
        if seen { "seen" } else { "not seen" }
    );
}

/// The probe mode capmon must pick: the one `CAPMON_PROBE_MODE` forces (the kernel matrix runs
/// the tier once per mode in its guests), else `tp_btf`, the mode of 6.14+ kernels such as the
/// build machines'.
pub fn expected_probe_mode() -> String {
    match std::env::var("CAPMON_PROBE_MODE") {
        Ok(m) if !m.is_empty() && m != "auto" => m,
        _ => "tp_btf".to_owned(),
    }
}

/// How many programs the daemon whose `/healthz` answered `health` attaches in `mode`: the
/// probe table's programs of that mode but the optional ones it says it skipped (with why).
pub fn programs_in_mode(mode: &str, health: &Value) -> u64 {
    let mode = capmon::kernel::probe_table::ProbeMode::parse(mode).expect("a probe mode");
    let skipped: Vec<&str> = health["probes_skipped"]
        .as_array()
        .expect("probes_skipped in /healthz")
        .iter()
        .map(|s| s["program"].as_str().expect("program"))
        .collect();
    // Only optional programs may be left out, and each says why.
    for program in &skipped {
        let probe = mode
            .programs()
            .find(|p| p.program == *program)
            .unwrap_or_else(|| panic!("{program} skipped but not of mode {}", mode.name()));
        assert!(!probe.required, "required {program} skipped: {health}");
    }
    (mode.programs().count() - skipped.len()) as u64
}

/// How many of `n` repetitions a test makes: all of them, or the fraction that
/// `CAPMON_TEST_SCALE` (0 < f <= 1) gives, at least 8. The kernel matrix sets it for its qemu
/// TCG guests, where a container starts 20 to 50 times slower than on the host.
pub fn scaled(n: usize) -> usize {
    let f = std::env::var("CAPMON_TEST_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|f| *f > 0.0 && *f <= 1.0)
        .unwrap_or(1.0);
    ((n as f64 * f).round() as usize).max(8).min(n)
}

/// `d`, or `d` times `CAPMON_TEST_TIME_FACTOR` where the kernel matrix sets it: a bound on
/// how long something may take (a daemon's clean exit) that a qemu TCG guest, many times
/// slower than a real machine, needs stretched.
pub fn bound(d: Duration) -> Duration {
    let factor = std::env::var("CAPMON_TEST_TIME_FACTOR")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|f| *f >= 1)
        .unwrap_or(1);
    d * factor
}

/// The OCI runtime the container tests use: `runc`, or the one `CAPMON_TEST_RUNTIME` names
/// (the kernel matrix runs the container tests with `crun` too: crun refuses the build
/// machines' hybrid cgroups, not the guests' pure cgroup2).
pub fn runtime() -> String {
    std::env::var("CAPMON_TEST_RUNTIME")
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "runc".to_owned())
}

pub fn require_root_and_runc() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root: run `cargo xtask test` as root"
    );
    let rt = runtime();
    assert!(
        Command::new(&rt)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "{rt} is not installed: `cargo xtask setup` installs it (Debian package {rt})"
    );
}

/// Every capability this machine can grant (its bounding set: here, all but a few such as
/// CAP_SYS_RESOURCE, which the VM withholds).
pub fn all_caps() -> Vec<String> {
    let bounding = caps::read(None, caps::CapSet::Bounding).expect("read the bounding set");
    assert!(
        bounding.contains(&caps::Capability::CAP_SYS_ADMIN),
        "this test needs CAP_SYS_ADMIN in the bounding set"
    );
    let mut caps: Vec<String> = bounding.into_iter().map(|c| c.to_string()).collect();
    caps.sort();
    caps
}

pub fn docker_caps() -> Vec<String> {
    DOCKER_DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
}

/// Checks AppArmor rules with the real parser (Debian package apparmor; parses offline, no
/// AppArmor needed in the kernel): `rules` wrapped in a profile must compile.
pub fn assert_apparmor_parses(name: &str, rules: &str) {
    let dir = std::env::temp_dir().join(format!("capmon-aa-{}", container_id()));
    fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("profile");
    fs::write(&path, format!("profile capmon-{name} {{\n{rules}}}\n")).expect("write profile");
    let out = Command::new("apparmor_parser")
        .args(["--skip-kernel-load", "--skip-cache", "--skip-read-cache"])
        .arg(&path)
        .output()
        .expect("apparmor_parser is not installed: `cargo xtask setup` installs it (Debian package apparmor)");
    assert!(
        out.status.success(),
        "apparmor_parser rejects the rules for {name}:\n{rules}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = fs::remove_dir_all(&dir);
}

/// Whether capability checks are seen through the `cap_capable` tracepoint, which sees the
/// checks of `cap_capable` copies that a kernel build inlined into callers (the fexit and
/// kprobe modes do not: `cap_vm_enough_memory`'s no-audit `CAP_SYS_ADMIN` probe stays unseen
/// there, as docs/limitations.md says). Follows `CAPMON_PROBE_MODE` as capmon does.
pub fn tracepoint_mode() -> bool {
    let forced = std::env::var("CAPMON_PROBE_MODE").unwrap_or_default();
    let has = aya::Btf::from_sys_fs()
        .is_ok_and(|b| capmon::kernel::probe_table::has_tracepoint(&b, "cap_capable"));
    has && matches!(forced.as_str(), "" | "auto" | "tp_btf")
}

/// The strings of a JSON array (none for anything else).
pub fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The resident set of process `pid` in KiB (`VmRSS` of `/proc/PID/status`; 0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
