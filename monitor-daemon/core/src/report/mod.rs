//! What `capmon record` found, as data (JSON) and as text: built from the kernel side's
//! counts and first sightings by pure functions, unit tested on synthetic input. This file
//! holds the report's types; `facts` classifies and names what was observed, `assemble`
//! completes a report (generated profile, analysis, Docker's default), `text` renders it for a
//! terminal.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use monitor_common::{CapEvent, CapKey, DenyEvent, DenyKey};
use serde::Serialize;

use crate::{
    classify::CapClass,
    names::Arch,
    recommend::{Advice, Analysis},
    seccomp::{KernelVersion, Profile, ProfileDiff, Replay},
};

mod assemble;
mod facts;
#[cfg(test)]
mod testdata;
mod text;
pub mod verify;

pub use assemble::{assemble, build};
pub use facts::facts;
pub use text::render_text;
pub use verify::Verification;

/// Everything the kernel side recorded for one cgroup. The evidence, stacks and counters may
/// be shared by the cgroups of one snapshot (their keys name the cgroup; a stack hash always
/// names the same frames): they are behind `Arc`s, one copy per snapshot.
#[derive(Debug, Default)]
pub struct Observed {
    /// (cgroup, cap, result, stack) -> count.
    pub cap_checks: Vec<(CapKey, u64)>,
    /// First sighting of each cap-check key (evidence).
    pub cap_events: Arc<HashMap<CapKey, CapEvent>>,
    /// Kernel frames (symbol names, innermost first) by stack hash.
    pub stacks: Arc<HashMap<u64, Arc<Vec<String>>>>,
    /// Syscall numbers entered by the workload (from its first exec on).
    pub syscalls: Vec<u32>,
    /// Syscall numbers the container runtime entered after installing the seccomp filter,
    /// before the workload's exec.
    pub runtime_syscalls: Vec<u32>,
    /// (cgroup, syscall, errno) -> count.
    pub denials: Vec<(DenyKey, u64)>,
    /// First sighting of each denial key.
    pub deny_events: Arc<HashMap<DenyKey, DenyEvent>>,
    /// Kernel-side loss counters.
    pub counters: Arc<BTreeMap<&'static str, u64>>,
    /// Ring-buffer records that could not be decoded.
    pub undecodable: u64,
}

/// One capability check site, with evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CapCheck {
    /// `CAP_CHOWN`.
    pub capability: String,
    /// `used`, `denied`, `probe` or `ignored`.
    pub class: CapClass,
    /// Why it has that class.
    pub reason: String,
    /// `granted` or `refused`.
    pub result: &'static str,
    /// Number of checks at this site.
    pub count: u64,
    /// The no-audit frame that made it a probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noaudit_caller: Option<String>,
    /// Process name of the first check.
    pub comm: String,
    /// Thread id of the first check.
    pub pid: u32,
    /// Syscall the first check happened in, when known.
    pub syscall: Option<String>,
    /// The kernel function that asked (first frame that is not generic capability plumbing).
    pub site: Option<String>,
    /// Kernel frames below `cap_capable`, innermost first (at most 8).
    pub stack: Vec<String>,
}

/// Capabilities by class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Granted, audited checks: what the command needs.
    pub used: Vec<String>,
    /// Refused, audited checks: what the command lacked.
    pub denied: Vec<String>,
    /// Only no-audit checks or refusals that failed no syscall (never a reason to keep or add).
    pub probe: Vec<String>,
    /// Checks that were not the workload's own (borrowed credentials, runtime setup).
    pub ignored: Vec<String>,
    /// Proven needed by `capmon record --verify` (removing it changed the outcome); only
    /// after a verification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needed: Option<Vec<String>>,
    /// Consulted (used or refused), but proven not needed by `capmon record --verify`
    /// (removing it changed nothing); only after a verification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_needed: Option<Vec<String>>,
    /// Every check site, with evidence.
    pub checks: Vec<CapCheck>,
}

/// A syscall seccomp refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// Syscall name.
    pub name: String,
    /// Syscall number.
    pub number: u32,
    /// `EPERM`.
    pub errno: String,
    /// Number of denials.
    pub count: u64,
    /// Process name of the first denial.
    pub comm: Option<String>,
}

/// Syscalls.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Syscalls {
    /// Names of the syscalls the workload entered, sorted.
    pub used: Vec<String>,
    /// Syscalls the container runtime made under the workload's seccomp filter before the
    /// workload's exec (empty outside containers or without a filter); the generated profile
    /// allows them.
    pub runtime: Vec<String>,
    /// Syscalls refused by seccomp.
    pub denied: Vec<Denial>,
}

/// The result of `capmon record`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordReport {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Its exit code (128 + signal when killed by one).
    pub exit_code: i32,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// Capabilities by class.
    pub capabilities: Capabilities,
    /// Syscalls used and denied.
    pub syscalls: Syscalls,
    /// Capabilities the workload held.
    pub granted: Vec<String>,
    /// Granted against used: what to drop, keep and add, with warnings.
    pub analysis: Analysis,
    /// Least-privilege profile: the syscalls used plus what the runtime needs after
    /// installing the filter. `None` when it cannot be written without guessing.
    pub seccomp_profile: Option<Profile>,
    /// Why there is no profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile_error: Option<String>,
    /// Docker's default seccomp profile against this workload.
    pub docker_default: DockerDefault,
    /// What the kernel side could not record (all 0 when nothing was lost).
    pub lost: BTreeMap<String, u64>,
    /// What `capmon record --verify` proved by running the command again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// The architecture the report was built for ([`BuildContext::arch`]); not in the JSON.
    #[serde(skip)]
    pub arch: Arch,
    /// The kernel the report was built for ([`BuildContext::kernel`]); not in the JSON.
    #[serde(skip)]
    pub kernel: KernelVersion,
}

impl RecordReport {
    /// The advice for this report's workload, called `name` (container name or command):
    /// its analysis and generated profile, for the architecture and kernel it was built for.
    pub fn advice<'a>(&'a self, name: &'a str) -> Advice<'a> {
        Advice {
            name,
            analysis: &self.analysis,
            profile: self.seccomp_profile.as_ref().ok_or(
                self.seccomp_profile_error
                    .as_deref()
                    .unwrap_or("not generated"),
            ),
            arch: self.arch,
            kernel: self.kernel,
        }
    }
}

/// Docker's default seccomp profile, resolved for the workload's capabilities, this
/// architecture and kernel, against what the workload did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DockerDefault {
    /// The recorded syscalls replayed against it: what would break under it.
    pub replay: Replay,
    /// The generated profile compared with it (empty when there is no generated profile).
    pub diff: ProfileDiff,
}

/// What [`build`] needs beyond the kernel's observations.
#[derive(Clone, Debug)]
pub struct BuildContext {
    /// The architecture syscall numbers belong to.
    pub arch: Arch,
    /// Capabilities the workload held (`CAP_*`).
    pub granted: Vec<String>,
    /// Failed posture checks (`check`, `detail`).
    pub findings: Vec<(String, String)>,
    /// Effective uid of the workload, when known.
    pub uid: Option<u32>,
    /// The kernel, for Docker's `minKernel` conditions.
    pub kernel: KernelVersion,
    /// Whether the syscall history is complete (recorded from the workload's start); a
    /// profile is generated only then.
    pub complete: bool,
}

impl BuildContext {
    /// For a command or container capmon saw start on this machine, holding `granted`.
    pub fn new(granted: Vec<String>) -> Self {
        BuildContext {
            arch: Arch::host(),
            granted,
            findings: Vec::new(),
            uid: None,
            kernel: KernelVersion::running().unwrap_or(KernelVersion(0, 0)),
            complete: true,
        }
    }
}
