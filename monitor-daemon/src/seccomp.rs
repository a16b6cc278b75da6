//! Seccomp profiles in Docker's JSON format (`defaultAction`, `defaultErrnoRet`, `archMap`,
//! `architectures`, `syscalls[]` with `names`/`action`/`args`/`includes`/`excludes`/`errnoRet`),
//! and the least-privilege profile generated from what a workload was seen to call.
//!
//! Fields capmon does not model are kept (`extra`) so that a profile read and written again
//! loses nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::names::Arch;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The text is not a Docker-format profile.
    #[error("invalid seccomp profile: {0} (line {line}, column {column})", line = .0.line(), column = .0.column())]
    Parse(#[source] serde_json::Error),
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

impl Profile {
    /// Parses a profile.
    pub fn from_json(text: &str) -> Result<Self, SeccompError> {
        serde_json::from_str(text).map_err(SeccompError::Parse)
    }

    /// Pretty JSON, as Docker writes it.
    pub fn to_json_pretty(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The least-privilege profile: everything not listed fails with `EPERM`, the listed
    /// syscalls are allowed, for one architecture.
    pub fn allow_only<S: AsRef<str>>(arch: Arch, syscalls: &[S]) -> Self {
        let mut names: Vec<String> = syscalls.iter().map(|s| s.as_ref().to_owned()).collect();
        names.sort();
        names.dedup();
        Profile {
            default_action: "SCMP_ACT_ERRNO".into(),
            default_errno_ret: Some(libc::EPERM as u32),
            architectures: Some(vec![arch.scmp_name().to_owned()]),
            arch_map: None,
            syscalls: vec![SyscallRule {
                names,
                action: "SCMP_ACT_ALLOW".into(),
                args: None,
                comment: None,
                includes: None,
                excludes: None,
                errno_ret: None,
                extra: Map::new(),
            }],
            extra: Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> String {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/docker-default-seccomp.json"
        );
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
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

    #[test]
    fn generated_profile_has_the_docker_shape() {
        let p = Profile::allow_only(Arch::X86_64, &["write", "read", "write", "execve"]);
        let v: Value = serde_json::from_str(&p.to_json_pretty()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["execve", "read", "write"], "action": "SCMP_ACT_ALLOW"}]
            })
        );
    }

    #[test]
    fn malformed_profiles_name_the_position() {
        let err = Profile::from_json("{\n  \"defaultAction\": 5\n}").expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("line 2"), "{msg}");
        let err = Profile::from_json("{\"syscalls\": []}").expect_err("must fail");
        assert!(err.to_string().contains("defaultAction"), "{err}");
    }
}
