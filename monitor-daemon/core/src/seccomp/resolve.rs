//! What Docker does with a profile for one container: [`Target`] (architecture, bounding set,
//! kernel) decides which rules' `includes`/`excludes` hold; [`Profile::resolve`] gives the
//! OCI form runc receives, [`Profile::verdict`] what happens to one syscall.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Map;

use super::{Filter, Profile, SyscallRule};
use crate::names::Arch;

/// A kernel version, `major.minor`, as `minKernel` compares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion(pub u32, pub u32);

impl KernelVersion {
    /// Parses `6.18`, `6.18.0-1-amd64` (the first two numbers).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(['.', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(KernelVersion(major, minor))
    }

    /// The running kernel's version.
    pub fn running() -> Option<Self> {
        let uts = nix::sys::utsname::uname().ok()?;
        KernelVersion::parse(&uts.release().to_string_lossy())
    }
}

/// What Docker resolves a profile's conditions against when it starts a container.
#[derive(Clone, Debug)]
pub struct Target {
    /// The architecture.
    pub arch: Arch,
    /// The container's bounding set (`CAP_CHOWN`, ...).
    pub caps: BTreeSet<String>,
    /// The kernel.
    pub kernel: KernelVersion,
}

/// What a profile does with one syscall.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Allowed (also `SCMP_ACT_LOG`, which allows and logs).
    Allowed,
    /// Refused: `action` with `errno` when it is `SCMP_ACT_ERRNO` (or `SCMP_ACT_TRACE` with no
    /// tracer: `ENOSYS`).
    Denied {
        /// The action.
        action: String,
        /// The errno the caller sees, when it sees one (a killing action has none).
        errno: Option<u32>,
    },
    /// Allowed for some argument values only (capmon does not record arguments).
    DependsOnArguments,
}

impl Verdict {
    fn of_action(action: &str, errno_ret: Option<u32>) -> Self {
        match action {
            "SCMP_ACT_ALLOW" | "SCMP_ACT_LOG" => Verdict::Allowed,
            "SCMP_ACT_ERRNO" => Verdict::Denied {
                action: action.to_owned(),
                errno: Some(errno_ret.unwrap_or(libc::EPERM as u32)),
            },
            "SCMP_ACT_TRACE" => Verdict::Denied {
                action: action.to_owned(),
                errno: Some(libc::ENOSYS as u32),
            },
            _ => Verdict::Denied {
                action: action.to_owned(),
                errno: None,
            },
        }
    }
}

impl Target {
    /// Whether the target's kernel is `min` (`"4.8"`) or newer; a version that does not
    /// parse never holds.
    fn kernel_at_least(&self, min: &str) -> bool {
        KernelVersion::parse(min).is_some_and(|k| self.kernel >= k)
    }
}

impl Filter {
    /// For `excludes`: whether any of its conditions holds for `target` on a host of Docker's
    /// architecture `host` (`amd64`).
    fn any_holds(&self, host: &str, target: &Target) -> bool {
        self.arches
            .as_ref()
            .is_some_and(|a| a.iter().any(|a| a == host))
            || self
                .caps
                .as_ref()
                .is_some_and(|caps| caps.iter().any(|c| target.caps.contains(c)))
            || self
                .min_kernel
                .as_ref()
                .is_some_and(|k| target.kernel_at_least(k))
    }

    /// For `includes`: whether all of its conditions hold for `target` on a host of Docker's
    /// architecture `host` (an empty `arches` list is no condition).
    fn all_hold(&self, host: &str, target: &Target) -> bool {
        self.arches
            .as_ref()
            .is_none_or(|a| a.is_empty() || a.iter().any(|a| a == host))
            && self
                .caps
                .as_ref()
                .is_none_or(|caps| caps.iter().all(|c| target.caps.contains(c)))
            && self
                .min_kernel
                .as_ref()
                .is_none_or(|k| target.kernel_at_least(k))
    }
}

impl SyscallRule {
    /// Whether the rule is in force for `target`: no condition of `excludes` holds and every
    /// condition of `includes` does.
    fn applies(&self, target: &Target) -> bool {
        self.applies_on(target.arch.go_name(), target)
    }

    /// Whether the rule is in force for `target` on a host of Docker's architecture `host`
    /// (`amd64`, `arm64`, `x86`, `arm`: what Docker compares `arches` with).
    pub(super) fn applies_on(&self, host: &str, target: &Target) -> bool {
        !self
            .excludes
            .as_ref()
            .is_some_and(|f| f.any_holds(host, target))
            && self
                .includes
                .as_ref()
                .is_none_or(|f| f.all_hold(host, target))
    }

    /// The rule as the runtime takes it: conditions and comment removed.
    pub(super) fn unconditional(&self) -> SyscallRule {
        SyscallRule {
            names: self.all_names().into_iter().map(str::to_owned).collect(),
            action: self.action.clone(),
            args: self.args.clone(),
            comment: None,
            includes: None,
            excludes: None,
            errno_ret: self.errno_ret,
            extra: Map::new(),
        }
    }
}

impl Profile {
    /// The profile as Docker hands it to the runtime for `target` (the OCI `linux.seccomp`
    /// form): rules whose `includes`/`excludes` do not hold are dropped, the conditions and
    /// comments removed, `archMap` reduced to the target's entry, as moby's `setupSeccomp`
    /// does.
    pub fn resolve(&self, target: &Target) -> Profile {
        let mut architectures = self.architectures.clone().unwrap_or_default();
        for m in self.arch_map.iter().flatten() {
            if m.architecture == target.arch.scmp_name() {
                architectures.push(m.architecture.clone());
                architectures.extend(m.sub_architectures.iter().flatten().cloned());
            }
        }
        let syscalls = self
            .syscalls
            .iter()
            .filter(|r| r.applies(target))
            .map(SyscallRule::unconditional)
            .collect();
        self.runtime_form(architectures, syscalls)
    }

    /// The OCI form with `architectures` and `syscalls`: the default action and the fields
    /// runtimes take (`flags`, `listenerPath`, `listenerMetadata`) kept.
    pub(super) fn runtime_form(
        &self,
        architectures: Vec<String>,
        syscalls: Vec<SyscallRule>,
    ) -> Profile {
        let mut extra = self.extra.clone();
        extra.retain(|k, _| matches!(k.as_str(), "flags" | "listenerPath" | "listenerMetadata"));
        Profile {
            default_action: self.default_action.clone(),
            default_errno_ret: self.default_errno_ret,
            architectures: (!architectures.is_empty()).then_some(architectures),
            arch_map: None,
            syscalls,
            extra,
        }
    }

    /// What the profile does with syscall `name` in a container described by `target`.
    /// An unconditional rule decides (the first that applies); otherwise a rule with argument
    /// conditions makes the answer depend on the arguments; otherwise the default action.
    pub fn verdict(&self, target: &Target, name: &str) -> Verdict {
        let mut conditional: Option<&SyscallRule> = None;
        for rule in self.syscalls.iter().filter(|r| r.applies(target)) {
            if !rule.all_names().contains(&name) {
                continue;
            }
            if rule.args.as_ref().is_none_or(Vec::is_empty) {
                return Verdict::of_action(&rule.action, rule.errno_ret);
            }
            conditional.get_or_insert(rule);
        }
        let default = Verdict::of_action(&self.default_action, self.default_errno_ret);
        match conditional {
            Some(rule) if Verdict::of_action(&rule.action, rule.errno_ret) != default => {
                Verdict::DependsOnArguments
            }
            _ => default,
        }
    }

    /// Every syscall of `target.arch` the profile allows unconditionally, sorted.
    pub fn allowed(&self, target: &Target) -> BTreeSet<String> {
        let mut candidates: BTreeSet<&str> =
            self.syscalls.iter().flat_map(|r| r.all_names()).collect();
        if Verdict::of_action(&self.default_action, self.default_errno_ret) == Verdict::Allowed {
            // A default-allow profile allows everything it does not name: list the table.
            candidates.extend(target.arch.syscall_names());
        }
        candidates
            .into_iter()
            .filter(|n| target.arch.syscall_number(n).is_some())
            .filter(|n| self.verdict(target, n) == Verdict::Allowed)
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::{DOCKER_DEFAULT_CAPS, target};
    use super::*;

    #[test]
    fn docker_default_verdicts_follow_caps_arch_and_kernel() {
        let p = Profile::docker_default();
        let new = KernelVersion(6, 18);
        let docker = target(DOCKER_DEFAULT_CAPS, new);
        let enosys = Verdict::Denied {
            action: "SCMP_ACT_ERRNO".into(),
            errno: Some(38),
        };
        let eperm = Verdict::Denied {
            action: "SCMP_ACT_ERRNO".into(),
            errno: Some(1),
        };
        // clone3 is refused with ENOSYS (so that libc falls back to clone) unless SYS_ADMIN.
        assert_eq!(p.verdict(&docker, "clone3"), enosys);
        let admin = target(&["CAP_SYS_ADMIN"], new);
        assert_eq!(p.verdict(&admin, "clone3"), Verdict::Allowed);
        assert_eq!(p.verdict(&docker, "mount"), eperm);
        assert_eq!(p.verdict(&admin, "mount"), Verdict::Allowed);
        // chroot needs CAP_SYS_CHROOT in the bounding set.
        assert_eq!(p.verdict(&docker, "chroot"), Verdict::Allowed);
        assert_eq!(p.verdict(&target(&[], new), "chroot"), eperm);
        // ptrace from kernel 4.8 on.
        assert_eq!(p.verdict(&docker, "ptrace"), Verdict::Allowed);
        assert_eq!(
            p.verdict(&target(DOCKER_DEFAULT_CAPS, KernelVersion(4, 4)), "ptrace"),
            eperm
        );
        // Argument conditions.
        assert_eq!(p.verdict(&docker, "socket"), Verdict::DependsOnArguments);
        assert_eq!(
            p.verdict(&docker, "personality"),
            Verdict::DependsOnArguments
        );
        assert_eq!(p.verdict(&docker, "clone"), Verdict::DependsOnArguments);
        // Architecture conditions.
        assert_eq!(p.verdict(&docker, "arch_prctl"), Verdict::Allowed);
        let arm = Target {
            arch: Arch::Aarch64,
            ..docker.clone()
        };
        assert_eq!(p.verdict(&arm, "arch_prctl"), eperm);
        assert_eq!(p.verdict(&docker, "read"), Verdict::Allowed);
        let allowed = p.allowed(&docker);
        assert!(allowed.contains("read") && allowed.contains("chroot"));
        assert!(!allowed.contains("mount") && !allowed.contains("socket"));
        assert!(!allowed.contains("stime"), "not an x86_64 syscall");
    }

    #[test]
    fn resolving_gives_the_oci_form_docker_hands_to_runc() {
        let p = Profile::docker_default();
        let oci = p.resolve(&target(DOCKER_DEFAULT_CAPS, KernelVersion(6, 18)));
        assert_eq!(
            oci.architectures.as_deref(),
            Some(
                &[
                    "SCMP_ARCH_X86_64".to_owned(),
                    "SCMP_ARCH_X86".into(),
                    "SCMP_ARCH_X32".into()
                ][..]
            )
        );
        assert!(oci.arch_map.is_none());
        assert!(
            oci.syscalls
                .iter()
                .all(|r| r.includes.is_none() && r.excludes.is_none())
        );
        let names: Vec<&str> = oci.syscalls.iter().flat_map(|r| r.all_names()).collect();
        assert!(names.contains(&"chroot") && names.contains(&"clone3"));
        assert!(
            !names.contains(&"mount"),
            "the CAP_SYS_ADMIN rule is dropped"
        );
        assert!(!names.contains(&"riscv_flush_icache"));
        let v: Value = serde_json::from_str(&oci.to_json_pretty()).expect("json");
        assert_eq!(v["defaultErrnoRet"], 1);
        assert!(v.get("archMap").is_none());
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(
            KernelVersion::parse("6.18.0-1-amd64"),
            Some(KernelVersion(6, 18))
        );
        assert_eq!(KernelVersion::parse("4.8"), Some(KernelVersion(4, 8)));
        assert_eq!(KernelVersion::parse("6"), None);
        assert!(KernelVersion(6, 1) > KernelVersion(4, 8));
        assert!(KernelVersion(4, 10) > KernelVersion(4, 8));
    }
}
