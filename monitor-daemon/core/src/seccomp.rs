//! Seccomp profiles in Docker's JSON format (`defaultAction`, `defaultErrnoRet`, `archMap`,
//! `architectures`, `syscalls[]` with `names`/`action`/`args`/`includes`/`excludes`/`errnoRet`),
//! and the least-privilege profile generated from what a workload was seen to call.
//!
//! Fields capmon does not model are kept (`extra`) so that a profile read and written again
//! loses nothing.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::names::Arch;

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

/// The capabilities Docker grants a container by default (moby's `DefaultCapabilities`).
pub const DOCKER_DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Actions libseccomp knows.
pub const ACTIONS: &[&str] = &[
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
];

/// Argument comparison operators libseccomp knows.
pub const OPERATORS: &[&str] = &[
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];

/// Architectures libseccomp knows (`SCMP_ARCH_` names).
pub const SCMP_ARCHES: &[&str] = &[
    "SCMP_ARCH_NATIVE",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
];

/// Go architecture names Docker profiles use in `includes`/`excludes` `arches`.
pub const GO_ARCHES: &[&str] = &[
    "386",
    "x86",
    "amd64",
    "x32",
    "arm",
    "arm64",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64n32",
    "mipsel64n32",
    "mipsel64",
    "mipsel",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv64",
    "s390",
    "s390x",
    "parisc",
    "parisc64",
    "sh",
    "sheb",
    "m68k",
];

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

fn check_one_of(
    field: String,
    value: &str,
    known: &[&str],
    what: &str,
) -> Result<(), SeccompError> {
    if known.contains(&value) {
        Ok(())
    } else {
        Err(invalid(field, format!("unknown {what} {value:?}")))
    }
}

fn check_filter(field: &str, f: &Filter) -> Result<(), SeccompError> {
    for (i, cap) in f.caps.iter().flatten().enumerate() {
        if crate::names::capability_number(cap).is_none() || !cap.starts_with("CAP_") {
            return Err(invalid(
                format!("{field}.caps[{i}]"),
                format!("unknown capability {cap:?} (expected a name such as \"CAP_SYS_ADMIN\")"),
            ));
        }
    }
    for (i, arch) in f.arches.iter().flatten().enumerate() {
        check_one_of(
            format!("{field}.arches[{i}]"),
            arch,
            GO_ARCHES,
            "architecture",
        )?;
    }
    if let Some(k) = &f.min_kernel
        && KernelVersion::parse(k).is_none()
    {
        return Err(invalid(
            format!("{field}.minKernel"),
            format!("{k:?} is not a kernel version such as \"4.8\""),
        ));
    }
    Ok(())
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

    fn applies(&self, target: &Target) -> bool {
        let any_held = |caps: &Vec<String>| caps.iter().any(|c| target.caps.contains(c));
        let all_held = |caps: &Vec<String>| caps.iter().all(|c| target.caps.contains(c));
        let newer = |k: &String| KernelVersion::parse(k).is_some_and(|k| target.kernel >= k);
        if let Some(ex) = &self.excludes {
            if ex
                .arches
                .as_ref()
                .is_some_and(|a| a.iter().any(|a| a == target.arch.go_name()))
            {
                return false;
            }
            if ex.caps.as_ref().is_some_and(any_held) {
                return false;
            }
            if ex.min_kernel.as_ref().is_some_and(newer) {
                return false;
            }
        }
        if let Some(inc) = &self.includes {
            if inc
                .arches
                .as_ref()
                .is_some_and(|a| !a.is_empty() && !a.iter().any(|a| a == target.arch.go_name()))
            {
                return false;
            }
            if inc.caps.as_ref().is_some_and(|c| !all_held(c)) {
                return false;
            }
            if inc.min_kernel.as_ref().is_some_and(|k| !newer(k)) {
                return false;
            }
        }
        true
    }
}

impl Profile {
    /// Parses a profile without checking its values (see [`Profile::parse`]).
    pub fn from_json(text: &str) -> Result<Self, SeccompError> {
        serde_json::from_str(text).map_err(SeccompError::Parse)
    }

    /// Parses and validates a profile: the error names the field (`syscalls[3].names[2]`) or
    /// the line and column.
    pub fn parse(text: &str) -> Result<Self, SeccompError> {
        let profile = Profile::from_json(text)?;
        profile.validate()?;
        Ok(profile)
    }

    /// Checks every value capmon (and Docker) interprets: actions, operators, architectures,
    /// capability and syscall names, argument indexes, kernel versions.
    pub fn validate(&self) -> Result<(), SeccompError> {
        check_one_of(
            "defaultAction".into(),
            &self.default_action,
            ACTIONS,
            "action",
        )?;
        let has_arches = self.architectures.as_ref().is_some_and(|a| !a.is_empty());
        let has_map = self.arch_map.as_ref().is_some_and(|a| !a.is_empty());
        if has_arches && has_map {
            return Err(invalid(
                "architectures",
                "both \"architectures\" and \"archMap\" are set; use one (Docker refuses both)",
            ));
        }
        for (i, a) in self.architectures.iter().flatten().enumerate() {
            check_one_of(
                format!("architectures[{i}]"),
                a,
                SCMP_ARCHES,
                "architecture",
            )?;
        }
        for (i, m) in self.arch_map.iter().flatten().enumerate() {
            check_one_of(
                format!("archMap[{i}].architecture"),
                &m.architecture,
                SCMP_ARCHES,
                "architecture",
            )?;
            for (j, a) in m.sub_architectures.iter().flatten().enumerate() {
                check_one_of(
                    format!("archMap[{i}].subArchitectures[{j}]"),
                    a,
                    SCMP_ARCHES,
                    "architecture",
                )?;
            }
        }
        for (i, rule) in self.syscalls.iter().enumerate() {
            let at = format!("syscalls[{i}]");
            check_one_of(format!("{at}.action"), &rule.action, ACTIONS, "action")?;
            match rule.extra.get("name") {
                None => {}
                Some(Value::String(_)) if rule.names.is_empty() => {}
                Some(Value::String(_)) => {
                    return Err(invalid(
                        format!("{at}.name"),
                        "both \"name\" and \"names\" are set; use \"names\"",
                    ));
                }
                Some(_) => return Err(invalid(format!("{at}.name"), "must be a string")),
            }
            let names = rule.all_names();
            if names.is_empty() {
                return Err(invalid(format!("{at}.names"), "the rule names no syscall"));
            }
            for (j, name) in rule.names.iter().enumerate() {
                if !crate::names::syscall_known_anywhere(name) {
                    return Err(invalid(
                        format!("{at}.names[{j}]"),
                        format!(
                            "unknown syscall {name:?} (not in the syscall table of any architecture)"
                        ),
                    ));
                }
            }
            for (k, arg) in rule.args.iter().flatten().enumerate() {
                if arg.index > 5 {
                    return Err(invalid(
                        format!("{at}.args[{k}].index"),
                        format!("{} is not an argument index (0 to 5)", arg.index),
                    ));
                }
                check_one_of(format!("{at}.args[{k}].op"), &arg.op, OPERATORS, "operator")?;
            }
            if let Some(f) = &rule.includes {
                check_filter(&format!("{at}.includes"), f)?;
            }
            if let Some(f) = &rule.excludes {
                check_filter(&format!("{at}.excludes"), f)?;
            }
        }
        Ok(())
    }

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
            .map(|r| SyscallRule {
                names: r.all_names().into_iter().map(str::to_owned).collect(),
                action: r.action.clone(),
                args: r.args.clone(),
                comment: None,
                includes: None,
                excludes: None,
                errno_ret: r.errno_ret,
                extra: Map::new(),
            })
            .collect();
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

    /// Pretty JSON, as Docker writes it.
    pub fn to_json_pretty(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Docker's default profile (moby/profiles `seccomp/default.json`), compiled in (parsed
    /// once).
    pub fn docker_default() -> Profile {
        static TEXT: &str = include_str!("../data/docker-default-seccomp.json");
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
    use super::*;

    /// Docker's default profile: the project's verbatim copy of `../shared/fixtures`'s (so
    /// that the tests also run in a clone without `../shared`; the next test checks the copy).
    fn fixture() -> String {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/docker-default-seccomp.json"
        );
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

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

    fn target(caps: &[&str], kernel: KernelVersion) -> Target {
        Target {
            arch: Arch::X86_64,
            caps: caps.iter().map(|c| c.to_string()).collect(),
            kernel,
        }
    }

    #[test]
    fn docker_default_validates_and_is_the_compiled_in_copy() {
        let p = Profile::parse(&fixture()).expect("Docker's default profile is valid");
        assert_eq!(p, Profile::docker_default());
    }

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

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            (
                r#"{"defaultAction": "SCMP_ACT_NOPE"}"#,
                "defaultAction: unknown action \"SCMP_ACT_NOPE\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]}"#,
                "architectures[1]: unknown architecture \"SCMP_ARCH_VAX\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}, {"names": ["write", "frobnicate"], "action": "SCMP_ACT_ALLOW"}]}"#,
                "syscalls[1].names[1]: unknown syscall \"frobnicate\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_FLY"]}}]}"#,
                "syscalls[0].includes.caps[0]: unknown capability \"CAP_FLY\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["pdp11"]}}]}"#,
                "syscalls[0].excludes.arches[0]: unknown architecture \"pdp11\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
                "syscalls[0].args[0].index: 7 is not an argument index",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]}"#,
                "syscalls[0].args[0].op: unknown operator",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]}"#,
                "syscalls[0].names: the rule names no syscall",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "four"}}]}"#,
                "syscalls[0].includes.minKernel: \"four\" is not a kernel version",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": null}]}"#,
                "architectures: both \"architectures\" and \"archMap\"",
            ),
        ];
        for (text, expected) in cases {
            let err = Profile::parse(text).expect_err(text);
            assert!(
                err.to_string().contains(expected),
                "{err} does not contain {expected}"
            );
        }
        // Truncated: the position of the end.
        let text = fixture();
        let err = Profile::parse(&text[..text.len() / 2]).expect_err("truncated");
        assert!(err.to_string().contains("EOF while parsing"), "{err}");
        // The old single `name` is accepted, as Docker does.
        let p = Profile::parse(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "read", "action": "SCMP_ACT_ALLOW"}]}"#)
            .expect("name");
        assert_eq!(
            p.verdict(&target(&[], KernelVersion(6, 1)), "read"),
            Verdict::Allowed
        );
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

    #[test]
    fn malformed_profiles_name_the_position() {
        let err = Profile::from_json("{\n  \"defaultAction\": 5\n}").expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("line 2"), "{msg}");
        let err = Profile::from_json("{\"syscalls\": []}").expect_err("must fail");
        assert!(err.to_string().contains("defaultAction"), "{err}");
    }
}
