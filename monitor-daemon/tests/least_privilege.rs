//! Proven least privilege (privileged tier): granted checks whose outcome cannot matter are
//! probes (the kernel side's rules), and `capmon record --verify` proves by running the command
//! again which recommended capabilities are needed. Real kernel, real probes, real seccomp.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;

mod common;

use common::record::*;

/// A file in `dir` owned by nobody (uid and gid 65534, a group root is not in) with `mode`.
fn foreign_file(dir: &Path, name: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, "x").expect("write");
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).expect("chown");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// The check sites of `cap` in a report, as (class, reason).
fn sites(r: &Value, cap: &str) -> Vec<(String, String)> {
    r["capabilities"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["capability"] == cap)
        .map(|c| {
            (
                c["class"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn cap_fsetid_in_a_chmod_counts_only_when_the_mode_asks_for_set_group_id() {
    require_root();
    let dir = scratch("fsetid");
    // Another user's file in a group root is not in: chmod needs CAP_FOWNER, and the kernel
    // asks for CAP_FSETID to decide whether a set-group-ID bit may stay.
    let file = foreign_file(&dir, "f", 0o600);
    let (r, out) = record(&[], &["chmod", "644", path_str(&file)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(strings(&r["capabilities"]["used"]), ["CAP_FOWNER"], "{r:#}");
    let fsetid = sites(&r, "CAP_FSETID");
    assert!(!fsetid.is_empty(), "the kernel consulted CAP_FSETID: {r:#}");
    for (class, reason) in &fsetid {
        assert_eq!(class, "probe", "{r:#}");
        assert!(reason.contains("S_ISGID"), "{reason}");
    }
    assert_eq!(strings(&r["analysis"]["recommended"]), ["CAP_FOWNER"]);
    // fchmod and fchmodat2 read their mode from another argument: perl's chmod uses fchmodat,
    // so the `chmod` binary above covers that; a set-group-ID mode keeps the capability.
    let (r, out) = record(&[], &["chmod", "2755", path_str(&file)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        strings(&r["capabilities"]["used"]),
        ["CAP_FOWNER", "CAP_FSETID"],
        "{r:#}"
    );
    assert_eq!(fs::metadata(&file).expect("stat").mode() & 0o7777, 0o2755);
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn verify_proves_which_capabilities_are_needed_and_the_advice_holds_only_those() {
    require_root();
    let dir = scratch("verify");
    let out_dir = dir.join("out");
    // touch of another user's world-writable file: the kernel asks for CAP_FOWNER (granted,
    // audited: used), but the file's mode lets anyone set its times to now.
    let g = foreign_file(&dir, "g", 0o666);
    let (r, out) = record(
        &["--verify", "--output-dir", path_str(&out_dir)],
        &["touch", path_str(&g)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(strings(&r["capabilities"]["used"]), ["CAP_FOWNER"], "{r:#}");
    assert_eq!(
        r["verification"]["sufficient"], true,
        "{:#}",
        r["verification"]
    );
    assert_eq!(strings(&r["capabilities"]["needed"]), Vec::<String>::new());
    assert_eq!(strings(&r["capabilities"]["not_needed"]), ["CAP_FOWNER"]);
    assert_eq!(strings(&r["analysis"]["recommended"]), Vec::<String>::new());
    let v = &r["verification"];
    // The recommended set under the generated profile, then one run without CAP_FOWNER.
    assert_eq!(v["runs"].as_array().map(Vec::len), Some(2), "{v:#}");
    assert_eq!(v["sufficient"], true, "{v:#}");
    assert_eq!(
        v["seccomp_proven"], true,
        "touch runs under its profile: {v:#}"
    );
    assert_eq!(v["runs"][0]["seccomp"], true);
    assert_eq!(v["runs"][1]["without"], "CAP_FOWNER");
    assert!(v["runs"][1].get("difference").is_none(), "{v:#}");
    assert_eq!(v["runs"][1]["verdict"], "not_needed");
    assert_eq!(
        v["runs"][1]["consulted"], true,
        "the kernel asked and was refused"
    );
    let flags = fs::read_to_string(out_dir.join("docker-run-flags.txt")).expect("flags");
    assert!(
        flags.contains("# proven not needed by capmon record --verify: FOWNER"),
        "{flags}"
    );
    assert!(!flags.contains("--cap-add"), "{flags}");

    // A run that never reaches the check proves nothing: chgrp run again finds the group
    // already set, so the kernel does not ask for CAP_CHOWN; it is kept, as observed.
    let own = dir.join("own");
    fs::write(&own, "x").expect("write");
    let (r, out) = record(&["--verify"], &["chgrp", "65534", path_str(&own)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = &r["verification"];
    assert_eq!(strings(&v["inconclusive"]), ["CAP_CHOWN"], "{v:#}");
    assert_eq!(v["runs"][1]["verdict"], "inconclusive");
    assert_eq!(v["runs"][1]["consulted"], false);
    assert_eq!(strings(&r["analysis"]["recommended"]), ["CAP_CHOWN"]);
    assert_eq!(r["analysis"]["basis"]["CAP_CHOWN"], "observed");

    // Output counts: without CAP_FSETID the kernel silently drops the set-group-ID bit, which
    // only the command's output shows. Both capabilities are proven needed.
    let f = foreign_file(&dir, "f", 0o600);
    let script = format!("chmod 2755 {0} && stat -c %a {0}", path_str(&f));
    let (r, out) = record(
        &["--verify", "--output-dir", path_str(&out_dir)],
        &["sh", "-c", &script],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        r["verification"]["sufficient"], true,
        "{:#}",
        r["verification"]
    );
    assert_eq!(
        strings(&r["capabilities"]["needed"]),
        ["CAP_FOWNER", "CAP_FSETID"],
        "{:#}",
        r["verification"]
    );
    assert_eq!(r["analysis"]["basis"]["CAP_FOWNER"], "proven");
    assert_eq!(r["analysis"]["basis"]["CAP_FSETID"], "proven");
    let runs = r["verification"]["runs"].as_array().expect("runs");
    assert_eq!(
        runs[2]["difference"],
        "standard output differs (4 bytes instead of 5)"
    );
    let flags = fs::read_to_string(out_dir.join("docker-run-flags.txt")).expect("flags");
    assert!(
        flags.contains("# added capabilities: FOWNER (proven), FSETID (proven)"),
        "{flags}"
    );
    let apparmor = fs::read_to_string(out_dir.join("apparmor-capabilities.txt")).expect("aa");
    assert!(
        apparmor.contains("capability fowner,  # proven"),
        "{apparmor}"
    );
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn verify_exit_ignores_varying_output_and_a_hung_run_is_killed_at_the_bound() {
    require_root();
    let dir = scratch("verify-exit");
    let f = foreign_file(&dir, "f", 0o600);
    // Output that differs every run; without CAP_FOWNER the chmod fails and the command
    // hangs instead of exiting (every run is made under the generated profile: the recorded
    // run sleeps too, so that the profile allows it).
    let script = format!(
        "date +%s%N; sleep 0.01; if chmod 644 {}; then exit 0; else sleep 60; fi",
        path_str(&f)
    );
    // 2 s here, five times that under the matrix's qemu TCG, where a run that does not hang
    // can take seconds.
    let timeout = common::bound(Duration::from_secs(2)).as_secs().to_string();
    let started = Instant::now();
    let (r, out) = record(
        &["--verify=exit", "--verify-timeout", &timeout],
        &["sh", "-c", &script],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        started.elapsed() < common::bound(Duration::from_secs(50)),
        "the hung run was not killed"
    );
    let v = &r["verification"];
    assert_eq!(v["compare"], "exit");
    assert_eq!(v["sufficient"], true, "{v:#}");
    assert_eq!(
        strings(&r["capabilities"]["needed"]),
        ["CAP_FOWNER"],
        "{v:#}"
    );
    assert_eq!(v["runs"][1]["difference"], "timed out", "{v:#}");
    assert_eq!(v["runs"][1]["outcome"]["timed_out"], true);
    assert_eq!(v["seccomp_proven"], true, "{v:#}");
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn a_program_that_reads_its_own_capabilities_is_not_called_proven() {
    require_root();
    // It exits 1 when it holds no effective capability: it asks the kernel nothing capmon
    // sees (it reads /proc/self/status), so the recommended set (none) cannot reproduce it.
    let script = r#"awk '/^CapEff/ { exit ($2 == "0000000000000000") }' /proc/self/status"#;
    let (r, out) = record(&["--verify"], &["sh", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = &r["verification"];
    assert_eq!(v["sufficient"], false, "{v:#}");
    assert_eq!(
        v["runs"].as_array().map(Vec::len),
        Some(2),
        "with and without the profile, then no elimination: {v:#}"
    );
    assert!(
        r["capabilities"].get("needed").is_none(),
        "nothing proven: {r:#}"
    );
    let codes: Vec<&str> = r["analysis"]["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w["code"].as_str())
        .collect();
    assert!(codes.contains(&"recommendation_unproven"), "{codes:?}");
    assert!(
        !codes.contains(&"seccomp_profile_unproven"),
        "the profile is not blamed when the set alone fails: {codes:?}"
    );
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run `cargo xtask test`"]
fn bad_verify_arguments_are_refused_before_anything_runs() {
    require_root();
    let dir = scratch("verify-bad");
    let marker = dir.join("ran");
    let touch = ["touch", path_str(&marker)];
    for args in [
        &["--verify=twice"][..],
        &["--verify", "--verify-timeout", "0"],
        &["--verify", "--verify-timeout", "soon"],
    ] {
        let out = std::process::Command::new(CAPMON)
            .arg("record")
            .args(args)
            .arg("--")
            .args(touch)
            .output()
            .expect("capmon");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("twice") || err.contains("verify-timeout"),
            "{args:?}: the error names the bad value: {err}"
        );
        assert!(!marker.exists(), "{args:?}: the command ran");
    }
}
