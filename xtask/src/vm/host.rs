//! The host's own row: the same test binaries run on this machine's kernel, in the mode capmon
//! picks here (`tp_btf` on 6.14+), in parallel as libtest does by default.

use std::{
    fs,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{
    binaries::Built,
    collect::{BinaryOutput, collect},
    report::Row,
};

/// `probe mode: kprobe (why...)` in `capmon check`'s output -> `kprobe`.
pub fn probe_mode_of(check: &str) -> Option<String> {
    check
        .lines()
        .find_map(|l| l.strip_prefix("probe mode: "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|m| m.trim_end_matches(',').to_owned())
}

/// `capmon check` on this host, as it picks its mode (empty when it cannot run).
fn host_check(built: &Built) -> String {
    let Some((_, capmon)) = built.programs.iter().find(|(n, _)| n == "capmon") else {
        return String::new();
    };
    Command::new(capmon)
        .arg("check")
        .env_remove("CAPMON_PROBE_MODE")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Runs every binary on the host but the tests in `skipped` (one list per binary), with its
/// output under `logs/` and `env` added; each binary is bounded by `bound`.
pub fn run(
    built: &Built,
    skipped: &[Vec<(&str, &'static str)>],
    logs: &Path,
    bound: Duration,
    env: &[(&str, String)],
) -> Result<Row> {
    fs::create_dir_all(logs).with_context(|| format!("mkdir {}", logs.display()))?;
    let start = Instant::now();
    let mut row = Row {
        kernel: "host".into(),
        release: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        logs: logs.to_owned(),
        check: host_check(built),
        ..Row::default()
    };
    // The mode capmon picks here, or `auto` when it cannot tell.
    row.mode = probe_mode_of(&row.check).unwrap_or_else(|| "auto".into());
    for (binary, skipped) in built.tests.iter().zip(skipped) {
        let log = logs.join(format!("{}.log", binary.name));
        let t = Instant::now();
        let (log_text, status) = if skipped.len() == binary.tests.len() {
            (None, None)
        } else {
            let mut cmd = Command::new(&binary.path);
            cmd.args(["--ignored", "--show-output"])
                .args(["-Z", "unstable-options", "--report-time"])
                // --report-time is unstable: allowed for the test binary only.
                .env("RUSTC_BOOTSTRAP", "1")
                .env_remove("CAPMON_PROBE_MODE")
                .envs(env.iter().map(|(k, v)| (k, v)));
            if !skipped.is_empty() {
                cmd.arg("--exact");
                for (test, _) in skipped {
                    cmd.args(["--skip", test]);
                }
            }
            let status = super::tools::run_bounded(&mut cmd, &log, bound)?;
            if status.is_none() {
                for left in super::leftovers::clear(Path::new("/sys/fs/cgroup")) {
                    eprintln!("host: {}: killed at its bound; cleared {left}", binary.name);
                }
            }
            // Killed after the bound: reported like the guests' `timeout -s KILL`.
            (
                Some(fs::read_to_string(&log).unwrap_or_default()),
                Some(status.unwrap_or(137)),
            )
        };
        let (results, problems) = collect(&BinaryOutput {
            binary,
            log: log_text,
            status,
            skipped: skipped.clone(),
        });
        let part = Row {
            results: results
                .into_iter()
                .map(|r| (binary.name.clone(), r))
                .collect(),
            ..Row::default()
        };
        eprintln!(
            "host: {}: {} passed, {} failed, {} skipped ({} s; {})",
            binary.name,
            part.passed(),
            part.failed(),
            part.skipped(),
            t.elapsed().as_secs(),
            log.display()
        );
        row.results.extend(part.results);
        row.problems.extend(problems);
    }
    row.took = start.elapsed();
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_line_of_capmon_check() {
        let check = "[ok  ] load and attach          all probes\n\
                     probe mode: fexit (no capability:cap_capable tracepoint), attaching:\n";
        assert_eq!(probe_mode_of(check).as_deref(), Some("fexit"));
        assert_eq!(
            probe_mode_of("probe mode: tp_btf, attaching:\n").as_deref(),
            Some("tp_btf")
        );
        assert_eq!(probe_mode_of("result: no"), None);
    }
}
