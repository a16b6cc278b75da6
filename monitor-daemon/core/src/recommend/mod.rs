//! Least-privilege recommendations: from what a workload was granted and what it was seen to
//! use, the capabilities to keep, drop and add, the warnings a security reviewer wants, and
//! the same advice in every format users paste into their deployments (`docker run` flags,
//! compose, a Kubernetes `securityContext`, an AppArmor capability block, and seccomp profiles
//! as Docker JSON, OCI `linux.seccomp` and a Security Profiles Operator resource).
//!
//! Pure functions over capability sets and a generated profile; `report` feeds them a
//! recorded report (`RecordReport::advice`), and `tests/closed_loop.rs` proves with real runc
//! that the advice works. This file holds the formats and what runc needs under a filter;
//! `analysis` decides ([`analyze`]), `advice` renders ([`Advice`]).

use std::{fmt, str::FromStr};

mod advice;
mod analysis;

pub use advice::{Advice, object_name};
pub use analysis::{Analysis, Basis, Context, Usage, Warning, analyze};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum RecommendError {
    /// An output format capmon does not have.
    #[error("unknown format {0:?}: use one of {list}", list = Format::NAMES.join(", "))]
    UnknownFormat(String),
    /// The format needs a seccomp profile and none can be written without guessing.
    #[error("no seccomp profile for {name}: {reason}")]
    NoProfile {
        /// The workload.
        name: String,
        /// Why.
        reason: String,
    },
    /// YAML output failed.
    #[error("cannot write YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `docker run` flags.
    Docker,
    /// A compose service block.
    Compose,
    /// A Kubernetes container `securityContext`.
    Kubernetes,
    /// AppArmor capability rules.
    Apparmor,
    /// Docker-format seccomp JSON.
    Seccomp,
    /// The OCI runtime spec's `linux.seccomp` object.
    Oci,
    /// A Security Profiles Operator `SeccompProfile` resource.
    Spo,
}

impl Format {
    /// Every format's name, as the CLI and the API take them.
    pub const NAMES: [&'static str; 7] = [
        "docker",
        "compose",
        "kubernetes",
        "apparmor",
        "seccomp",
        "oci",
        "spo",
    ];
    /// Every format.
    pub const ALL: [Format; 7] = [
        Format::Docker,
        Format::Compose,
        Format::Kubernetes,
        Format::Apparmor,
        Format::Seccomp,
        Format::Oci,
        Format::Spo,
    ];

    /// The format's name.
    pub fn name(self) -> &'static str {
        Format::NAMES[Format::ALL
            .iter()
            .position(|f| *f == self)
            .unwrap_or_default()]
    }

    /// File name `capmon record --output-dir` writes the format to.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Docker => "docker-run-flags.txt",
            Format::Compose => "compose.yaml",
            Format::Kubernetes => "kubernetes-securitycontext.yaml",
            Format::Apparmor => "apparmor-capabilities.txt",
            Format::Seccomp => "seccomp.json",
            Format::Oci => "oci-seccomp.json",
            Format::Spo => "seccompprofile.yaml",
        }
    }
}

impl FromStr for Format {
    type Err = RecommendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s.to_ascii_lowercase())
            .ok_or_else(|| RecommendError::UnknownFormat(s.to_owned()))
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Syscalls runc may make after it installed the workload's seccomp filter and before it
/// executes the workload, so a generated profile must allow them or the container does not
/// start. Measured with runc 1.1.5 (with and without no-new-privileges, root and non-root
/// users: capmon records these separately, see `syscalls.runtime`), plus what the Go runtime
/// inside runc may call at any moment (signal delivery and return, thread scheduling, memory).
/// `tests/closed_loop.rs` checks on every run that what runc is seen to make is in this list.
pub const RUNC_AFTER_FILTER: &[&str] = &[
    // runc's own work: capabilities, user and groups, working directory, closing inherited
    // file descriptors (listing /proc/self/fd), the exec fifo, the exec.
    "capget",
    "capset",
    "chdir",
    "close",
    "epoll_ctl",
    "execve",
    "faccessat2",
    "fchown",
    "fcntl",
    "fstat",
    "fstatfs",
    "getcwd",
    "getdents64",
    "getpid",
    "getppid",
    "newfstatat",
    "openat",
    "prctl",
    "read",
    "setgid",
    "setgroups",
    "setresgid",
    "setresuid",
    "setuid",
    "write",
    // The Go runtime inside runc, at any moment: signal delivery and return (asynchronous
    // preemption sends SIGURG), thread scheduling and creation, memory.
    "clone",
    // The Go runtime reads the clock through the vDSO, which falls back to the syscall
    // where the clock source has no vDSO mode (seen in qemu guests: Debian 6.1 under TCG).
    "clock_gettime",
    "epoll_pwait",
    "exit",
    "exit_group",
    "futex",
    "gettid",
    "madvise",
    "mmap",
    "munmap",
    "nanosleep",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sched_yield",
    "sigaltstack",
    "tgkill",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_bad_ones_are_named() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>().expect("parse"), f);
        }
        assert_eq!("SPO".parse::<Format>().expect("case"), Format::Spo);
        let err = "yaml".parse::<Format>().expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "unknown format \"yaml\": use one of docker, compose, kubernetes, apparmor, seccomp, oci, spo"
        );
    }
}
