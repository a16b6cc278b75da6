//! Reading what a libtest binary printed (the default "pretty" format, run with
//! `--show-output`): each test's outcome, the output of failed tests, and the reason of a test
//! that skipped itself.
//!
//! A test that cannot run where it is (a prerequisite missing) prints a line starting with
//! [`SKIP_MARKER`] and returns: libtest calls it passed, this parser calls it skipped, with the
//! rest of that line as the reason (`--show-output` makes libtest print a passed test's
//! captured output).

/// The line a test prints for the support table: `<marker><what>: seen` or `: not seen`
/// (`common::observed`).
pub const OBSERVED_MARKER: &str = "capmon-test: observed: ";

/// The line a test prints when it skips itself (`common::skip` in monitor-daemon's tests).
pub const SKIP_MARKER: &str = "capmon-test: skipped: ";

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    Failed,
    /// Not run, with the reason.
    Skipped(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    pub name: String,
    pub outcome: Outcome,
    /// What the test printed (its panic message when it failed), as libtest showed it.
    pub output: String,
    /// How long it took, when libtest said (`--report-time`).
    pub seconds: Option<f64>,
    /// What it reported as seen (`true`) or not seen on this kernel and mode.
    pub observed: Vec<(String, bool)>,
}

/// One binary's run.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed {
    pub results: Vec<TestResult>,
    /// A test that started and never finished (the binary was killed or crashed in it).
    pub unfinished: Option<String>,
    /// Whether libtest printed its final `test result:` line.
    pub summary_seen: bool,
}

/// `ok`, `FAILED`, `ignored` or `ignored, reason`, with an optional ` <1.2s>` time.
fn parse_result(text: &str) -> Option<(Outcome, Option<f64>)> {
    let text = text.trim();
    let (text, seconds) = match text.rfind(" <") {
        Some(i) if text.ends_with("s>") => {
            (&text[..i], text[i + 2..text.len() - 2].parse::<f64>().ok())
        }
        _ => (text, None),
    };
    let outcome = match text {
        "ok" => Outcome::Passed,
        "FAILED" => Outcome::Failed,
        "ignored" => Outcome::Skipped("ignored".to_owned()),
        _ => Outcome::Skipped(text.strip_prefix("ignored, ")?.to_owned()),
    };
    Some((outcome, seconds))
}

/// `---- NAME stdout ----` -> NAME.
fn block_header(line: &str) -> Option<&str> {
    line.strip_prefix("---- ")?.strip_suffix(" stdout ----")
}

/// Parses the output of one test binary.
pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut pending: Option<String> = None;
    let mut outputs: Vec<(String, String)> = Vec::new();
    let mut block: Option<(String, String)> = None;
    for line in text.lines() {
        if line.starts_with("test result: ") {
            parsed.summary_seen = true;
        }
        if let Some(rest) = line.strip_prefix("test ")
            && let Some((name, result)) = rest
                .split_once(" ... ")
                .or_else(|| Some((rest.strip_suffix(" ...")?, "")))
            && !name.contains(' ')
        {
            match parse_result(result) {
                Some((outcome, seconds)) => parsed.results.push(TestResult {
                    name: name.to_owned(),
                    outcome,
                    output: String::new(),
                    seconds,
                    observed: Vec::new(),
                }),
                // Started; its result comes on a later line (one test thread), or never.
                None => pending = Some(name.to_owned()),
            }
            continue;
        }
        if let Some(name) = pending.as_ref()
            && let Some((outcome, seconds)) = parse_result(line)
        {
            parsed.results.push(TestResult {
                name: name.clone(),
                outcome,
                output: String::new(),
                seconds,
                observed: Vec::new(),
            });
            pending = None;
            continue;
        }
        if let Some(name) = block_header(line) {
            outputs.extend(block.take());
            block = Some((name.to_owned(), String::new()));
            continue;
        }
        if matches!(line, "failures:" | "successes:") || line.starts_with("test result: ") {
            outputs.extend(block.take());
            continue;
        }
        if let Some((_, text)) = block.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    outputs.extend(block.take());
    if let Some(name) = pending
        && !parsed.results.iter().any(|r| r.name == name)
    {
        parsed.unfinished = Some(name);
    }
    for (name, text) in outputs {
        if let Some(r) = parsed.results.iter_mut().find(|r| r.name == name) {
            if r.outcome == Outcome::Passed
                && let Some(reason) = skip_reason(&text)
            {
                r.outcome = Outcome::Skipped(reason);
            }
            r.observed = observations(&text);
            r.output = text.trim_end().to_owned();
        }
    }
    parsed
}

/// The reason a test gave for skipping itself, if it did.
fn skip_reason(output: &str) -> Option<String> {
    output.lines().find_map(|l| {
        l.find(SKIP_MARKER)
            .map(|i| l[i + SKIP_MARKER.len()..].trim().to_owned())
    })
}

/// What a test's output reports as seen or not seen.
fn observations(output: &str) -> Vec<(String, bool)> {
    output
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find(OBSERVED_MARKER)? + OBSERVED_MARKER.len()..];
            let (what, verdict) = rest.trim().rsplit_once(": ")?;
            let seen = match verdict {
                "seen" => true,
                "not seen" => false,
                _ => return None,
            };
            Some((what.to_owned(), seen))
        })
        .collect()
}

/// The names `--list --format terse` prints (`name: test`).
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "
running 4 tests
test a_skips ... ok
test b_fails ... FAILED
test c_passes ... ok <12.950s>
test d_ignored ... ignored, needs docker

successes:

---- a_skips stdout ----
capmon-test: skipped: no crun on this machine

---- c_passes stdout ----
probe modes attached on this kernel: [\"kprobe\"]
capmon-test: observed: low mmap CAP_SYS_RAWIO (cap_mmap_addr): seen
capmon-test: observed: mmap/exec no-audit CAP_SYS_ADMIN: not seen
capmon-test: observed: garbled: maybe


successes:
    a_skips
    c_passes

failures:

---- b_fails stdout ----

thread 'b_fails' (192) panicked at monitor-daemon/tests/privileged.rs:126:5:
assertion failed: probe contains CAP_SYS_ADMIN
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace


failures:
    b_fails

test result: FAILED. 2 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 3.00s
";

    fn outcome(p: &Parsed, name: &str) -> Outcome {
        p.results
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("{name} not parsed: {p:#?}"))
            .outcome
            .clone()
    }

    #[test]
    fn outcomes_skip_reasons_and_failure_output() {
        let p = parse(RUN);
        assert_eq!(p.results.len(), 4);
        assert!(p.summary_seen);
        assert_eq!(p.unfinished, None);
        assert_eq!(
            outcome(&p, "a_skips"),
            Outcome::Skipped("no crun on this machine".into())
        );
        assert_eq!(outcome(&p, "b_fails"), Outcome::Failed);
        assert_eq!(outcome(&p, "c_passes"), Outcome::Passed);
        let c = p.results.iter().find(|r| r.name == "c_passes").expect("c");
        assert_eq!(c.seconds, Some(12.95));
        assert_eq!(
            c.observed,
            [
                ("low mmap CAP_SYS_RAWIO (cap_mmap_addr)".to_owned(), true),
                ("mmap/exec no-audit CAP_SYS_ADMIN".to_owned(), false)
            ]
        );
        assert_eq!(
            outcome(&p, "d_ignored"),
            Outcome::Skipped("needs docker".into())
        );
        let b = p.results.iter().find(|r| r.name == "b_fails").expect("b");
        assert!(
            b.output
                .contains("panicked at monitor-daemon/tests/privileged.rs:126:5")
        );
        assert!(b.output.contains("probe contains CAP_SYS_ADMIN"));
        assert!(!b.output.contains("failures:"));
    }

    #[test]
    fn a_result_after_interleaved_output_belongs_to_the_started_test() {
        let p = parse("running 1 test\ntest slow ... child says hi\nok\n");
        assert_eq!(outcome(&p, "slow"), Outcome::Passed);
        assert_eq!(p.unfinished, None);
        assert!(!p.summary_seen);
    }

    #[test]
    fn a_killed_binary_names_the_test_that_never_finished() {
        let p = parse("running 3 tests\ntest one ... ok\ntest hangs ... ");
        assert_eq!(p.results.len(), 1);
        assert_eq!(p.unfinished.as_deref(), Some("hangs"));
        assert!(!p.summary_seen);
        let trimmed = parse("running 3 tests\ntest one ... ok\ntest hangs ...");
        assert_eq!(trimmed.unfinished.as_deref(), Some("hangs"));
    }

    #[test]
    fn test_names_with_module_paths_and_list_output() {
        let p = parse("test kernel::loader::tests::x ... ok\n");
        assert_eq!(outcome(&p, "kernel::loader::tests::x"), Outcome::Passed);
        assert_eq!(
            parse_list("a::b: test\nc: test\n\n2 tests, 0 benchmarks\n"),
            ["a::b", "c"]
        );
    }
}
