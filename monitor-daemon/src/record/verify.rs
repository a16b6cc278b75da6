//! `capmon record --verify`: runs the recorded command again, each time in a fresh cgroup
//! watched by the probes, with the recommended set (under the generated seccomp profile) and
//! then once per recommended capability with one fewer than the set kept so far, and compares
//! each outcome with the recorded run's ([`capmon_core::report::verify`] decides the order and
//! the verdicts).
//!
//! Side effects: the command runs again, up to one time per recommended capability plus one
//! (plus one more when the profile changes the outcome);
//! whatever it does (files written, messages sent), it does again. Every run, the recorded one
//! included, reads no input (`/dev/null`), so that the runs are alike.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    process::Child,
    thread,
    time::{Duration, Instant},
};

use capmon_core::{
    names::{Arch, capability_number},
    report::{
        RecordReport,
        verify::{Compare, Digest, Outcome, Seen, Verification, prove},
    },
};
use monitor_common::context;

use crate::kernel::reader::KernelReader;

use super::{
    cgroup::RecordCgroup,
    exit_of,
    filter::{self, BpfProgram},
    launch::{self, Setup},
};

/// How to verify.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// What to compare.
    pub compare: Compare,
    /// Bound for one re-run; a run still going is killed and counts as a different outcome.
    pub timeout: Duration,
}

/// Proves `report`'s recommendation by re-running `command` (the recorded run ended as
/// `recorded`), in cgroups under `mount`, each watched by the probes of `reader` (which
/// capabilities the kernel asked for, which syscalls seccomp refused).
pub fn verify(
    mount: &Path,
    command: &[String],
    recorded: Outcome,
    report: &RecordReport,
    opts: &VerifyOptions,
    reader: KernelReader,
) -> Verification {
    let mut runner = Runner {
        mount: mount.to_owned(),
        command: command.to_vec(),
        timeout: opts.timeout,
        reader,
        runs: 0,
        total: report.analysis.recommended.len() + 1,
        notes: Vec::new(),
    };
    let candidates = report.analysis.recommended.clone();
    let program = match report.seccomp_profile.as_ref().map(filter::compile) {
        Some(Ok(program)) => Some(program),
        Some(Err(e)) => {
            runner
                .notes
                .push(format!("the generated profile cannot be applied: {e}"));
            None
        }
        None => {
            runner.notes.push(format!(
                "no seccomp profile to verify: {}",
                report
                    .seccomp_profile_error
                    .as_deref()
                    .unwrap_or("not generated")
            ));
            None
        }
    };
    let proof = prove(
        &candidates,
        &recorded,
        opts.compare,
        program.is_some(),
        |set, removed, under_profile| {
            let filter = program.clone().filter(|_| under_profile);
            runner.run(set, removed, filter)
        },
    );
    Verification {
        compare: opts.compare,
        recorded,
        runs: proof.runs,
        sufficient: proof.sufficient,
        seccomp_proven: proof.seccomp_proven,
        needed: proof.needed,
        not_needed: proof.not_needed,
        inconclusive: proof.inconclusive,
        notes: runner.notes,
    }
}

/// Runs the command again, one run at a time.
struct Runner {
    mount: PathBuf,
    command: Vec<String>,
    timeout: Duration,
    /// The probes, watching each run.
    reader: KernelReader,
    /// Runs so far.
    runs: usize,
    /// Runs at most.
    total: usize,
    /// What could not be done as asked.
    notes: Vec<String>,
}

impl Runner {
    /// One run with exactly `caps` (without `removed`), under `filter` when given; a run that
    /// cannot be prepared or started ends as a command that could not start (exit 127), with
    /// a note saying why.
    fn run(&mut self, caps: &[String], removed: Option<&str>, filter: Option<BpfProgram>) -> Seen {
        self.runs += 1;
        if std::io::stderr().is_terminal() {
            eprintln!(
                "capmon: verify: run {}/{} with {}{}",
                self.runs,
                self.total,
                if caps.is_empty() {
                    "no capabilities".to_owned()
                } else {
                    caps.join(",")
                },
                if filter.is_some() {
                    " under the seccomp profile"
                } else {
                    ""
                }
            );
        }
        match self.try_run(caps, removed, filter) {
            Ok(seen) => seen,
            Err(e) => {
                self.notes.push(format!("run {}: {e}", self.runs));
                Seen {
                    outcome: Outcome {
                        exit_code: super::EXIT_CANNOT_START,
                        ..Outcome::default()
                    },
                    ..Seen::default()
                }
            }
        }
    }

    fn try_run(
        &mut self,
        caps: &[String],
        removed: Option<&str>,
        filter: Option<BpfProgram>,
    ) -> Result<Seen, String> {
        let keep = launch::cap_mask(caps)?;
        let name = format!("capmon-verify-{}-{}", std::process::id(), self.runs);
        let cg = RecordCgroup::create(&self.mount, &name).map_err(|e| e.to_string())?;
        let result = self.run_in(&cg, keep, filter);
        cg.kill_all();
        let id = cg.id;
        if let Err(e) = cg.remove() {
            tracing::warn!("{e}");
        }
        let outcome = result?;
        Ok(self.watched(id, outcome, removed))
    }

    /// What the probes saw of the run in cgroup `id`: whether the kernel asked for `removed`
    /// (a check of the workload's own, after its exec), and the syscalls seccomp refused.
    fn watched(&mut self, id: u64, outcome: Outcome, removed: Option<&str>) -> Seen {
        let observed = match self.reader.observe(id) {
            Ok(o) => o,
            Err(e) => {
                self.notes.push(format!(
                    "run {}: the probes could not be read: {e}",
                    self.runs
                ));
                return Seen {
                    outcome,
                    ..Seen::default()
                };
            }
        };
        let ignored = context::BEFORE_EXEC | context::BORROWED_CRED;
        let consulted = removed.and_then(capability_number).map(|cap| {
            observed
                .cap_checks
                .iter()
                .any(|(k, _)| k.cap == cap && k.context & ignored == 0)
        });
        let arch = Arch::host();
        let mut refused_syscalls: Vec<String> = observed
            .denials
            .iter()
            .map(|(k, _)| {
                arch.syscall_name(k.syscall_nr)
                    .map_or_else(|| format!("syscall_{}", k.syscall_nr), str::to_owned)
            })
            .collect();
        refused_syscalls.sort();
        refused_syscalls.dedup();
        Seen {
            outcome,
            consulted,
            refused_syscalls,
        }
    }

    fn run_in(
        &self,
        cg: &RecordCgroup,
        keep: u64,
        filter: Option<BpfProgram>,
    ) -> Result<Outcome, String> {
        let setup = Setup {
            caps: Some(keep),
            filter,
        };
        let mut cmd = launch::command(cg, &self.command[0], &self.command[1..], setup)
            .map_err(|e| e.to_string())?;
        launch::piped(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", self.command[0]))?;
        let readers = [
            child
                .stdout
                .take()
                .map(|s| thread::spawn(|| launch::digest(s, None))),
            child
                .stderr
                .take()
                .map(|s| thread::spawn(|| launch::digest(s, None))),
        ];
        let (status, timed_out) = wait_bounded(&mut child, cg, self.timeout)?;
        // Whatever it left running holds its output open: stop it before the streams end.
        cg.kill_all();
        let [stdout, stderr] = readers.map(|r| {
            r.and_then(|h| h.join().ok())
                .unwrap_or_else(Digest::default)
        });
        let (exit_code, signal) = exit_of(status);
        Ok(Outcome {
            exit_code,
            signal,
            timed_out,
            stdout,
            stderr,
        })
    }
}

/// Waits for `child` up to `timeout`; past it, kills everything in `cg` and says so.
fn wait_bounded(
    child: &mut Child,
    cg: &RecordCgroup,
    timeout: Duration,
) -> Result<(std::process::ExitStatus, bool), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok((status, false)),
            Ok(None) if Instant::now() >= deadline => {
                cg.kill_all();
                let status = child.wait().map_err(|e| e.to_string())?;
                return Ok((status, true));
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for the command: {e}")),
        }
    }
}
