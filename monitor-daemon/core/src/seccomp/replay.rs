//! A profile against what a workload did: [`Replay`] runs recorded syscall names through a
//! profile ("would it break?"), [`ProfileDiff`] compares what two profiles allow.

use serde::Serialize;

use super::{Profile, Target, Verdict};

/// A syscall a profile would refuse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WouldDeny {
    /// Syscall name.
    pub name: String,
    /// The action (`SCMP_ACT_ERRNO`, `SCMP_ACT_KILL_PROCESS`, ...).
    pub action: String,
    /// The errno the workload would see (`EPERM`), none for killing actions.
    pub errno: Option<String>,
}

/// Recorded syscalls replayed against a profile: what it would have done to them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Replay {
    /// Syscalls the workload made that the profile refuses: it would break.
    pub would_deny: Vec<WouldDeny>,
    /// Syscalls the profile allows only for some argument values (capmon does not record
    /// arguments): check these by running the workload under the profile.
    pub depends_on_arguments: Vec<String>,
    /// How many of the recorded syscalls it allows.
    pub allowed: usize,
}

impl Replay {
    /// Replays `syscalls` (names) against `profile` for `target`.
    pub fn run<S: AsRef<str>>(profile: &Profile, target: &Target, syscalls: &[S]) -> Replay {
        let mut out = Replay::default();
        for name in syscalls {
            let name = name.as_ref();
            match profile.verdict(target, name) {
                Verdict::Allowed => out.allowed += 1,
                Verdict::DependsOnArguments => out.depends_on_arguments.push(name.to_owned()),
                Verdict::Denied { action, errno } => out.would_deny.push(WouldDeny {
                    name: name.to_owned(),
                    action,
                    errno: errno.map(crate::names::errno_name),
                }),
            }
        }
        out
    }
}

/// A generated profile compared with a base profile (Docker's default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProfileDiff {
    /// Allowed by the generated profile, not unconditionally by the base.
    pub only_in_generated: Vec<String>,
    /// Allowed by the base, not by the generated profile: the attack surface removed.
    pub only_in_base: Vec<String>,
    /// Allowed by both.
    pub in_both: usize,
}

impl ProfileDiff {
    /// Compares what `generated` and `base` allow for `target`.
    pub fn between(generated: &Profile, base: &Profile, target: &Target) -> ProfileDiff {
        let g = generated.allowed(target);
        let b = base.allowed(target);
        ProfileDiff {
            only_in_generated: g.difference(&b).cloned().collect(),
            only_in_base: b.difference(&g).cloned().collect(),
            in_both: g.intersection(&b).count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{KernelVersion, target};
    use super::*;
    use crate::names::Arch;

    #[test]
    fn replay_and_diff() {
        let p = Profile::docker_default();
        let t = target(&["CAP_CHOWN"], KernelVersion(6, 18));
        let r = Replay::run(&p, &t, &["read", "mount", "socket", "clone3", "chroot"]);
        assert_eq!(r.allowed, 1);
        assert_eq!(r.depends_on_arguments, vec!["socket"]);
        let denied: Vec<(&str, Option<&str>)> = r
            .would_deny
            .iter()
            .map(|d| (d.name.as_str(), d.errno.as_deref()))
            .collect();
        assert_eq!(
            denied,
            vec![
                ("mount", Some("EPERM")),
                ("clone3", Some("ENOSYS")),
                ("chroot", Some("EPERM"))
            ]
        );
        let generated = Profile::allow_only(Arch::X86_64, &["read", "write", "mount"]);
        let d = ProfileDiff::between(&generated, &p, &t);
        assert_eq!(d.only_in_generated, vec!["mount"]);
        assert_eq!(d.in_both, 2);
        assert!(d.only_in_base.contains(&"openat".to_owned()));
        assert!(!d.only_in_base.contains(&"read".to_owned()));
    }
}
