//! Seccomp profiles in Docker's JSON format (`defaultAction`, `defaultErrnoRet`, `archMap`,
//! `architectures`, `syscalls[]` with `names`/`action`/`args`/`includes`/`excludes`/`errnoRet`),
//! and the least-privilege profile generated from what a workload was seen to call.
//!
//! Fields capmon does not model are kept (`extra`) so that a profile read and written again
//! loses nothing. This file holds that model; the rest is one file per job:
//!
//! | file | what it owns |
//! | --- | --- |
//! | `validate` | parsing, and checking every value with errors that name the field |
//! | `resolve` | [`Target`] and [`KernelVersion`]: Docker's `includes`/`excludes`, the OCI form, [`Verdict`] |
//! | `generate` | Docker's default profile (compiled in) and least-privilege profiles |
//! | `arches` | [`ArchList`] (`--arch`) and [`translate`]: a syscall's names on other architectures |
//! | `multiarch` | a generated profile for other or several architectures, and its OCI form |
//! | `replay` | recorded syscalls against a profile ([`Replay`]), two profiles compared ([`ProfileDiff`]) |
//! | `applied` | a container's syscalls against the profile its runtime applied ([`AppliedDiff`]) |
//! | `tables` | names of actions, operators, architectures, Docker's default capabilities |

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod applied;
mod arches;
mod generate;
mod multiarch;
mod replay;
mod resolve;
mod tables;
mod validate;

pub use applied::{AppliedDiff, Refused};
pub use arches::{ArchList, ArchListError, ILP32_VARIANTS, REPLACEMENTS, translate};
pub use replay::{ProfileDiff, Replay, WouldDeny};
pub use resolve::{KernelVersion, Target, Verdict};
pub use tables::{ACTIONS, DOCKER_DEFAULT_CAPS, GO_ARCHES, OPERATORS, SCMP_ARCHES};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The text is not a Docker-format profile.
    #[error("invalid seccomp profile: {0} (line {line}, column {column})", line = .0.line(), column = .0.column())]
    Parse(#[source] serde_json::Error),
    /// A field holds a value capmon cannot interpret; `field` is its JSON path
    /// (`syscalls[3].names[2]`).
    #[error("invalid seccomp profile: {field}: {problem}")]
    Invalid {
        /// JSON path of the field.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A syscall number has no name on the architecture: capmon does not guess.
    #[error(
        "syscall number {number} has no name on {arch}: capmon will not write a profile it would \
         have to guess about (is the syscall table older than the kernel?)"
    )]
    UnnamedSyscall {
        /// The number.
        number: u32,
        /// The architecture.
        arch: &'static str,
    },
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> SeccompError {
    SeccompError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// One entry of `archMap`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    /// `SCMP_ARCH_X86_64`, ...
    pub architecture: String,
    /// Architectures allowed with it (`SCMP_ARCH_X86` for 32-bit binaries); `null` in Docker's
    /// own files when there are none.
    pub sub_architectures: Option<Vec<String>>,
    /// Fields capmon does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A condition on a rule: the rule applies when all of these hold (`includes`) or is skipped
/// when any holds (`excludes`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Capabilities (`CAP_SYS_ADMIN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<Vec<String>>,
    /// Go architecture names (`amd64`, `arm64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arches: Option<Vec<String>>,
    /// Minimum kernel version (`"4.8"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
    /// Fields capmon does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An argument comparison of a rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgFilter {
    /// Argument index, 0-based.
    pub index: u32,
    /// Value compared against.
    pub value: u64,
    /// Second value for `SCMP_CMP_MASKED_EQ`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_two: Option<u64>,
    /// `SCMP_CMP_EQ`, `SCMP_CMP_MASKED_EQ`, ...
    pub op: String,
}

/// One entry of `syscalls`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    /// Syscall names.
    #[serde(default)]
    pub names: Vec<String>,
    /// `SCMP_ACT_ALLOW`, `SCMP_ACT_ERRNO`, ...
    pub action: String,
    /// Argument conditions (all must hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<ArgFilter>>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Applies only when this holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<Filter>,
    /// Skipped when this holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Filter>,
    /// errno for `SCMP_ACT_ERRNO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// Fields capmon does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A Docker-format seccomp profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// Action for syscalls no rule matches.
    pub default_action: String,
    /// errno of the default action when it is `SCMP_ACT_ERRNO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// Architectures (older form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    /// Architectures with their sub-architectures (newer form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch_map: Option<Vec<ArchMap>>,
    /// Rules, in order.
    #[serde(default)]
    pub syscalls: Vec<SyscallRule>,
    /// Fields capmon does not model (`flags`, `listenerPath`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl SyscallRule {
    /// The rule's syscall names (`names`, or the older single `name`).
    pub fn all_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.names.iter().map(String::as_str).collect();
        if let Some(Value::String(name)) = self.extra.get("name") {
            v.push(name);
        }
        v
    }
}

impl Profile {
    /// Pretty JSON, as Docker writes it.
    pub fn to_json_pretty(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Docker's default profile: the project's verbatim copy (`data/docker-default-seccomp.json`)
/// of the one in the fixture collection this project was started from; a test below compares
/// the two where that collection is present.
#[cfg(test)]
fn fixture() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/docker-default-seccomp.json"
    );
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// An x86_64 container holding `caps` on `kernel`.
#[cfg(test)]
fn target(caps: &[&str], kernel: KernelVersion) -> Target {
    Target {
        arch: crate::names::Arch::X86_64,
        caps: caps.iter().map(|c| c.to_string()).collect(),
        kernel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_the_shared_fixture_verbatim() {
        let shared = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/docker-default-seccomp.json"
        );
        match std::fs::read_to_string(shared) {
            Ok(text) => assert_eq!(text, fixture()),
            // CI always has ../shared; a clone elsewhere has only the copy.
            Err(e) => eprintln!("skipped: {shared}: {e}"),
        }
    }

    #[test]
    fn docker_default_profile_round_trips_without_losing_a_field() {
        let text = fixture();
        let profile = Profile::from_json(&text).expect("parse Docker's default profile");
        assert_eq!(profile.default_action, "SCMP_ACT_ERRNO");
        assert_eq!(profile.default_errno_ret, Some(1));
        assert_eq!(profile.syscalls.len(), 33);
        let original: Value = serde_json::from_str(&text).expect("fixture is JSON");
        let again: Value = serde_json::from_str(&profile.to_json_pretty()).expect("ours is JSON");
        assert_eq!(original, again);
    }
}
