//! Privileged tier: the real kernel, the real probes, real seccomp. Each test is `#[ignore]`d
//! so that a plain `cargo test` stays unprivileged; `cargo xtask test` runs them as root.

use std::{
    fs,
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::Duration,
};

use serde_json::Value;

mod common;

const CAPMON: &str = env!("CARGO_BIN_EXE_capmon");
const SECCOMP_EXEC: &str = env!("CARGO_BIN_EXE_capmon-seccomp-exec");

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test loads eBPF programs and needs root: run `cargo xtask test` as root"
    );
}

/// A fresh directory under the target dir, removed by nobody: kept for post-mortems.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "capmon-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}

/// Runs `capmon record --json [extra...] -- cmd...`; returns the report (last stdout line),
/// and the whole output.
fn record(extra: &[&str], cmd: &[&str]) -> (Value, Output) {
    let out = Command::new(CAPMON)
        .arg("record")
        .arg("--json")
        .args(extra)
        .arg("--")
        .args(cmd)
        .output()
        .unwrap_or_else(|e| panic!("running capmon: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "capmon printed nothing; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let report: Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "last line is not JSON ({e}): {last}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, out)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_owned()
        })
        .collect()
}

fn write_profile(path: &Path, json: &Value) {
    fs::write(path, serde_json::to_string_pretty(json).expect("json")).expect("write profile");
}

/// A profile that refuses the chmod family with EPERM and allows everything else.
fn deny_chmod_profile(dir: &Path) -> PathBuf {
    let path = dir.join("deny-chmod.json");
    write_profile(
        &path,
        &serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{
                "names": ["chmod", "fchmod", "fchmodat", "fchmodat2"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 1
            }]
        }),
    );
    path
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn chown_uses_cap_chown_and_fchownat() {
    require_root();
    let dir = scratch("chown");
    let file = dir.join("f");
    fs::write(&file, "x").expect("write");
    let (r, out) = record(&[], &["chown", "nobody", file.to_str().expect("utf8")]);
    assert!(out.status.success(), "capmon: {out:?}");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(
        strings(&r["capabilities"]["used"]),
        vec!["CAP_CHOWN"],
        "{r:#}"
    );
    assert_eq!(
        strings(&r["capabilities"]["denied"]),
        Vec::<String>::new(),
        "{r:#}"
    );
    let used = strings(&r["syscalls"]["used"]);
    assert!(used.contains(&"fchownat".to_owned()), "{used:?}");
    assert!(used.contains(&"execve".to_owned()), "{used:?}");
    assert_eq!(r["syscalls"]["denied"], serde_json::json!([]));
    // The mmap/exec CAP_SYS_ADMIN noise is a no-audit probe, not a use (unseen where a
    // function hook misses cap_vm_enough_memory's inlined check).
    let admin_probe = strings(&r["capabilities"]["probe"]).contains(&"CAP_SYS_ADMIN".to_owned());
    assert!(admin_probe || !common::tracepoint_mode(), "{r:#}");
    common::observed(
        "mmap/exec no-audit CAP_SYS_ADMIN (cap_vm_enough_memory)",
        admin_probe,
    );
    assert!(!strings(&r["capabilities"]["used"]).contains(&"CAP_SYS_ADMIN".to_owned()));
    // The evidence names the process and the syscall.
    let check = r["capabilities"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["capability"] == "CAP_CHOWN")
        .expect("CAP_CHOWN check");
    assert_eq!(check["comm"], "chown");
    assert_eq!(check["syscall"], "fchownat");
    assert_eq!(check["class"], "used");
    assert_eq!(
        fs::metadata(&file).expect("stat").uid(),
        65534,
        "chown really happened"
    );
    // Loss counters are host-wide; the ring buffer did not overflow.
    assert_eq!(r["lost"]["ringbuf_full"], 0, "{r:#}");
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn seccomp_denied_chmod_is_reported_with_errno() {
    require_root();
    let dir = scratch("deny");
    let profile = deny_chmod_profile(&dir);
    let file = dir.join("f");
    fs::write(&file, "x").expect("write");
    let before = fs::metadata(&file).expect("stat").mode();
    let (r, out) = record(
        &[],
        &[
            SECCOMP_EXEC,
            profile.to_str().expect("utf8"),
            "--",
            "chmod",
            "600",
            file.to_str().expect("utf8"),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "chmod must fail and capmon must pass its code on: {out:?}"
    );
    assert_eq!(r["exit_code"], 1);
    let denied = r["syscalls"]["denied"].as_array().expect("denied");
    assert_eq!(denied.len(), 1, "{denied:?}");
    let d = &denied[0];
    assert!(
        ["chmod", "fchmodat", "fchmodat2"].contains(&d["name"].as_str().expect("name")),
        "{d}"
    );
    assert_eq!(d["errno"], "EPERM");
    assert!(d["count"].as_u64().expect("count") >= 1, "{d}");
    assert_eq!(d["comm"], "chmod");
    assert_eq!(
        fs::metadata(&file).expect("stat").mode(),
        before,
        "mode must be unchanged"
    );
    // A denied syscall was never entered, so it is not "used".
    assert!(
        !strings(&r["syscalls"]["used"]).contains(&d["name"].as_str().expect("name").to_owned())
    );
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn recorded_profile_lets_the_command_run_and_one_syscall_less_breaks_it() {
    require_root();
    let dir = scratch("profile");
    let input = dir.join("input.txt");
    fs::write(&input, "hello from capmon\n").expect("write");
    let outdir = dir.join("out");
    let (r, out) = record(
        &["--output-dir", outdir.to_str().expect("utf8")],
        &["cat", input.to_str().expect("utf8")],
    );
    assert!(out.status.success(), "{out:?}");
    let recorded_stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        recorded_stdout.starts_with("hello from capmon\n"),
        "{recorded_stdout}"
    );

    let profile_path = outdir.join("seccomp.json");
    let profile: Value =
        serde_json::from_str(&fs::read_to_string(&profile_path).expect("seccomp.json"))
            .expect("json");
    assert_eq!(profile, r["seccomp_profile"], "file and JSON output agree");
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(
        profile["architectures"],
        serde_json::json!([capmon_core::names::Arch::host().scmp_name()])
    );
    let rules = profile["syscalls"].as_array().expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["action"], "SCMP_ACT_ALLOW");
    let names = strings(&rules[0]["names"]);
    // What cat used, plus what runc needs between installing a filter and the exec.
    let used = strings(&r["syscalls"]["used"]);
    assert!(used.iter().all(|u| names.contains(u)), "{names:?}");
    assert!(
        names
            .iter()
            .filter(|n| !used.contains(n))
            .all(|n| capmon_core::recommend::RUNC_AFTER_FILTER.contains(&n.as_str())),
        "{names:?}"
    );
    assert!(names.contains(&"openat".to_owned()), "{names:?}");
    let report_file: Value =
        serde_json::from_str(&fs::read_to_string(outdir.join("report.json")).expect("report.json"))
            .expect("json");
    assert_eq!(report_file, r);

    // The profile, enforced by real seccomp, lets the same command run with the same output.
    let run = |profile: &Path| {
        Command::new(SECCOMP_EXEC)
            .arg(profile)
            .args(["--", "cat", input.to_str().expect("utf8")])
            .output()
            .expect("run under seccomp")
    };
    let ok = run(&profile_path);
    if !ok.status.success() {
        // Show what the filter refused.
        let (why, _) = record(
            &[],
            &[
                SECCOMP_EXEC,
                profile_path.to_str().expect("utf8"),
                "--",
                "cat",
                input.to_str().expect("utf8"),
            ],
        );
        panic!(
            "the recorded profile broke the command: {ok:?}\nrecorded: {r:#}\nunder the profile: {why:#}"
        );
    }
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "hello from capmon\n");

    // Without `openat`, cat cannot open its input.
    let mut without = profile.clone();
    let names_without: Vec<String> = names.iter().filter(|n| *n != "openat").cloned().collect();
    without["syscalls"][0]["names"] = serde_json::json!(names_without);
    let without_path = dir.join("without-openat.json");
    write_profile(&without_path, &without);
    let broken = run(&without_path);
    assert!(
        !broken.status.success(),
        "must fail without openat: {broken:?}"
    );
    assert_eq!(broken.stdout, b"");
    // (The dynamic loader already fails to open libc and exits 127; its message, written with
    // writev, is refused too.)
    assert_ne!(broken.status.code(), Some(0));
}

/// A shell loop doing chown and seccomp-denied chmod until killed.
fn noise(dir: &Path, profile: &Path) -> Child {
    let file = dir.join("noise");
    fs::write(&file, "x").expect("write");
    let script = format!(
        "while :; do chown nobody {f}; chown root {f}; {exec} {p} -- chmod 600 {f} 2>/dev/null; done",
        f = file.display(),
        exec = SECCOMP_EXEC,
        p = profile.display()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Its own process group, so that the whole loop can be killed.
    cmd.process_group(0);
    cmd.spawn().expect("spawn noise")
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn nothing_from_other_cgroups_leaks_into_a_recording() {
    require_root();
    let dir = scratch("leak");
    let profile = deny_chmod_profile(&dir);
    // Noise outside any recording, in this test's own cgroup.
    let mut outside = noise(&dir, &profile);
    // And noise inside a second, concurrent recording: it must see its own activity.
    let dir2 = dir.clone();
    let profile2 = profile.clone();
    let other = thread::spawn(move || {
        let script = format!(
            "for i in 1 2 3 4 5 6 7 8 9 10; do chown nobody {f}; chown root {f}; {exec} {p} -- chmod 600 {f} 2>/dev/null; sleep 0.1; done",
            f = dir2.join("noise").display(),
            exec = SECCOMP_EXEC,
            p = profile2.display()
        );
        record(&[], &["sh", "-c", &script])
    });
    thread::sleep(Duration::from_millis(200));
    let (quiet, out) = record(&[], &["sleep", "1"]);
    let (busy, _) = other.join().expect("other recording");
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(outside.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = outside.wait();
    assert!(out.status.success(), "{out:?}");

    // The quiet recording saw only `sleep`.
    assert_eq!(
        strings(&quiet["capabilities"]["used"]),
        Vec::<String>::new(),
        "{quiet:#}"
    );
    assert_eq!(
        strings(&quiet["capabilities"]["denied"]),
        Vec::<String>::new(),
        "{quiet:#}"
    );
    assert_eq!(
        quiet["syscalls"]["denied"],
        serde_json::json!([]),
        "{quiet:#}"
    );
    let used = strings(&quiet["syscalls"]["used"]);
    for foreign in ["fchownat", "seccomp", "wait4", "clone", "fchmodat", "prctl"] {
        assert!(
            !used.contains(&foreign.to_owned()),
            "{foreign} leaked into the recording: {used:?}"
        );
    }
    assert!(used.contains(&"clock_nanosleep".to_owned()), "{used:?}");
    for check in quiet["capabilities"]["checks"].as_array().expect("checks") {
        // `capmon` is the recording's own child before its execve of sleep.
        assert!(
            check["comm"] == "sleep" || check["comm"] == "capmon",
            "{check}"
        );
    }

    // The concurrent recording saw its own activity, proving the noise was real.
    assert_eq!(
        strings(&busy["capabilities"]["used"]),
        vec!["CAP_CHOWN"],
        "{busy:#}"
    );
    let denied = busy["syscalls"]["denied"].as_array().expect("denied");
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["count"], 10, "{denied:?}");
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn exit_codes_are_passed_on() {
    require_root();
    let (r, out) = record(&[], &["sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(r["exit_code"], 7);
    let (r, out) = record(&[], &["sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + 15));
    assert_eq!(r["signal"], 15);
}

fn capmon(args: &[&str]) -> Output {
    Command::new(CAPMON)
        .args(args)
        .output()
        .expect("run capmon")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn unknown_command_exits_127_with_a_clear_error() {
    require_root();
    let out = capmon(&["record", "--", "/nonexistent/capmon-no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("capmon: error: cannot start `/nonexistent/capmon-no-such-command`: No such file or directory"), "{err}");
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn unwritable_output_dir_is_refused_before_running_anything() {
    require_root();
    let dir = scratch("outdir");
    let marker = dir.join("ran");
    let out = capmon(&[
        "record",
        "--output-dir",
        "/proc/capmon-cannot-be-here",
        "--",
        "touch",
        marker.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.starts_with(
            "capmon: error: output directory /proc/capmon-cannot-be-here is not writable"
        ),
        "{err}"
    );
    assert!(!marker.exists(), "the command must not run");
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn not_root_is_refused_clearly() {
    require_root();
    let out = Command::new(CAPMON)
        .args(["record", "--", "true"])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("must run as root"), "{err}");
    let check = Command::new(CAPMON)
        .arg("check")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run");
    assert_eq!(check.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("[FAIL] privileges"),
        "{check:?}"
    );
}

/// Runs `capmon ARGS` in a private mount namespace after `setup` (a shell snippet) changed it.
fn in_mount_ns(setup: &str, args: &str) -> Output {
    Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &format!("{setup} && exec {CAPMON} {args}"),
        ])
        .output()
        .expect("unshare")
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn no_btf_and_no_cgroup2_are_clear_errors() {
    require_root();
    let out = in_mount_ns("mount -t tmpfs none /sys/kernel/btf", "record -- true");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("exposes no BTF"), "{out:?}");

    let mount = capmon::containers::cgroup::find_cgroup2_mount().expect("cgroup2 on the host");
    let out = in_mount_ns(&format!("umount -l {}", mount.display()), "record -- true");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("no cgroup2 file system is mounted"),
        "{out:?}"
    );

    let check = in_mount_ns("mount -t tmpfs none /sys/kernel/btf", "check");
    assert_eq!(check.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("[FAIL] BTF"),
        "{check:?}"
    );
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn check_passes_on_this_machine() {
    require_root();
    let out = capmon(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let mode = common::expected_probe_mode();
    assert!(text.contains(&format!("probe mode: {mode} ")), "{text}");
    assert!(text.contains("[ok  ] load and attach"), "{text}");
    assert!(text.contains("result: capmon can run here"), "{text}");
}

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
    // Two threads, ten million granted CAP_SYS_PACCT checks each (a quarter of that under the
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
/// chown exactly; a mode it cannot attach is refused with an error naming its hook, and no
/// other mode is tried in its place.
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
            assert!(
                err.contains(&format!("{mode}/cap_capable")),
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

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn recommendation_files_formats_and_replay_from_the_command_line() {
    require_root();
    let dir = scratch("recommend");
    let file = dir.join("f");
    fs::write(&file, "x").expect("write");
    let outdir = dir.join("out");
    let target = file.to_str().expect("utf8");
    let (r, out) = record(
        &[
            "--output-dir",
            outdir.to_str().expect("utf8"),
            "--name",
            "chowner",
        ],
        &["chown", "nobody", target],
    );
    assert!(out.status.success(), "{out:?}");
    // The command ran as root with every capability of capmon's bounding set: all but
    // CAP_CHOWN are unused.
    assert_eq!(strings(&r["analysis"]["recommended"]), vec!["CAP_CHOWN"]);
    let unused = strings(&r["analysis"]["unused"]);
    assert!(unused.contains(&"CAP_SYS_ADMIN".to_owned()), "{unused:?}");
    assert!(!unused.contains(&"CAP_CHOWN".to_owned()), "{unused:?}");
    let warnings: Vec<&str> = r["analysis"]["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w["code"].as_str())
        .collect();
    assert!(warnings.contains(&"cap_sys_admin"), "{warnings:?}");
    assert!(
        r["docker_default"]["replay"]["would_deny"]
            .as_array()
            .expect("replay")
            .is_empty()
    );
    for name in [
        "report.json",
        "seccomp.json",
        "oci-seccomp.json",
        "seccompprofile.yaml",
        "compose.yaml",
        "kubernetes-securitycontext.yaml",
        "apparmor-capabilities.txt",
        "docker-run-flags.txt",
    ] {
        assert!(outdir.join(name).is_file(), "{name} not written");
    }
    let flags = fs::read_to_string(outdir.join("docker-run-flags.txt")).expect("flags");
    assert_eq!(
        flags.lines().last(),
        Some(
            "--cap-drop ALL --cap-add CHOWN --security-opt no-new-privileges \
             --security-opt seccomp=seccomp-chowner.json"
        )
    );
    let apparmor = fs::read_to_string(outdir.join("apparmor-capabilities.txt")).expect("aa");
    assert!(apparmor.contains("  capability chown,\n"), "{apparmor}");
    assert!(
        apparmor.contains("  deny capability sys_admin,\n"),
        "{apparmor}"
    );
    common::assert_apparmor_parses("chowner", &apparmor);

    // --format prints one format on stdout.
    let out = Command::new(CAPMON)
        .args([
            "record",
            "--format",
            "kubernetes",
            "--",
            "chown",
            "nobody",
            target,
        ])
        .output()
        .expect("capmon");
    assert!(out.status.success(), "{out:?}");
    let k8s = String::from_utf8_lossy(&out.stdout);
    assert!(k8s.contains("securityContext:\n"), "{k8s}");
    assert!(k8s.contains("  - CHOWN\n"), "{k8s}");
    let out = Command::new(CAPMON)
        .args(["record", "--format", "yaml", "--", "true"])
        .output()
        .expect("capmon");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown format \"yaml\": use one of docker"),
        "{out:?}"
    );

    // Replay: Docker's default allows it all (exit 0); a profile without the chown syscalls
    // would break it (exit 3, naming them).
    let report = outdir.join("report.json");
    let replay = |profile: &str| {
        Command::new(CAPMON)
            .args(["replay", "--profile", profile])
            .arg(&report)
            .output()
            .expect("capmon replay")
    };
    let ok = replay("docker-default");
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("would deny: nothing"),
        "{ok:?}"
    );
    let mut strict: Value =
        serde_json::from_str(&fs::read_to_string(outdir.join("seccomp.json")).expect("profile"))
            .expect("json");
    let names: Vec<String> = strings(&strict["syscalls"][0]["names"])
        .into_iter()
        .filter(|n| !n.contains("chown"))
        .collect();
    strict["syscalls"][0]["names"] = serde_json::json!(names);
    let strict_path = dir.join("strict.json");
    write_profile(&strict_path, &strict);
    let denied = replay(strict_path.to_str().expect("utf8"));
    assert_eq!(denied.status.code(), Some(3), "{denied:?}");
    let text = String::from_utf8_lossy(&denied.stdout);
    assert!(text.contains("would deny 1"), "{text}");
    assert!(text.contains("fchownat"), "{text}");
    // A broken profile is refused with its position, exit 1.
    let broken = dir.join("broken.json");
    fs::write(
        &broken,
        "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [",
    )
    .expect("w");
    let bad = replay(broken.to_str().expect("utf8"));
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("EOF while parsing"),
        "{bad:?}"
    );
}
