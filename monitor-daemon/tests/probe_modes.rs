//! Privileged tier, the probe modes: what every mode must count exactly (a capability-check
//! storm, syscall state across context switches), the same recording in every mode that
//! attaches, the low-mmap check the fexit and kprobe hooks see through `cap_mmap_addr`, and the
//! kprobe programs passing this kernel's verifier. `#[ignore]`d: `cargo xtask test` runs them
//! as root, on the host and in the kernel matrix's guests.

use std::{fs, process::Command};

use serde_json::Value;

mod common;

use common::record::*;

const STRESS: &str = env!("CARGO_BIN_EXE_capmon-stress");

/// Sum of the counts of one capability's checks in one class.
fn count_of(r: &Value, cap: &str, class: &str) -> u64 {
    r["capabilities"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["capability"] == cap && c["class"] == class)
        .map(|c| c["count"].as_u64().expect("count"))
        .sum()
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn capability_check_storm_is_counted_exactly() {
    require_root();
    // Two threads, ten million granted CAP_SYS_PACCT checks each (a tenth of that under the
    // matrix's qemu TCG: `common::scaled`).
    let per_thread = common::scaled(10_000_000);
    let (r, out) = record(&[], &[STRESS, "acct", &per_thread.to_string(), "2"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        count_of(&r, "CAP_SYS_PACCT", "used"),
        2 * per_thread as u64,
        "{r:#}"
    );
    assert_eq!(strings(&r["capabilities"]["used"]), vec!["CAP_SYS_PACCT"]);
    // Every first sighting arrived: each check site carries its evidence.
    for c in r["capabilities"]["checks"].as_array().expect("checks") {
        assert_ne!(
            c["comm"], "",
            "a check site without its first-sighting event: {c}"
        );
    }
    // Loss counters are host-wide (other tests run in parallel); the ring buffer, which carries
    // the first sightings, did not overflow.
    assert_eq!(r["lost"]["ringbuf_full"], 0, "{:#}", r["lost"]);

    // Two threads that dropped to uid 65534: every check refused, every acct() fails EPERM.
    let (r, out) = record(&[], &[STRESS, "acct", "1000000", "2", "--refused"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(count_of(&r, "CAP_SYS_PACCT", "denied"), 2_000_000, "{r:#}");
    assert_eq!(count_of(&r, "CAP_SYS_PACCT", "used"), 0);
    assert_eq!(strings(&r["capabilities"]["denied"]), vec!["CAP_SYS_PACCT"]);
    assert_eq!(r["lost"]["ringbuf_full"], 0, "{:#}", r["lost"]);
}

/// The syscall state of a task that sleeps inside a syscall moves from the per-CPU slot to the
/// task's storage and back: a blocking call that fails is not a seccomp denial, and a refused
/// syscall that is the first after each switch is.
#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn syscall_state_survives_context_switches() {
    require_root();
    let dir = scratch("switch");
    let profile = dir.join("deny-getppid.json");
    write_profile(
        &profile,
        &serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        }),
    );
    let (r, out) = record(
        &[],
        &[
            SECCOMP_EXEC,
            profile.to_str().expect("utf8"),
            "--",
            STRESS,
            "switch",
            "300",
        ],
    );
    assert!(out.status.success(), "every call as expected: {out:?}");
    let denied = r["syscalls"]["denied"].as_array().expect("denied");
    assert_eq!(
        denied.len(),
        1,
        "only getppid, never the futex timeouts: {denied:?}"
    );
    assert_eq!(denied[0]["name"], "getppid");
    assert_eq!(denied[0]["errno"], "EPERM");
    assert_eq!(denied[0]["count"], 300, "{denied:?}");
    assert!(strings(&r["syscalls"]["used"]).contains(&"futex".to_owned()));
    assert!(!strings(&r["syscalls"]["used"]).contains(&"getppid".to_owned()));
}

/// Each probe mode this kernel attaches (forced with `CAPMON_PROBE_MODE`) records the same
/// chown exactly; a mode it cannot attach is refused with an error naming its hook (or, for
/// fexit where the kernel preempts it, why not), and no other mode is tried in its place.
#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn every_probe_mode_that_attaches_records_the_same_chown() {
    require_root();
    let dir = scratch("modes");
    let file = dir.join("f");
    fs::write(&file, "x").expect("write");
    let target = file.to_str().expect("utf8");
    let mut attached = Vec::new();
    for mode in ["tp_btf", "fexit", "kprobe"] {
        let out = Command::new(CAPMON)
            .env("CAPMON_PROBE_MODE", mode)
            .args(["record", "--json", "--", "chown", "1:1", target])
            .output()
            .expect("run capmon");
        if !out.status.success() {
            let err = stderr(&out);
            // A hook that cannot attach is named; fexit on a kernel that preempts it is
            // refused before anything attaches (`fexit_is_refused_where_the_kernel_preempts_it`).
            assert!(
                err.contains(&format!("{mode}/cap_capable"))
                    || (mode == "fexit" && err.contains("probe mode fexit is refused")),
                "{mode}: the refusal names the hook: {err}"
            );
            eprintln!("{mode}: cannot attach on this kernel: {}", err.trim());
            continue;
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let r: Value =
            serde_json::from_str(stdout.lines().last().expect("a report")).expect("JSON report");
        assert_eq!(strings(&r["capabilities"]["used"]), ["CAP_CHOWN"], "{mode}");
        assert!(strings(&r["capabilities"]["denied"]).is_empty(), "{mode}");
        assert!(
            strings(&r["syscalls"]["used"]).contains(&"fchownat".to_owned()),
            "{mode}"
        );
        // chown_ok for the uid, chgrp_ok for the gid (fs/attr.c).
        assert_eq!(count_of(&r, "CAP_CHOWN", "used"), 2, "{mode}");
        attached.push(mode);
    }
    assert!(!attached.is_empty(), "no probe mode attaches here");
    eprintln!("probe modes attached on this kernel: {attached:?}");
}

const MMAP_MIN_ADDR: &str = "/proc/sys/vm/mmap_min_addr";

/// `vm.mmap_min_addr` raised for a test (Debian's default is 65536, some hosts' 4096, under
/// which an mmap at 4096 checks nothing), restored when dropped. Raising it only makes the
/// host stricter meanwhile.
struct MmapMinAddr(Option<String>);

impl MmapMinAddr {
    fn at_least(min: u64) -> MmapMinAddr {
        let old = fs::read_to_string(MMAP_MIN_ADDR).unwrap_or_default();
        let lower = old.trim().parse::<u64>().is_ok_and(|v| v < min);
        MmapMinAddr((lower && fs::write(MMAP_MIN_ADDR, min.to_string()).is_ok()).then_some(old))
    }
}

impl Drop for MmapMinAddr {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = fs::write(MMAP_MIN_ADDR, old.trim());
        }
    }
}

/// An mmap below `vm.mmap_min_addr` checks `CAP_SYS_RAWIO` in `cap_mmap_addr`; kernel builds
/// that inline `cap_capable` there (Debian's 6.1 and 6.12) hide it from the fexit and kprobe
/// hooks on `cap_capable`, so `cap_mmap_addr` is hooked too. Granted as root, denied without
/// it, counted once, in whatever mode this kernel gets (`CAPMON_PROBE_MODE` picks one).
#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn a_low_mmap_checks_cap_sys_rawio_once_in_every_mode() {
    require_root();
    let _min = MmapMinAddr::at_least(65536);
    let min: u64 = fs::read_to_string(MMAP_MIN_ADDR)
        .expect("read vm.mmap_min_addr")
        .trim()
        .parse()
        .expect("a number");
    if min <= 4096 {
        common::skip(&format!(
            "vm.mmap_min_addr is {min} and cannot be raised, so an mmap at 4096 checks nothing"
        ));
        return;
    }
    let (r, out) = record(&[], &[STRESS, "mmap-low"]);
    assert!(out.status.success(), "mapped at 4096: {out:?}");
    assert_eq!(count_of(&r, "CAP_SYS_RAWIO", "used"), 1, "{r:#}");
    assert!(strings(&r["capabilities"]["used"]).contains(&"CAP_SYS_RAWIO".to_owned()));
    let (r, out) = record(&[], &[STRESS, "mmap-low", "--refused"]);
    assert!(out.status.success(), "refused with EPERM: {out:?}");
    assert_eq!(count_of(&r, "CAP_SYS_RAWIO", "denied"), 1, "{r:#}");
    assert_eq!(
        strings(&r["capabilities"]["denied"]),
        ["CAP_SYS_RAWIO"],
        "{r:#}"
    );
    common::observed("low mmap CAP_SYS_RAWIO (cap_mmap_addr)", true);
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn kprobe_mode_programs_pass_the_verifier() {
    require_root();
    use capmon::kernel::{loader::Probes, probe_table::ProbeMode};
    // The kprobe path (kernels < 6.14) is loaded for real: the verifier of this kernel accepts
    // it. Attaching needs CONFIG_KPROBES, which this machine may lack; then the error says so.
    let mut probes = Probes::load_mode(ProbeMode::Kprobe).expect("kprobe-mode programs load");
    assert_eq!(probes.mode(), ProbeMode::Kprobe);
    match (
        capmon::kernel::probe_table::kprobes_available(),
        probes.attach_all(),
    ) {
        (true, Ok(())) => {
            // Kprobes work here: the fallback really observes a check.
            probes.detach_all().expect("detach");
        }
        (true, Err(e)) => panic!("kprobes are available but attaching failed: {e}"),
        (false, Err(e)) => {
            let msg = e.to_string();
            assert!(msg.contains("kprobe/cap_capable"), "{msg}");
            eprintln!(
                "kprobes unavailable here (CONFIG_KPROBES unset): attach refused as expected: {msg}"
            );
        }
        (false, Ok(())) => {
            panic!("attached kprobes although /sys/bus/event_source/devices/kprobe is absent")
        }
    }
}

/// Where the kernel preempts fexit programs (`PREEMPT_RT`: the kernel matrix's 6.12-rt guest),
/// the fexit mode asked for is refused with a clear error naming the modes to use, and left to
/// itself capmon uses one of them.
#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn fexit_is_refused_where_the_kernel_preempts_it() {
    require_root();
    use capmon::kernel::preemption::Preemption;
    let model = Preemption::of_running_kernel();
    if !model.preempts_fexit() {
        common::skip(&format!(
            "this kernel's preemption ({}) does not preempt fexit programs; the matrix's \
             6.12-rt guest runs this",
            model.name()
        ));
        return;
    }
    let out = Command::new(CAPMON)
        .args(["record", "--", "/bin/true"])
        .env("CAPMON_PROBE_MODE", "fexit")
        .output()
        .expect("capmon record");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("probe mode fexit is refused on this kernel")
            && err.contains(model.name())
            && err.contains("else kprobe"),
        "{err}"
    );
    let out = Command::new(CAPMON)
        .arg("check")
        .env_remove("CAPMON_PROBE_MODE")
        .output()
        .expect("capmon check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("probe mode: kprobe") || text.contains("probe mode: tp_btf"),
        "{text}"
    );
    assert!(text.contains("refuses fexit"), "{text}");
    common::observed("fexit refused on a kernel that preempts it", true);
}
