//! The typed keys a container's counts are kept under: capabilities by number, check outcomes,
//! check sites, seccomp denials. Their names and JSON belong to the store and the API.

use capmon_core::{
    classify::CapClass,
    names::{capability_name, capability_number},
};

/// A capability by number (`CAP_CHOWN` is 0), named only at the edges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability(pub u32);

impl Capability {
    /// `CAP_CHOWN`, or `CAP_<n>` for a number newer than the name table.
    pub fn name(self) -> String {
        capability_name(self.0)
    }

    /// The capability [`Capability::name`] names `name` (exactly that spelling).
    pub fn from_name(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("CAP_")?;
        let number = capability_number(name).or_else(|| {
            rest.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| rest.parse().ok())?
        })?;
        let cap = Capability(number);
        (cap.name() == name).then_some(cap)
    }
}

/// Whether the kernel granted a capability check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckResult {
    /// The task held the capability.
    Granted,
    /// It did not.
    Refused,
}

impl CheckResult {
    /// `granted` or `refused`, as reports and the store write it.
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckResult::Granted => "granted",
            CheckResult::Refused => "refused",
        }
    }

    /// The result [`CheckResult::as_str`] names `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [CheckResult::Granted, CheckResult::Refused]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// What tells one capability check site of a container from another.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckKey {
    /// The capability checked.
    pub capability: Capability,
    /// Its class.
    pub class: CapClass,
    /// Granted or refused.
    pub result: CheckResult,
    /// Kernel call site, when known.
    pub site: Option<String>,
    /// Syscall the first check happened in, when known.
    pub syscall: Option<String>,
}

/// One capability check site: how often, and the evidence of its first sighting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Check {
    /// Checks counted.
    pub count: u64,
    /// Why it has its class.
    pub reason: String,
    /// First process.
    pub comm: String,
    /// First thread id.
    pub pid: u32,
    /// Kernel frames.
    pub stack: Vec<String>,
}

/// What tells one kind of seccomp denial of a container from another.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DenialKey {
    /// Syscall name, as in the kernel's table.
    pub syscall: String,
    /// `EPERM`.
    pub errno: String,
}

/// One kind of seccomp denial: how often, and its first process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DenialCount {
    /// Syscall number.
    pub number: u32,
    /// Denials counted.
    pub count: u64,
    /// First process.
    pub comm: String,
}
