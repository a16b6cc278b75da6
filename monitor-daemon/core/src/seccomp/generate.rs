//! Profiles capmon writes: Docker's default (compiled in) and the least-privilege profile for
//! what a workload was seen to call, which allows exactly those syscalls and refuses a number
//! it cannot name rather than guess.

use serde_json::Map;

use super::{Profile, SeccompError, SyscallRule};
use crate::names::Arch;

impl Profile {
    /// Docker's default profile (moby/profiles `seccomp/default.json`), compiled in (parsed
    /// once).
    pub fn docker_default() -> Profile {
        static TEXT: &str = include_str!("../../data/docker-default-seccomp.json");
        static PARSED: std::sync::OnceLock<Profile> = std::sync::OnceLock::new();
        PARSED
            .get_or_init(|| {
                // A unit test parses and validates the same text.
                Profile::from_json(TEXT)
                    .unwrap_or_else(|_| Profile::allow_only(Arch::host(), &[] as &[&str]))
            })
            .clone()
    }

    /// The least-privilege profile for syscall numbers seen on `arch`, plus `extra` names
    /// (what the container runtime needs after installing the filter): refuses a number the
    /// syscall table cannot name rather than guess.
    pub fn generate(arch: Arch, numbers: &[u32], extra: &[&str]) -> Result<Self, SeccompError> {
        let mut names = Vec::with_capacity(numbers.len() + extra.len());
        for &nr in numbers {
            let name = arch.syscall_name(nr).ok_or(SeccompError::UnnamedSyscall {
                number: nr,
                arch: arch.as_str(),
            })?;
            names.push(name);
        }
        names.extend(
            extra
                .iter()
                .copied()
                .filter(|n| arch.syscall_number(n).is_some()),
        );
        Ok(Profile::allow_only(arch, &names))
    }

    /// Like [`Profile::generate`], from syscall names (as reports and the store hold them);
    /// a name that is not in `arch`'s table (`syscall_435` for an unnamed number) is refused.
    pub fn generate_from_names(
        arch: Arch,
        names: &[&str],
        extra: &[&str],
    ) -> Result<Self, SeccompError> {
        let mut numbers = Vec::with_capacity(names.len());
        for name in names {
            match arch.syscall_number(name) {
                Some(nr) => numbers.push(nr),
                None => {
                    let number = name
                        .strip_prefix("syscall_")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(u32::MAX);
                    return Err(SeccompError::UnnamedSyscall {
                        number,
                        arch: arch.as_str(),
                    });
                }
            }
        }
        Profile::generate(arch, &numbers, extra)
    }

    /// The profile without `name` (for proving that each allowed syscall is needed).
    pub fn without(&self, name: &str) -> Profile {
        let mut p = self.clone();
        for rule in &mut p.syscalls {
            rule.names.retain(|n| n != name);
        }
        p.syscalls.retain(|r| !r.all_names().is_empty());
        p
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
    use serde_json::Value;

    use super::*;

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
    fn generated_profiles_refuse_to_guess() {
        let p = Profile::generate(Arch::X86_64, &[0, 1, 59], &["capset", "arm_fadvise64_64"])
            .expect("known numbers");
        assert_eq!(
            p.syscalls[0].names,
            vec!["capset", "execve", "read", "write"]
        );
        let err = Profile::generate(Arch::X86_64, &[0, 4000], &[]).expect_err("unnamed");
        assert!(
            err.to_string()
                .contains("syscall number 4000 has no name on x86_64"),
            "{err}"
        );
        let without = p.without("read");
        assert_eq!(without.syscalls[0].names, vec!["capset", "execve", "write"]);
    }
}
