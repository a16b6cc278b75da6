//! Privileged tier: the real kernel, the real probes, real seccomp. Each test is `#[ignore]`d
//! so that a plain `cargo test` stays unprivileged; `cargo xtask test` runs them as root.

use std::{
    fs,
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::Duration,
};

use serde_json::Value;

mod common;

use common::record::*;

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
    // Each allowed capability says how sure the advice is of it.
    assert!(
        apparmor.contains("  capability chown,  # observed\n"),
        "{apparmor}"
    );
    assert!(
        flags.contains("# added capabilities: CHOWN (observed)\n"),
        "{flags}"
    );
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
