//! A container's observed syscalls against the seccomp profile its runtime applied (the OCI
//! form, read from its bundle): what that profile would refuse of what the container did, and
//! which of the syscalls it allows the container never made.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{Profile, Target, Verdict};

/// One observed syscall the applied profile refuses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refused {
    /// Syscall name.
    pub syscall: String,
    /// What the profile does with it.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The observed syscalls against the applied profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppliedDiff {
    /// The profile's default action.
    pub default_action: String,
    /// Observed syscalls the profile refuses, by name.
    pub would_deny: Vec<Refused>,
    /// Observed syscalls it allows for some argument values only (capmon does not record
    /// arguments: Docker's default allows `clone` without namespace flags).
    pub depends_on_arguments: Vec<String>,
    /// Syscalls the profile allows that the container never made, sorted.
    pub allowed_unused: Vec<String>,
    /// How many syscalls of the architecture the profile allows unconditionally.
    pub allowed: usize,
}

impl AppliedDiff {
    /// Compares `observed` (syscall names: made, or refused by seccomp) with `profile` as
    /// the runtime applied it. The OCI form has no `includes`/`excludes` left, so `target`
    /// matters only by its architecture.
    pub fn between(profile: &Profile, target: &Target, observed: &BTreeSet<String>) -> Self {
        Self::with_allowed(profile, target, &profile.allowed(target), observed)
    }

    /// [`AppliedDiff::between`] with `allowed`, the profile's [`Profile::allowed`] set for
    /// `target`, computed once for every container that got the same profile.
    pub fn with_allowed(
        profile: &Profile,
        target: &Target,
        allowed: &BTreeSet<String>,
        observed: &BTreeSet<String>,
    ) -> Self {
        let mut would_deny = Vec::new();
        let mut depends_on_arguments = Vec::new();
        for name in observed {
            match profile.verdict(target, name) {
                Verdict::Allowed => {}
                Verdict::DependsOnArguments => depends_on_arguments.push(name.clone()),
                verdict => would_deny.push(Refused {
                    syscall: name.clone(),
                    verdict,
                }),
            }
        }
        AppliedDiff {
            default_action: profile.default_action.clone(),
            would_deny,
            depends_on_arguments,
            allowed_unused: allowed.difference(observed).cloned().collect(),
            allowed: allowed.len(),
        }
    }

    /// Names of the observed syscalls the profile refuses.
    pub fn would_deny_names(&self) -> Vec<&str> {
        self.would_deny.iter().map(|r| r.syscall.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DOCKER_DEFAULT_CAPS, KernelVersion, target};
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn docker_default_as_applied_refuses_nothing_a_shell_does() {
        let t = target(DOCKER_DEFAULT_CAPS, KernelVersion(6, 18));
        // What runc receives from Docker: the default profile resolved for the container.
        let applied = Profile::docker_default().resolve(&t);
        let observed = set(&["read", "write", "fchownat", "execve", "exit_group", "clone"]);
        let d = AppliedDiff::between(&applied, &t, &observed);
        assert!(d.would_deny.is_empty(), "{:?}", d.would_deny);
        // clone is allowed without namespace flags only.
        assert_eq!(d.depends_on_arguments, ["clone"]);
        assert_eq!(d.default_action, "SCMP_ACT_ERRNO");
        assert!(d.allowed > 300, "{}", d.allowed);
        assert_eq!(d.allowed_unused.len(), d.allowed - (observed.len() - 1));
        assert!(d.allowed_unused.iter().any(|s| s == "openat"));
        assert!(!d.allowed_unused.iter().any(|s| s == "fchownat"));
    }

    #[test]
    fn a_custom_profile_lacking_a_syscall_would_deny_it() {
        let t = target(DOCKER_DEFAULT_CAPS, KernelVersion(6, 18));
        let custom = Profile::parse(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"syscalls":[
                {"names":["read","write","execve","exit_group"],"action":"SCMP_ACT_ALLOW"},
                {"names":["mount"],"action":"SCMP_ACT_KILL_PROCESS"}]}"#,
        )
        .expect("profile");
        let observed = set(&["read", "write", "fchownat", "execve", "exit_group", "mount"]);
        let d = AppliedDiff::between(&custom, &t, &observed);
        assert_eq!(d.would_deny_names(), ["fchownat", "mount"]);
        assert_eq!(
            d.would_deny[0].verdict,
            Verdict::Denied {
                action: "SCMP_ACT_ERRNO".into(),
                errno: Some(1)
            }
        );
        assert_eq!(d.allowed, 4);
        assert!(d.allowed_unused.is_empty());
        let json = serde_json::to_value(&d).expect("json");
        assert_eq!(json["would_deny"][1]["verdict"], "denied");
        assert_eq!(json["would_deny"][1]["action"], "SCMP_ACT_KILL_PROCESS");
    }
}
