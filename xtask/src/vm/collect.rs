//! Turning what a test binary left behind (its output, its exit status, or nothing) into one
//! result per test of the tier: a test skipped by name, one the binary never reached, and the
//! one it was killed in are accounted for too.

use super::{
    binaries::TestBinary,
    libtest::{self, Outcome, TestResult},
};

/// Exit status of a binary killed by `timeout -s KILL` (128 + SIGKILL).
const KILLED: i32 = 137;

/// What one binary left.
pub struct BinaryOutput<'a> {
    pub binary: &'a TestBinary,
    /// Its output; `None` when it never ran.
    pub log: Option<String>,
    /// Its exit status; `None` when it did not finish (the guest stopped first).
    pub status: Option<i32>,
    /// Tests not run on purpose, with the reason.
    pub skipped: Vec<(&'a str, &'a str)>,
}

/// Results of every test of the binary, and problems that belong to no single test.
pub fn collect(b: &BinaryOutput) -> (Vec<TestResult>, Vec<String>) {
    let parsed = libtest::parse(b.log.as_deref().unwrap_or(""));
    let name = &b.binary.name;
    let mut problems = Vec::new();
    let not_reached = match (b.log.is_some(), b.status) {
        (false, _) => "not run: the guest stopped before this binary started".to_owned(),
        (true, None) => format!("not run: the guest stopped while {name} ran"),
        (true, Some(KILLED)) => format!("not run: {name} was killed (time limit)"),
        (true, Some(s)) => format!("not run: {name} exited with status {s}"),
    };
    let mut results: Vec<TestResult> = Vec::new();
    for test in &b.binary.tests {
        let outcome_of = |outcome, output: &str| TestResult {
            name: test.clone(),
            outcome,
            output: output.to_owned(),
            seconds: None,
            observed: Vec::new(),
        };
        let result = if let Some((_, reason)) = b.skipped.iter().find(|(t, _)| t == test) {
            outcome_of(Outcome::Skipped((*reason).to_owned()), "")
        } else if let Some(r) = parsed.results.iter().find(|r| &r.name == test) {
            r.clone()
        } else if parsed.unfinished.as_deref() == Some(test) {
            let why = match b.status {
                Some(KILLED) => "killed in this test: it ran past the time limit".to_owned(),
                Some(s) => format!("{name} died in this test (exit status {s})"),
                None => "the guest stopped in this test (timeout or crash)".to_owned(),
            };
            outcome_of(Outcome::Failed, &why)
        } else {
            outcome_of(Outcome::Skipped(not_reached.clone()), "")
        };
        results.push(result);
    }
    // Tests the binary ran that the host's listing did not have (should not happen).
    for r in &parsed.results {
        if !b.binary.tests.contains(&r.name) {
            results.push(r.clone());
        }
    }
    let any_failed = results.iter().any(|r| r.outcome == Outcome::Failed);
    match b.status {
        Some(0) | None => {}
        Some(_) if any_failed => {}
        Some(s) => problems.push(format!("{name} exited with status {s}: {not_reached}")),
    }
    if b.status == Some(0) && b.log.is_some() && !parsed.summary_seen {
        problems.push(format!("{name} printed no `test result:` line"));
    }
    (results, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary() -> TestBinary {
        TestBinary {
            name: "privileged".into(),
            path: "/x".into(),
            tests: vec!["a".into(), "b".into(), "c".into(), "d".into()],
        }
    }

    fn outcomes(results: &[TestResult]) -> Vec<(&str, Outcome)> {
        results
            .iter()
            .map(|r| (r.name.as_str(), r.outcome.clone()))
            .collect()
    }

    #[test]
    fn killed_in_a_test_fails_it_and_the_rest_were_not_reached() {
        let bin = binary();
        let (results, problems) = collect(&BinaryOutput {
            binary: &bin,
            log: Some("running 3 tests\ntest a ... ok\ntest b ... ".into()),
            status: Some(KILLED),
            skipped: vec![("d", "needs podman")],
        });
        assert_eq!(
            outcomes(&results),
            [
                ("a", Outcome::Passed),
                ("b", Outcome::Failed),
                (
                    "c",
                    Outcome::Skipped("not run: privileged was killed (time limit)".into())
                ),
                ("d", Outcome::Skipped("needs podman".into())),
            ]
        );
        assert!(results[1].output.contains("time limit"));
        assert!(problems.is_empty(), "the failed test says it: {problems:?}");
    }

    #[test]
    fn a_binary_that_never_ran_is_not_run_and_a_crash_without_a_test_is_a_problem() {
        let bin = binary();
        let (results, problems) = collect(&BinaryOutput {
            binary: &bin,
            log: None,
            status: None,
            skipped: vec![],
        });
        assert!(
            results
                .iter()
                .all(|r| matches!(&r.outcome, Outcome::Skipped(s) if s.contains("before this binary started")))
        );
        assert!(problems.is_empty());

        let (_, problems) = collect(&BinaryOutput {
            binary: &bin,
            log: Some("error: could not load\n".into()),
            status: Some(1),
            skipped: vec![],
        });
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("exited with status 1"), "{problems:?}");
    }
}
