//! A generated profile for other architectures than the one it was recorded on
//! ([`Profile::for_arches`]), and its OCI form for all of them at once
//! ([`Profile::resolve_every_arch`]).
//!
//! For one architecture the profile keeps today's shape (`architectures: [SCMP_ARCH_...]`,
//! one rule). For several it has Docker's `archMap` (x86_64 with its x86 and x32 compat ABIs,
//! aarch64 with arm, as Docker's default profile writes them; Docker refuses `architectures`
//! and `archMap` together) and one rule per set of ABIs that share names:
//!
//! - a rule whose names exist on every listed ABI has no condition;
//! - any other rule has `includes.arches` naming (Docker's names: `amd64`, `x86`, `x32`,
//!   `arm64`, `arm`) the ABIs where each of its names exists, and a comment saying so.
//!
//! Docker decides `includes.arches` by the host's architecture and applies a rule in force to
//! every ABI of the host's `archMap` entry (libseccomp skips a name an ABI lacks). So a rule
//! whose names exist only on a compat ABI (`mmap2`, `fstat64` on x86 and arm) also names that
//! ABI's 64-bit host (`amd64`, `arm64`), or 32-bit processes on 64-bit hosts could not make
//! them; Docker's default profile does the same (`arm_fadvise64_64`: `["arm", "arm64"]`).
//! The rule's comment says which host names are there for that reason only.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Map;

use super::{ArchMap, Filter, Profile, SyscallRule, Target, arches::translate};
use crate::{abi::Abi, names::Arch, seccomp::ArchList};

/// The `archMap` for `arches`: each 64-bit ABI with its listed compat ABIs, and a compat ABI
/// listed without its 64-bit ABI on its own.
fn arch_map(arches: &ArchList) -> Vec<ArchMap> {
    let mut out = Vec::new();
    for &abi in arches.abis() {
        let subs: Vec<String> = arches
            .abis()
            .iter()
            .filter(|s| s.main() == abi && **s != abi)
            .map(|s| s.scmp_name().to_owned())
            .collect();
        if abi.main() == abi {
            out.push(ArchMap {
                architecture: abi.scmp_name().to_owned(),
                sub_architectures: (!subs.is_empty()).then_some(subs),
                extra: Map::new(),
            });
        } else if !arches.contains(abi.main()) {
            out.push(ArchMap {
                architecture: abi.scmp_name().to_owned(),
                sub_architectures: None,
                extra: Map::new(),
            });
        }
    }
    out
}

/// `a, b and c`.
fn listed(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The `includes.arches` and comment of a rule whose names exist on exactly `set` of
/// `arches` (not all of them).
fn condition(set: &BTreeSet<Abi>, arches: &ArchList) -> (Vec<String>, String) {
    let mut tokens = Vec::new();
    let mut hosts_only = Vec::new();
    for &abi in arches.abis() {
        if set.contains(&abi) {
            tokens.push(abi.docker_name().to_owned());
        } else if abi.main() == abi && set.iter().any(|s| s.main() == abi) {
            // The 64-bit host of a compat ABI the names exist on.
            tokens.push(abi.docker_name().to_owned());
            hosts_only.push(abi);
        }
    }
    let on: Vec<&str> = set.iter().map(|a| a.as_str()).collect();
    let mut comment = format!("only on {}", listed(&on));
    for host in hosts_only {
        let compat: Vec<&str> = set
            .iter()
            .filter(|s| s.main() == host)
            .map(|a| a.as_str())
            .collect();
        comment.push_str(&format!(
            "; {} is listed because {} hosts run {} processes",
            host.docker_name(),
            host.as_str(),
            listed(&compat)
        ));
    }
    (tokens, comment)
}

impl SyscallRule {
    /// This rule's names for `arches`, grouped by the ABIs they are written for: each name
    /// translated ([`translate`]), except in a rule with argument conditions, whose names are
    /// kept only where they exist as they are (another call's arguments differ).
    fn names_by_abis(&self, arches: &ArchList) -> BTreeMap<BTreeSet<Abi>, Vec<&'static str>> {
        let mut abis_of: BTreeMap<&'static str, BTreeSet<Abi>> = BTreeMap::new();
        for name in self.all_names() {
            for &abi in arches.abis() {
                let written = match self.args {
                    Some(_) => abi.syscall(name).into_iter().collect(),
                    None => translate(name, abi),
                };
                for w in written {
                    abis_of.entry(w).or_default().insert(abi);
                }
            }
        }
        let mut groups: BTreeMap<BTreeSet<Abi>, Vec<&'static str>> = BTreeMap::new();
        for (name, abis) in abis_of {
            groups.entry(abis).or_default().push(name);
        }
        groups
    }

    /// A copy of this rule with `names`, `includes.arches` and `comment` (`None`: as it is).
    fn with(&self, names: Vec<&str>, arches: Option<Vec<String>>, comment: Option<String>) -> Self {
        let includes = match arches {
            Some(arches) => Some(Filter {
                arches: Some(arches),
                ..self.includes.clone().unwrap_or_default()
            }),
            None => self.includes.clone(),
        };
        SyscallRule {
            names: names.into_iter().map(str::to_owned).collect(),
            includes,
            comment: comment.or_else(|| self.comment.clone()),
            ..self.clone()
        }
    }
}

impl Profile {
    /// This profile, whose names are syscalls of `from` (a generated profile), for `arches`:
    /// itself when that is `from` alone; otherwise each name translated ([`translate`]) and
    /// left out where it has no counterpart, with `architectures` (one ABI) or `archMap` and
    /// per-ABI rules (several; see the module's description). A rule's own `includes.arches`
    /// is replaced.
    pub fn for_arches(&self, from: Arch, arches: &ArchList) -> Profile {
        if arches.abis() == [Abi::of(from)] {
            return self.clone();
        }
        let every: BTreeSet<Abi> = arches.abis().iter().copied().collect();
        let several = every.len() > 1;
        let mut syscalls = Vec::new();
        for rule in &self.syscalls {
            let mut groups: Vec<(BTreeSet<Abi>, Vec<&str>)> =
                rule.names_by_abis(arches).into_iter().collect();
            // Names of every ABI first, then wider sets before narrower ones.
            groups.sort_by_key(|(set, _)| (*set != every, std::cmp::Reverse(set.len())));
            for (set, names) in groups {
                syscalls.push(if set == every {
                    rule.with(names, None, None)
                } else {
                    let (tokens, comment) = condition(&set, arches);
                    rule.with(names, Some(tokens), Some(comment))
                });
            }
        }
        let (architectures, arch_map) = if several {
            (None, Some(arch_map(arches)))
        } else {
            let only: Vec<String> = arches.abis().iter().map(|a| a.scmp_name().into()).collect();
            (Some(only), None)
        };
        Profile {
            architectures,
            arch_map,
            syscalls,
            ..self.clone()
        }
    }

    /// The profile as runtimes take it (OCI `linux.seccomp`) for every architecture it lists
    /// at once: `architectures` is the whole `archMap` (every ABI), a rule is kept when it is
    /// in force on any of them (the OCI form has no per-architecture rules: libseccomp skips
    /// a name an ABI lacks), and rules of the same action without argument conditions are
    /// merged into one, names sorted. Capability and kernel conditions are decided for
    /// `target`. For a profile of one architecture this is [`Profile::resolve`].
    pub fn resolve_every_arch(&self, target: &Target) -> Profile {
        let mut architectures = self.architectures.clone().unwrap_or_default();
        for m in self.arch_map.iter().flatten() {
            architectures.push(m.architecture.clone());
            architectures.extend(m.sub_architectures.iter().flatten().cloned());
        }
        let mut hosts: Vec<&str> = architectures
            .iter()
            .filter_map(|a| Abi::parse(a))
            .map(Abi::docker_name)
            .collect();
        if hosts.is_empty() {
            hosts.push(target.arch.go_name());
        }
        let mut syscalls: Vec<SyscallRule> = Vec::new();
        for rule in &self.syscalls {
            if !hosts.iter().any(|h| rule.applies_on(h, target)) {
                continue;
            }
            let rule = rule.unconditional();
            let same = syscalls.iter_mut().find(|r| {
                r.args.is_none()
                    && rule.args.is_none()
                    && r.action == rule.action
                    && r.errno_ret == rule.errno_ret
            });
            match same {
                Some(r) => r.names.extend(rule.names),
                None => syscalls.push(rule),
            }
        }
        for rule in &mut syscalls {
            if rule.args.is_none() {
                rule.names.sort();
                rule.names.dedup();
            }
        }
        self.runtime_form(architectures, syscalls)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::{
        recommend::RUNC_AFTER_FILTER,
        seccomp::{KernelVersion, target},
    };

    fn all(names: &[&str]) -> Profile {
        Profile::allow_only(Arch::X86_64, names).for_arches(Arch::X86_64, &ArchList::all())
    }

    #[test]
    fn the_native_architecture_alone_is_today_s_profile() {
        let p = Profile::allow_only(Arch::X86_64, &["open", "read"]);
        let native = ArchList::native(Arch::X86_64);
        assert_eq!(p.for_arches(Arch::X86_64, &native), p);
        let arm64 = p.for_arches(Arch::X86_64, &ArchList::parse("arm64").expect("arm64"));
        let v: Value = serde_json::from_str(&arm64.to_json_pretty()).expect("json");
        assert_eq!(
            v,
            json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "architectures": ["SCMP_ARCH_AARCH64"],
                "syscalls": [{"names": ["openat", "read"], "action": "SCMP_ACT_ALLOW"}]
            })
        );
    }

    #[test]
    fn every_architecture_has_docker_s_arch_map_and_per_abi_rules() {
        let p = all(&["read", "open", "mmap", "arch_prctl", "newfstatat"]);
        p.validate().expect("a valid Docker profile");
        let v: Value = serde_json::from_str(&p.to_json_pretty()).expect("json");
        assert!(v.get("architectures").is_none(), "Docker refuses both");
        assert_eq!(
            v["archMap"],
            json!([
                {"architecture": "SCMP_ARCH_X86_64",
                 "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
            ])
        );
        let rules: Vec<(Vec<&str>, Value, &str)> = p
            .syscalls
            .iter()
            .map(|r| {
                (
                    r.names.iter().map(String::as_str).collect(),
                    json!(r.includes.as_ref().and_then(|i| i.arches.clone())),
                    r.comment.as_deref().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            rules,
            vec![
                (vec!["read"], Value::Null, ""),
                (
                    vec!["mmap"],
                    json!(["amd64", "x86", "x32", "arm64"]),
                    "only on x86_64, x86, x32 and aarch64"
                ),
                (
                    vec!["open"],
                    json!(["amd64", "x86", "x32", "arm64", "arm"]),
                    "only on x86_64, x86, x32 and arm; arm64 is listed because aarch64 hosts \
                     run arm processes"
                ),
                (
                    vec!["arch_prctl"],
                    json!(["amd64", "x86", "x32"]),
                    "only on x86_64, x86 and x32"
                ),
                (
                    vec!["newfstatat"],
                    json!(["amd64", "x32", "arm64"]),
                    "only on x86_64, x32 and aarch64"
                ),
                (
                    vec!["fstatat64", "mmap2"],
                    json!(["amd64", "x86", "arm64", "arm"]),
                    "only on x86 and arm; amd64 is listed because x86_64 hosts run x86 \
                     processes; arm64 is listed because aarch64 hosts run arm processes"
                ),
                (
                    vec!["set_thread_area"],
                    json!(["amd64", "x86"]),
                    "only on x86; amd64 is listed because x86_64 hosts run x86 processes"
                ),
                (vec!["openat"], json!(["arm64"]), "only on aarch64"),
                (
                    vec!["set_tls"],
                    json!(["arm64", "arm"]),
                    "only on arm; arm64 is listed because aarch64 hosts run arm processes"
                ),
            ]
        );
    }

    #[test]
    fn docker_on_each_host_gets_what_each_abi_needs() {
        let names = RUNC_AFTER_FILTER;
        let native = Profile::allow_only(Arch::X86_64, names);
        let p = native.for_arches(Arch::X86_64, &ArchList::all());
        let kernel = KernelVersion(6, 18);
        // On an x86_64 host Docker allows, of x86_64's calls, exactly the recorded ones: the
        // profile that runs the closed-loop workloads.
        let amd64 = target(&[], kernel);
        let resolved = p.resolve(&amd64);
        assert_eq!(
            resolved.architectures.as_deref(),
            Some(
                &[
                    "SCMP_ARCH_X86_64".into(),
                    "SCMP_ARCH_X86".into(),
                    "SCMP_ARCH_X32".into()
                ][..]
            )
        );
        assert_eq!(p.allowed(&amd64), native.allowed(&amd64));
        // On an arm64 host: the translated names.
        let arm64 = Target {
            arch: Arch::Aarch64,
            ..amd64.clone()
        };
        let expected: BTreeSet<String> = names
            .iter()
            .flat_map(|n| translate(n, Abi::Aarch64))
            .map(str::to_owned)
            .collect();
        assert_eq!(p.allowed(&arm64), expected);
        assert!(expected.contains("openat") && !expected.contains("open"));
    }

    #[test]
    fn the_oci_form_lists_every_abi_and_the_union_of_names() {
        let p = all(&["read", "open", "mmap"]);
        let oci = p.resolve_every_arch(&target(&[], KernelVersion(6, 18)));
        let v: Value = serde_json::from_str(&oci.to_json_pretty()).expect("json");
        assert_eq!(
            v,
            json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                                  "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
                "syscalls": [{"names": ["mmap", "mmap2", "open", "openat", "read"],
                              "action": "SCMP_ACT_ALLOW"}]
            })
        );
        // One architecture: what resolve gives.
        let one = Profile::allow_only(Arch::X86_64, &["read", "open"]);
        let t = target(&[], KernelVersion(6, 18));
        assert_eq!(one.resolve_every_arch(&t), one.resolve(&t));
    }

    #[test]
    fn compat_abis_without_their_host_stand_alone() {
        let p = Profile::allow_only(Arch::X86_64, &["fstat"])
            .for_arches(Arch::X86_64, &ArchList::parse("i386,arm").expect("list"));
        let v: Value = serde_json::from_str(&p.to_json_pretty()).expect("json");
        assert_eq!(
            v["archMap"],
            json!([
                {"architecture": "SCMP_ARCH_X86", "subArchitectures": null},
                {"architecture": "SCMP_ARCH_ARM", "subArchitectures": null},
            ])
        );
        assert_eq!(
            v["syscalls"],
            json!([{"names": ["fstat", "fstat64"], "action": "SCMP_ACT_ALLOW"}])
        );
    }
}
