//! The binaries under test: the privileged test executables and the programs they run
//! (`capmon`, its helpers), built on the host with cargo and listed from cargo's JSON messages.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::libtest;

/// A test executable and its `#[ignore]`d tests (the privileged tier).
#[derive(Debug, Clone)]
pub struct TestBinary {
    /// `privileged`, `containers`, ... (an integration test's file name), or `<name>-unit` for
    /// the unit tests of a library or binary.
    pub name: String,
    pub path: PathBuf,
    pub tests: Vec<String>,
}

/// What cargo built.
#[derive(Debug, Clone, Default)]
pub struct Built {
    pub tests: Vec<TestBinary>,
    /// `capmon`, `capmon-stress`, ...: the tests find them at these paths
    /// (`CARGO_BIN_EXE_<name>`, fixed at build time).
    pub programs: Vec<(String, PathBuf)>,
}

/// One `compiler-artifact` message: (name for the table, executable, is a test harness).
fn artifact(msg: &Value) -> Option<(String, PathBuf, bool)> {
    if msg["reason"] != "compiler-artifact" {
        return None;
    }
    let exe = PathBuf::from(msg["executable"].as_str()?);
    let target = &msg["target"];
    let name = target["name"].as_str()?;
    let kinds: Vec<&str> = target["kind"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let is_test = msg["profile"]["test"].as_bool().unwrap_or(false);
    let label = if !is_test || kinds.contains(&"test") {
        name.to_owned()
    } else {
        format!("{name}-unit")
    };
    Some((label, exe, is_test))
}

/// Sorts cargo's JSON messages into test harnesses and programs.
pub fn parse_messages(text: &str) -> Built {
    let mut built = Built::default();
    for line in text.lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some((name, path, is_test)) = artifact(&msg) else {
            continue;
        };
        if is_test {
            built.tests.push(TestBinary {
                name,
                path,
                tests: Vec::new(),
            });
        } else if !built.programs.iter().any(|(n, _)| *n == name) {
            built.programs.push((name, path));
        }
    }
    built
}

/// The `#[ignore]`d tests of `exe` (run on the host: listing needs no privileges).
fn ignored_tests(exe: &Path) -> Result<Vec<String>> {
    let out = Command::new(exe)
        .args(["--ignored", "--list", "--format", "terse"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        bail!("{} --list failed: {}", exe.display(), out.status);
    }
    Ok(libtest::parse_list(&String::from_utf8_lossy(&out.stdout)))
}

/// Builds the privileged tier (`cargo test -p monitor-daemon --features test-support --tests
/// --no-run`; with `--release` when `release`, and then the `bench` feature too, for the
/// guests' `capmon-bench`) with `cargo`, and lists each harness's ignored tests; harnesses
/// without any are dropped.
pub fn build(mut cargo: Command, release: bool) -> Result<Built> {
    let features = if release {
        "test-support,bench"
    } else {
        "test-support"
    };
    cargo
        .args(["test", "-p", "monitor-daemon", "--features", features])
        .args([
            "--tests",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .args(release.then_some("--release"))
        .stdout(Stdio::piped());
    let out = cargo.output().context("cannot run cargo")?;
    if !out.status.success() {
        bail!("building the privileged tests failed: {}", out.status);
    }
    let mut built = parse_messages(&String::from_utf8_lossy(&out.stdout));
    for t in &mut built.tests {
        t.tests = ignored_tests(&t.path)?;
    }
    built.tests.retain(|t| !t.tests.is_empty());
    built.tests.sort_by(|a, b| a.name.cmp(&b.name));
    if built.tests.is_empty() {
        bail!("cargo built no test harness with #[ignore]d tests");
    }
    Ok(built)
}

/// Copies every test harness (as `bin/<name>`) and program (as `bin/<file name>`) into the
/// share, so that the guests run a snapshot of this build.
pub fn copy_to(built: &Built, share: &Path) -> Result<()> {
    let bin = share.join("bin");
    let _ = fs::remove_dir_all(&bin);
    fs::create_dir_all(&bin).with_context(|| format!("mkdir {}", bin.display()))?;
    let programs = built
        .programs
        .iter()
        .map(|(_, p)| (file_name(p), p.as_path()));
    let tests = built
        .tests
        .iter()
        .map(|t| (t.name.clone(), t.path.as_path()));
    for (name, from) in tests.chain(programs) {
        fs::copy(from, bin.join(&name))
            .with_context(|| format!("copying {} into the share", from.display()))?;
    }
    Ok(())
}

pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harnesses_and_programs_from_cargo_messages() {
        let text = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"capmon"},"profile":{"test":false},"executable":"/w/target/debug/capmon"}
{"reason":"compiler-artifact","target":{"kind":["test"],"name":"privileged"},"profile":{"test":true},"executable":"/w/target/debug/deps/privileged-1234"}
{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"capmon"},"profile":{"test":true},"executable":"/w/target/debug/deps/capmon-99"}
{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"capmon_core"},"profile":{"test":false},"executable":null}
{"reason":"build-finished","success":true}
not json"#;
        let b = parse_messages(text);
        let tests: Vec<(&str, &str)> = b
            .tests
            .iter()
            .map(|t| (t.name.as_str(), t.path.to_str().expect("utf8")))
            .collect();
        assert_eq!(
            tests,
            [
                ("privileged", "/w/target/debug/deps/privileged-1234"),
                ("capmon-unit", "/w/target/debug/deps/capmon-99")
            ]
        );
        assert_eq!(
            b.programs,
            [("capmon".to_owned(), PathBuf::from("/w/target/debug/capmon"))]
        );
    }
}
