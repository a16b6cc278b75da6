//! The matrix's results: one row per kernel and probe mode (the host's included), the table,
//! and the details of every failure and skip.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf, time::Duration};

use super::libtest::{Outcome, TestResult};

/// The results of one kernel in one probe mode.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// `host`, `6.1`, `6.12-rt`, ...
    pub kernel: String,
    /// `uname -r`.
    pub release: String,
    pub mode: String,
    /// (test binary, result), every test of the tier once.
    pub results: Vec<(String, TestResult)>,
    /// Failures that belong to no test: a guest that hung or died, a mode that does not
    /// attach.
    pub problems: Vec<String>,
    pub took: Duration,
    /// Where each binary's whole output is (`<binary>.log`).
    pub logs: PathBuf,
    /// Failed tests whose failure is already understood (`binary::test`, why): still failures.
    pub known: Vec<(String, &'static str)>,
    /// `capmon check`'s output in this kernel and mode (empty when it did not run).
    pub check: String,
    /// The probe modes' benchmark (`capmon-bench`, `CAPMON_BENCH_ONLY=modes`), when it ran.
    pub bench: String,
}

impl Row {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|(_, r)| f(&r.outcome)).count()
    }

    pub fn passed(&self) -> usize {
        self.count(|o| *o == Outcome::Passed)
    }

    pub fn failed(&self) -> usize {
        self.count(|o| *o == Outcome::Failed)
    }

    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }

    /// Why `binary::test` is known to fail here, if it is.
    fn known_reason(&self, binary: &str, test: &str) -> Option<&'static str> {
        let name = format!("{binary}::{test}");
        self.known.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
    }

    /// How many of the failed tests are known failures.
    pub fn known_failed(&self) -> usize {
        self.results
            .iter()
            .filter(|(b, t)| {
                t.outcome == Outcome::Failed && self.known_reason(b, &t.name).is_some()
            })
            .count()
    }

    /// Whether anything failed (a problem counts).
    pub fn ok(&self) -> bool {
        self.failed() == 0 && self.problems.is_empty()
    }

    fn label(&self) -> String {
        if self.release.is_empty() || self.release == self.kernel {
            self.kernel.clone()
        } else {
            format!("{} ({})", self.kernel, self.release)
        }
    }
}

/// The table: one line per row.
pub fn table(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.label().len())
        .max()
        .unwrap_or(0)
        .max("kernel".len());
    let mut s = format!(
        "{:<width$}  {:<7} {:>6} {:>6} {:>5} {:>7} {:>6}  result\n",
        "kernel", "mode", "passed", "failed", "known", "skipped", "time"
    );
    for r in rows {
        let result = match (r.ok(), r.problems.len()) {
            (true, _) => "ok".to_owned(),
            (false, 0) => "FAILED".to_owned(),
            (false, n) => format!("FAILED ({n} problem{})", if n == 1 { "" } else { "s" }),
        };
        let _ = writeln!(
            s,
            "{:<width$}  {:<7} {:>6} {:>6} {:>5} {:>7} {:>5}s  {result}",
            r.label(),
            r.mode,
            r.passed(),
            r.failed(),
            r.known_failed(),
            r.skipped(),
            r.took.as_secs()
        );
    }
    s
}

/// The detail of `capmon check`'s line `name` (`[ok  ] name   detail`).
fn check_detail<'a>(check: &'a str, name: &str) -> Option<&'a str> {
    check.lines().find_map(|l| {
        let rest = l.get(7..)?.strip_prefix(name)?;
        rest.starts_with("  ").then(|| rest.trim())
    })
}

/// What the row's tests saw (`true`) or did not see, each observation once (seen wins: a
/// second test may have run where the first could not look).
fn observed(row: &Row) -> BTreeMap<&str, bool> {
    let mut all: BTreeMap<&str, bool> = BTreeMap::new();
    for (_, t) in &row.results {
        for (what, seen) in &t.observed {
            *all.entry(what.as_str()).or_default() |= *seen;
        }
    }
    all
}

/// The kernel support table in Markdown, as docs/testing.md shows it: per kernel and mode, the
/// tests' counts, how low mmaps' checks are seen (`capmon check`) and what the tests saw and
/// did not see.
pub fn support(rows: &[Row]) -> String {
    let mut s = String::from(
        "| kernel | mode | tests passed / failed / skipped | low mmaps (`capmon check`) | seen | not seen |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        let obs = observed(r);
        let list = |want: bool| {
            let v: Vec<&str> = obs
                .iter()
                .filter(|(_, seen)| **seen == want)
                .map(|(what, _)| *what)
                .collect();
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join("; ")
            }
        };
        let low = check_detail(&r.check, "low mmap checks")
            .map(|d| d.split(':').next().unwrap_or(d).to_owned())
            .unwrap_or_else(|| "-".to_owned());
        let _ = writeln!(
            s,
            "| {} | {} | {} / {} / {} | {low} | {} | {} |",
            r.label(),
            r.mode,
            r.passed(),
            r.failed(),
            r.skipped(),
            list(true),
            list(false)
        );
    }
    s
}

/// Skips grouped by reason: `reason` -> [`kernel/mode: binary::test`].
pub fn skips(rows: &[Row]) -> String {
    let mut by_reason: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in rows {
        for (binary, t) in &r.results {
            if let Outcome::Skipped(reason) = &t.outcome {
                by_reason
                    .entry(reason)
                    .or_default()
                    .push(format!("{}/{}: {binary}::{}", r.kernel, r.mode, t.name));
            }
        }
    }
    let mut s = String::new();
    for (reason, tests) in by_reason {
        if reason == super::skips::NOT_SELECTED {
            let _ = writeln!(s, "skipped: {reason}: {} tests", tests.len());
            continue;
        }
        let _ = writeln!(s, "skipped: {reason}");
        for t in compress(&tests) {
            let _ = writeln!(s, "    {t}");
        }
    }
    s
}

/// `6.1/fexit: a::b`, `6.1/kprobe: a::b` -> `6.1/fexit, 6.1/kprobe: a::b`.
fn compress(entries: &[String]) -> Vec<String> {
    let mut by_test: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in entries {
        if let Some((where_, test)) = e.split_once(": ") {
            by_test.entry(test).or_default().push(where_);
        }
    }
    by_test
        .into_iter()
        .map(|(test, wheres)| format!("{}: {test}", wheres.join(", ")))
        .collect()
}

/// The `n` slowest tests of all rows, slowest first.
pub fn slowest(rows: &[Row], n: usize) -> String {
    let mut all: Vec<(f64, String)> = rows
        .iter()
        .flat_map(|r| {
            r.results.iter().filter_map(move |(binary, t)| {
                Some((
                    t.seconds?,
                    format!("{}/{}: {binary}::{}", r.kernel, r.mode, t.name),
                ))
            })
        })
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    all.iter()
        .take(n)
        .map(|(s, what)| format!("{s:>7.1} s  {what}\n"))
        .collect()
}

/// Every failure with its output (the first `max_lines` lines of it).
pub fn failures(rows: &[Row], max_lines: usize) -> String {
    let mut s = String::new();
    for r in rows {
        for p in &r.problems {
            let _ = writeln!(s, "FAILED {}/{}: {p}", r.kernel, r.mode);
        }
        for (binary, t) in &r.results {
            if t.outcome != Outcome::Failed {
                continue;
            }
            let _ = writeln!(
                s,
                "FAILED {}/{}: {binary}::{} (output: {})",
                r.kernel,
                r.mode,
                t.name,
                r.logs.join(format!("{binary}.log")).display()
            );
            if let Some(why) = r.known_reason(binary, &t.name) {
                let _ = writeln!(s, "    known: {why}");
            }
            // From the panic on: what the test printed before it is in the log.
            let lines: Vec<&str> = t.output.lines().filter(|l| !l.trim().is_empty()).collect();
            let from = lines
                .iter()
                .position(|l| l.contains("panicked at"))
                .unwrap_or(0);
            for line in lines[from..].iter().take(max_lines) {
                let _ = writeln!(s, "    {line}");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, outcome: Outcome) -> (String, TestResult) {
        (
            "privileged".to_owned(),
            TestResult {
                name: name.to_owned(),
                outcome,
                output: "thread 'x' panicked at a.rs:1:1:\nboom\n".to_owned(),
                seconds: Some(1.5),
                observed: Vec::new(),
            },
        )
    }

    fn rows() -> Vec<Row> {
        vec![
            Row {
                kernel: "host".into(),
                release: "6.18.44".into(),
                mode: "tp_btf".into(),
                results: vec![result("a", Outcome::Passed), result("b", Outcome::Passed)],
                problems: vec![],
                took: Duration::from_secs(140),
                logs: "/host".into(),
                known: vec![],
                check:
                    "[ok  ] low mmap checks          seen by the cap_capable tracepoint (inside)\n"
                        .into(),
                bench: String::new(),
            },
            Row {
                kernel: "6.1".into(),
                release: "6.1.0-57-amd64".into(),
                mode: "kprobe".into(),
                results: vec![
                    result("a", Outcome::Failed),
                    result("b", Outcome::Skipped("needs podman".into())),
                ],
                problems: vec!["guest timed out".into()],
                took: Duration::from_secs(300),
                logs: "/logs".into(),
                known: vec![("privileged::a".into(), "issue 13")],
                check: String::new(),
                bench: String::new(),
            },
        ]
    }

    #[test]
    fn the_table_counts_each_row() {
        let t = table(&rows());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("kernel"), "{t}");
        assert!(lines[1].starts_with("host (6.18.44)"), "{t}");
        assert!(
            lines[1].ends_with("2      0     0       0   140s  ok"),
            "{t}"
        );
        assert!(lines[2].contains("kprobe"), "{t}");
        assert!(
            lines[2].ends_with("0      1     1       1   300s  FAILED (1 problem)"),
            "{t}"
        );
    }

    #[test]
    fn failures_show_their_output_and_skips_their_reason() {
        let f = failures(&rows(), 5);
        assert!(f.contains("FAILED 6.1/kprobe: guest timed out\n"), "{f}");
        assert!(
            f.contains(
                "FAILED 6.1/kprobe: privileged::a (output: /logs/privileged.log)\n    \
                 known: issue 13\n    thread 'x' panicked at a.rs:1:1:\n    boom\n"
            ),
            "{f}"
        );
        let s = skips(&rows());
        assert_eq!(s, "skipped: needs podman\n    6.1/kprobe: privileged::b\n");
    }

    #[test]
    fn the_support_table_says_what_each_kernel_and_mode_saw() {
        let mut rows = rows();
        let said = |what: &str, seen| (what.to_owned(), seen);
        rows[0].results[0].1.observed = vec![said("low mmap", true), said("no-audit", false)];
        // Seen by one test, not by another: seen.
        rows[0].results[1].1.observed = vec![said("no-audit", true)];
        rows[1].results[0].1.observed = vec![said("low mmap", true), said("no-audit", false)];
        let t = support(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert_eq!(
            lines[2],
            "| host (6.18.44) | tp_btf | 2 / 0 / 0 | seen by the cap_capable tracepoint (inside) \
             | low mmap; no-audit | - |"
        );
        assert_eq!(
            lines[3],
            "| 6.1 (6.1.0-57-amd64) | kprobe | 0 / 1 / 1 | - | low mmap | no-audit |"
        );
    }

    #[test]
    fn the_slowest_tests_first() {
        let s = slowest(&rows(), 1);
        assert_eq!(s, "    1.5 s  host/tp_btf: privileged::a\n");
    }

    #[test]
    fn the_same_skip_on_several_rows_is_one_line() {
        let entries = ["6.1/fexit: a::b".to_owned(), "6.1/kprobe: a::b".to_owned()];
        assert_eq!(compress(&entries), ["6.1/fexit, 6.1/kprobe: a::b"]);
    }
}
