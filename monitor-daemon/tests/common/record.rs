//! `capmon record` from the tests: the programs they run, a scratch directory, the JSON
//! report of one recording, and reading its lists.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use serde_json::Value;

pub const CAPMON: &str = env!("CARGO_BIN_EXE_capmon");
pub const SECCOMP_EXEC: &str = env!("CARGO_BIN_EXE_capmon-seccomp-exec");

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test loads eBPF programs and needs root: run `cargo xtask test` as root"
    );
}

/// A fresh directory under the target dir, removed by nobody: kept for post-mortems.
pub fn scratch(name: &str) -> PathBuf {
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
pub fn record(extra: &[&str], cmd: &[&str]) -> (Value, Output) {
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

pub fn strings(v: &Value) -> Vec<String> {
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

pub fn write_profile(path: &Path, json: &Value) {
    fs::write(path, serde_json::to_string_pretty(json).expect("json")).expect("write profile");
}

/// What a command wrote to stderr, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
