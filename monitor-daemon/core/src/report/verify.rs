//! `capmon record --verify`: proof by experiment. The recorded command runs again, each time in
//! a fresh cgroup, with one recommended capability fewer than the set proven so far, then once
//! with the proven set under the generated seccomp profile; a run whose outcome (exit status,
//! and output unless only the exit status is compared) matches the recorded run's proves that
//! the capability it lacked is not needed.
//!
//! This file holds the data (what each run did) and the pure decisions: what counts as the
//! same outcome ([`Outcome::differs`]) and the elimination order ([`prove`]). Running the
//! command is the caller's (`capmon record`).

use serde::Serialize;

use super::{BuildContext, RecordReport, assemble};
use crate::recommend::Warning;

/// What `--verify` compares between the recorded run and each re-run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    /// Exit status, standard output and standard error (`--verify`, `--verify=output`).
    #[default]
    Output,
    /// The exit status only (`--verify=exit`), for commands whose output varies.
    Exit,
}

impl std::str::FromStr for Compare {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" | "output" => Ok(Compare::Output),
            "exit" => Ok(Compare::Exit),
            other => Err(format!(
                "unknown --verify mode {other:?}: use `output` (exit status and output, the \
                 default) or `exit` (exit status only)"
            )),
        }
    }
}

/// How one run of the command ended, and a digest of what it printed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Exit code (128 + the signal when killed by one).
    pub exit_code: i32,
    /// The signal that killed it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Killed at the `--verify-timeout` bound.
    pub timed_out: bool,
    /// Bytes written to standard output, and their FNV-1a hash.
    pub stdout: Digest,
    /// Bytes written to standard error, and their FNV-1a hash.
    pub stderr: Digest,
}

/// The length and hash of a stream (the streams themselves are not kept).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Digest {
    /// Bytes.
    pub bytes: u64,
    /// FNV-1a over the bytes.
    pub fnv1a: u64,
}

impl Digest {
    /// Adds `data` to the digest.
    pub fn update(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.bytes == 0 {
            self.fnv1a = monitor_common::FNV_OFFSET;
        }
        self.bytes += data.len() as u64;
        self.fnv1a = data.iter().fold(self.fnv1a, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(monitor_common::FNV_PRIME)
        });
    }
}

impl Outcome {
    /// How this run differs from `baseline` under `compare`, in words; `None` when it does not.
    pub fn differs(&self, baseline: &Outcome, compare: Compare) -> Option<String> {
        if self.timed_out && !baseline.timed_out {
            return Some("timed out".into());
        }
        if (self.exit_code, self.signal) != (baseline.exit_code, baseline.signal) {
            return Some(format!(
                "exit status {} instead of {}",
                status(self),
                status(baseline)
            ));
        }
        if compare == Compare::Exit {
            return None;
        }
        for (what, run, base) in [
            ("standard output", self.stdout, baseline.stdout),
            ("standard error", self.stderr, baseline.stderr),
        ] {
            if run != base {
                return Some(format!(
                    "{what} differs ({} bytes instead of {})",
                    run.bytes, base.bytes
                ));
            }
        }
        None
    }
}

fn status(o: &Outcome) -> String {
    match o.signal {
        Some(sig) => format!("{} (signal {sig})", o.exit_code),
        None => o.exit_code.to_string(),
    }
}

/// What one run without a capability showed about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Without it, the outcome changed.
    Needed,
    /// Without it, the kernel was asked for it (and refused) and the outcome was the same.
    NotNeeded,
    /// The outcome was the same, but the kernel was never asked for it in that run: the run
    /// did not take the recorded path (the command's state changed since the recorded run, as
    /// a `chgrp` run a second time finds the group already set), so nothing was proven; it is
    /// kept.
    Inconclusive,
}

/// One re-run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The capability it ran without (`None` for the seccomp run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub without: Option<String>,
    /// The capabilities it held (bounding, permitted, effective and inheritable sets).
    pub capabilities: Vec<String>,
    /// Whether it ran under the generated seccomp profile.
    pub seccomp: bool,
    /// How it ended.
    pub outcome: Outcome,
    /// How that differs from the recorded run; `None`: the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difference: Option<String>,
    /// For a run without a capability: what it showed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// What the probes saw of the run: whether the capability it lacked was asked for
    /// (`None` when the probes did not watch it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consulted: Option<bool>,
    /// Syscalls seccomp refused in the run (the seccomp run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused_syscalls: Vec<String>,
}

/// What one run showed, as the runner reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// How it ended.
    pub outcome: Outcome,
    /// Whether the capability it lacked was asked for, when the probes watched it.
    pub consulted: Option<bool>,
    /// Syscalls seccomp refused.
    pub refused_syscalls: Vec<String>,
}

/// What `--verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// What was compared.
    pub compare: Compare,
    /// The recorded run's outcome.
    pub recorded: Outcome,
    /// Every re-run, in order: the recommended set (under the generated profile when there is
    /// one, and again without it when that run's outcome differed), then one run per
    /// recommended capability.
    pub runs: Vec<Run>,
    /// Whether the recommended set reproduced the recorded outcome. When it did not, the
    /// command needs something the probes did not see (a program that reads its own
    /// capability sets with `capget` and refuses to run, a no-audit check that matters), and
    /// nothing was eliminated.
    pub sufficient: bool,
    /// Whether the generated seccomp profile was proven (the recommended set under it
    /// reproduced the outcome); `None` without a profile to apply, or when the set failed
    /// without the profile too.
    pub seccomp_proven: Option<bool>,
    /// Capabilities whose removal changed the outcome.
    pub needed: Vec<String>,
    /// Capabilities the workload was seen to use (or was refused) whose removal changed
    /// nothing although the kernel asked for them.
    pub not_needed: Vec<String>,
    /// Capabilities a run could not decide ([`Verdict::Inconclusive`]): kept, as observed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inconclusive: Vec<String>,
    /// Why a part of the verification could not be done.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl RecordReport {
    /// The report after `verification`: `capabilities.needed`/`not_needed` set, and the
    /// analysis (so the recommendation in every format) made from the proven set; an
    /// insufficient recommendation or a profile the verification could not prove gets a
    /// warning.
    pub fn verified(self, ctx: &BuildContext, verification: Verification) -> RecordReport {
        let mut capabilities = self.capabilities;
        if verification.sufficient {
            capabilities.needed = Some(verification.needed.clone());
            capabilities.not_needed = Some(verification.not_needed.clone());
        }
        let mut report = assemble(
            ctx,
            self.command,
            self.exit_code,
            self.signal,
            capabilities,
            self.syscalls,
            self.lost,
        );
        let first_difference = |seccomp: bool| {
            verification
                .runs
                .iter()
                .find(|r| r.without.is_none() && r.seccomp == seccomp)
                .and_then(|r| r.difference.clone())
                .unwrap_or_default()
        };
        if !verification.sufficient {
            report.analysis.warnings.push(Warning {
                code: "recommendation_unproven".into(),
                capability: None,
                needed: true,
                message: format!(
                    "with only the recommended capabilities the command's outcome changed \
                     ({}): it needs something capmon did not see (a program that reads its own \
                     capability sets, a no-audit check that matters); nothing was proven",
                    first_difference(false)
                ),
            });
        }
        if verification.seccomp_proven == Some(false) {
            let refused: Vec<&str> = verification
                .runs
                .iter()
                .filter(|r| r.seccomp)
                .flat_map(|r| r.refused_syscalls.iter().map(String::as_str))
                .collect();
            report.analysis.warnings.push(Warning {
                code: "seccomp_profile_unproven".into(),
                capability: None,
                needed: false,
                message: format!(
                    "under the generated seccomp profile the command's outcome changed ({}{}): \
                     review the profile before you enforce it",
                    first_difference(true),
                    if refused.is_empty() {
                        String::new()
                    } else {
                        format!("; seccomp refused {}", refused.join(", "))
                    }
                ),
            });
        }
        report.verification = Some(verification);
        report
    }
}

/// What [`prove`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proof {
    /// Every run, in order.
    pub runs: Vec<Run>,
    /// Whether the candidates reproduced the recorded outcome.
    pub sufficient: bool,
    /// Whether the profile was proven (`None`: no profile).
    pub seccomp_proven: Option<bool>,
    /// Removing it changed the outcome.
    pub needed: Vec<String>,
    /// Removing it changed nothing, though the kernel asked for it.
    pub not_needed: Vec<String>,
    /// Undecided; kept.
    pub inconclusive: Vec<String>,
    /// The set the last run that matched held: the candidates less `not_needed`.
    pub kept: Vec<String>,
}

/// Proves which of `candidates` (the recommended capabilities, in order) are needed.
/// `run(set, removed, under_profile)` runs the command with exactly `set`.
///
/// First the candidates themselves, under the generated profile when there is one
/// (`profile`): if that reproduces the recorded outcome, the profile is proven and every
/// later run is made under it too; if not, once more without the profile, to tell the profile
/// from the capabilities. Candidates that do not reproduce the outcome end the proof: the
/// command needs something the probes did not see. Then elimination: each candidate is
/// removed from the set kept so far; if the outcome stays the recorded one and the kernel did
/// ask for the capability (or nobody watched), it stays removed. So one run per candidate plus
/// one (two when the profile fails), every verdict is made against a set proven to work, and
/// the final set is the set of the last run that matched, even where two capabilities can
/// stand in for each other (only the second to be tried is kept).
pub fn prove(
    candidates: &[String],
    recorded: &Outcome,
    compare: Compare,
    profile: bool,
    mut run: impl FnMut(&[String], Option<&str>, bool) -> Seen,
) -> Proof {
    let mut proof = Proof {
        kept: candidates.to_vec(),
        ..Proof::default()
    };
    let mut baseline = |proof: &mut Proof, under_profile: bool| {
        let seen = run(candidates, None, under_profile);
        let difference = seen.outcome.differs(recorded, compare);
        let same = difference.is_none();
        proof.runs.push(Run {
            without: None,
            capabilities: candidates.to_vec(),
            seccomp: under_profile,
            outcome: seen.outcome,
            difference,
            verdict: None,
            consulted: None,
            refused_syscalls: seen.refused_syscalls,
        });
        same
    };
    let under_profile = profile && baseline(&mut proof, true);
    if profile {
        proof.seccomp_proven = Some(under_profile);
    }
    if !under_profile && !baseline(&mut proof, false) {
        // The set fails without the profile too: the profile is neither proven nor blamed.
        proof.seccomp_proven = None;
        return proof;
    }
    proof.sufficient = true;
    for cap in candidates {
        let without: Vec<String> = proof.kept.iter().filter(|c| *c != cap).cloned().collect();
        let seen = run(&without, Some(cap), under_profile);
        let difference = seen.outcome.differs(recorded, compare);
        let verdict = match (&difference, seen.consulted) {
            (Some(_), _) => Verdict::Needed,
            (None, Some(false)) => Verdict::Inconclusive,
            (None, _) => Verdict::NotNeeded,
        };
        match verdict {
            Verdict::Needed => proof.needed.push(cap.clone()),
            Verdict::Inconclusive => proof.inconclusive.push(cap.clone()),
            Verdict::NotNeeded => {
                proof.not_needed.push(cap.clone());
                proof.kept = without.clone();
            }
        }
        proof.runs.push(Run {
            without: Some(cap.clone()),
            capabilities: without,
            seccomp: under_profile,
            outcome: seen.outcome,
            difference,
            verdict: Some(verdict),
            consulted: seen.consulted,
            refused_syscalls: seen.refused_syscalls,
        });
    }
    proof
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn ok() -> Outcome {
        let mut o = Outcome::default();
        o.stdout.update(b"done\n");
        o
    }

    fn seen(outcome: Outcome) -> Seen {
        Seen {
            outcome,
            consulted: Some(true),
            refused_syscalls: Vec::new(),
        }
    }

    fn failed() -> Outcome {
        let mut o = ok();
        o.exit_code = 1;
        o
    }

    #[test]
    fn a_run_that_never_asked_for_the_capability_proves_nothing() {
        // chgrp run again: the group is already set, the kernel does not ask for CAP_CHOWN.
        let proof = prove(
            &caps(&["CAP_CHOWN", "CAP_KILL"]),
            &ok(),
            Compare::Output,
            false,
            |_, cap, _| Seen {
                outcome: ok(),
                consulted: cap.map(|c| c != "CAP_CHOWN"),
                refused_syscalls: Vec::new(),
            },
        );
        assert_eq!(proof.inconclusive, caps(&["CAP_CHOWN"]));
        assert_eq!(proof.not_needed, caps(&["CAP_KILL"]));
        assert_eq!(proof.kept, caps(&["CAP_CHOWN"]));
        assert_eq!(proof.runs[1].verdict, Some(Verdict::Inconclusive));
        // Unwatched runs are judged by their outcome alone.
        let proof = prove(
            &caps(&["CAP_CHOWN"]),
            &ok(),
            Compare::Output,
            false,
            |_, _, _| Seen {
                outcome: ok(),
                ..Seen::default()
            },
        );
        assert_eq!(proof.not_needed, caps(&["CAP_CHOWN"]));
    }

    #[test]
    fn a_capability_whose_removal_changes_nothing_is_not_needed() {
        // The chmod of another user's file: CAP_FOWNER decides, CAP_FSETID does not.
        let mut profiled = Vec::new();
        let proof = prove(
            &caps(&["CAP_FOWNER", "CAP_FSETID"]),
            &ok(),
            Compare::Output,
            true,
            |set, _, under_profile| {
                profiled.push(under_profile);
                seen(if set.iter().any(|c| c == "CAP_FOWNER") {
                    ok()
                } else {
                    failed()
                })
            },
        );
        assert!(proof.sufficient);
        assert_eq!(proof.seccomp_proven, Some(true));
        assert_eq!(proof.kept, caps(&["CAP_FOWNER"]));
        assert_eq!(proof.needed, caps(&["CAP_FOWNER"]));
        assert_eq!(proof.not_needed, caps(&["CAP_FSETID"]));
        let runs = &proof.runs;
        assert_eq!(runs.len(), 3, "the set, then one run per capability");
        assert_eq!(profiled, [true, true, true], "all under the proven profile");
        assert_eq!(runs[0].capabilities, caps(&["CAP_FOWNER", "CAP_FSETID"]));
        assert_eq!(runs[1].capabilities, caps(&["CAP_FSETID"]));
        assert_eq!(
            runs[1].difference.as_deref(),
            Some("exit status 1 instead of 0")
        );
        assert_eq!(runs[2].capabilities, caps(&["CAP_FOWNER"]));
        assert_eq!(runs[2].difference, None);
    }

    #[test]
    fn of_two_that_stand_in_for_each_other_one_is_kept() {
        // Either capability alone lets the command read the file.
        let either = |set: &[String], _: Option<&str>, _| {
            seen(
                if set
                    .iter()
                    .any(|c| c == "CAP_DAC_OVERRIDE" || c == "CAP_DAC_READ_SEARCH")
                {
                    ok()
                } else {
                    failed()
                },
            )
        };
        let proof = prove(
            &caps(&["CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH"]),
            &ok(),
            Compare::Output,
            false,
            either,
        );
        assert_eq!(proof.not_needed, caps(&["CAP_DAC_OVERRIDE"]));
        assert_eq!(proof.needed, caps(&["CAP_DAC_READ_SEARCH"]));
        // The last run was made without both: the one already removed stays removed.
        assert_eq!(proof.runs[2].capabilities, Vec::<String>::new());
        assert_eq!(proof.seccomp_proven, None);
    }

    #[test]
    fn a_failing_profile_is_told_apart_from_the_capabilities() {
        // Under the profile the command fails; without it, the set works: the profile is
        // unproven and the elimination goes on without it.
        let mut profiled = Vec::new();
        let proof = prove(
            &caps(&["CAP_CHOWN"]),
            &ok(),
            Compare::Output,
            true,
            |set, _, under_profile| {
                profiled.push(under_profile);
                seen(if under_profile || set.is_empty() {
                    failed()
                } else {
                    ok()
                })
            },
        );
        assert_eq!(profiled, [true, false, false]);
        assert_eq!(proof.seccomp_proven, Some(false));
        assert!(proof.sufficient);
        assert_eq!(proof.needed, caps(&["CAP_CHOWN"]));
    }

    #[test]
    fn a_set_that_does_not_reproduce_the_outcome_proves_nothing() {
        // The program checks its own capability sets and wants one capmon never saw asked
        // for: every run fails, and no capability is called needed because of that.
        let proof = prove(
            &caps(&["CAP_BPF", "CAP_PERFMON"]),
            &ok(),
            Compare::Exit,
            true,
            |_, _, _| seen(failed()),
        );
        assert!(!proof.sufficient);
        assert_eq!(proof.seccomp_proven, None, "the profile is not blamed");
        assert_eq!(
            proof.runs.len(),
            2,
            "with and without the profile, then stop"
        );
        assert!(proof.needed.is_empty() && proof.not_needed.is_empty());
        assert_eq!(proof.kept, caps(&["CAP_BPF", "CAP_PERFMON"]));
    }

    #[test]
    fn output_counts_unless_only_the_exit_status_is_compared() {
        let mut other = ok();
        other.stdout = Digest::default();
        other.stdout.update(b"different\n");
        assert_eq!(
            other.differs(&ok(), Compare::Output).as_deref(),
            Some("standard output differs (10 bytes instead of 5)")
        );
        assert_eq!(other.differs(&ok(), Compare::Exit), None);
        assert_eq!(ok().differs(&ok(), Compare::Output), None);
        let mut slow = ok();
        slow.timed_out = true;
        assert_eq!(
            slow.differs(&ok(), Compare::Exit).as_deref(),
            Some("timed out")
        );
        let mut killed = ok();
        (killed.exit_code, killed.signal) = (137, Some(9));
        assert_eq!(
            killed.differs(&ok(), Compare::Exit).as_deref(),
            Some("exit status 137 (signal 9) instead of 0")
        );
    }

    #[test]
    fn compare_modes_parse_with_clear_errors() {
        assert_eq!("".parse::<Compare>(), Ok(Compare::Output));
        assert_eq!("output".parse::<Compare>(), Ok(Compare::Output));
        assert_eq!("exit".parse::<Compare>(), Ok(Compare::Exit));
        let err = "exits".parse::<Compare>().expect_err("not a mode");
        assert!(err.contains("\"exits\"") && err.contains("`exit`"), "{err}");
    }

    #[test]
    fn digests_see_every_byte_and_chunking_does_not_matter() {
        let (mut a, mut b) = (Digest::default(), Digest::default());
        a.update(b"hello world");
        b.update(b"hello ");
        b.update(b"world");
        assert_eq!(a, b);
        let mut c = Digest::default();
        c.update(b"hello worle");
        assert_ne!(a, c);
        assert_eq!(Digest::default().bytes, 0);
    }
}
