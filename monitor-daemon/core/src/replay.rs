//! `capmon replay`: a recorded workload's syscalls against any seccomp profile, "dry run
//! before you enforce". [`run`] reads the files and the running kernel; [`History::parse`] and
//! [`replay`] are pure.

use std::{fs, io, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::{
    names::{Arch, capability_number},
    seccomp::{KernelVersion, Profile, Replay, SeccompError, Target},
};

/// Errors of `capmon replay`.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The profile is not valid.
    #[error("{path}: {source}")]
    Profile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: SeccompError,
    },
    /// The report is not a capmon report.
    #[error("{path}: not a capmon report.json: {source}")]
    Report {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: serde_json::Error,
    },
    /// A syscall name in the report is not in this architecture's table.
    #[error("{path}: {field}: unknown syscall {name:?} on {arch}")]
    UnknownSyscall {
        /// The file.
        path: PathBuf,
        /// JSON path of the name.
        field: String,
        /// The name.
        name: String,
        /// The architecture.
        arch: &'static str,
    },
    /// An architecture capmon has no syscall table for.
    #[error("unknown architecture {0:?}: capmon knows x86_64 (amd64) and aarch64 (arm64)")]
    UnknownArch(String),
    /// A capability name is unknown.
    #[error("unknown capability {0:?} (expected a name such as CAP_CHOWN)")]
    UnknownCapability(String),
}

/// The part of a `report.json` a replay needs: the recorded syscall names and the
/// capabilities the workload held.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct History {
    /// The recorded syscalls.
    pub syscalls: HistorySyscalls,
    /// Capabilities the workload held (`CAP_*`).
    #[serde(default)]
    pub granted: Vec<String>,
}

/// `syscalls` of a `report.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct HistorySyscalls {
    /// Syscalls the workload made.
    pub used: Vec<String>,
    /// Syscalls the runtime made under the filter before the workload's exec.
    #[serde(default)]
    pub runtime: Vec<String>,
}

/// A recorded syscall name that is not in the architecture's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// JSON path of the name (`syscalls.used[3]`).
    pub field: String,
    /// The name.
    pub name: String,
}

impl History {
    /// Reads the part of a `report.json` text a replay needs.
    pub fn parse(text: &str) -> Result<History, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Every recorded syscall name (used, then the runtime's), sorted and without
    /// duplicates; the first one `arch`'s table does not know is an error.
    pub fn syscall_names(&self, arch: Arch) -> Result<Vec<String>, UnknownName> {
        let mut names: Vec<String> = Vec::new();
        for (field, list) in [
            ("syscalls.used", &self.syscalls.used),
            ("syscalls.runtime", &self.syscalls.runtime),
        ] {
            for (i, name) in list.iter().enumerate() {
                if arch.syscall_number(name).is_none() {
                    return Err(UnknownName {
                        field: format!("{field}[{i}]"),
                        name: name.clone(),
                    });
                }
                names.push(name.clone());
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}

/// The outcome of a replay.
#[derive(Debug, Serialize)]
pub struct ReplayResult {
    /// The profile replayed against.
    pub profile: String,
    /// Capabilities the profile's conditions were evaluated for.
    pub caps: Vec<String>,
    /// Architecture.
    pub arch: &'static str,
    /// Number of recorded syscalls replayed.
    pub syscalls: usize,
    /// What the profile does with them.
    pub replay: Replay,
}

fn read(path: &str) -> Result<String, ReplayError> {
    fs::read_to_string(path).map_err(|source| ReplayError::Read {
        path: path.into(),
        source,
    })
}

/// Loads the profile (a file, or `docker-default`) and the report, and replays them for `arch`
/// (default: this machine's) and the running kernel.
pub fn run(
    profile: &str,
    caps: Option<Vec<String>>,
    arch: Option<&str>,
    report: &std::path::Path,
) -> Result<ReplayResult, ReplayError> {
    let arch = match arch {
        None => Arch::host(),
        Some(a) => Arch::parse(a).ok_or_else(|| ReplayError::UnknownArch(a.to_owned()))?,
    };
    let p = if profile == "docker-default" {
        Profile::docker_default()
    } else {
        Profile::parse(&read(profile)?).map_err(|source| ReplayError::Profile {
            path: profile.into(),
            source,
        })?
    };
    let text = read(&report.to_string_lossy())?;
    let history = History::parse(&text).map_err(|source| ReplayError::Report {
        path: report.to_owned(),
        source,
    })?;
    let names = history
        .syscall_names(arch)
        .map_err(|UnknownName { field, name }| ReplayError::UnknownSyscall {
            path: report.to_owned(),
            field,
            name,
            arch: arch.as_str(),
        })?;
    let caps = canonical_caps(&caps.unwrap_or(history.granted))?;
    let kernel = KernelVersion::running().unwrap_or(KernelVersion(0, 0));
    Ok(replay(profile, &p, caps, arch, kernel, &names))
}

/// Capability names as capmon spells them (`sys_admin` -> `CAP_SYS_ADMIN`); empty ones are
/// skipped, an unknown one is an error.
pub fn canonical_caps(caps: &[String]) -> Result<Vec<String>, ReplayError> {
    let mut canonical = Vec::with_capacity(caps.len());
    for cap in caps.iter().filter(|c| !c.is_empty()) {
        let nr =
            capability_number(cap).ok_or_else(|| ReplayError::UnknownCapability(cap.clone()))?;
        canonical.push(crate::names::capability_name(nr));
    }
    Ok(canonical)
}

/// Replays syscall `names` against `profile` (called `profile_name`) for a container holding
/// `caps` on `arch` and `kernel`.
pub fn replay(
    profile_name: &str,
    profile: &Profile,
    caps: Vec<String>,
    arch: Arch,
    kernel: KernelVersion,
    names: &[String],
) -> ReplayResult {
    let target = Target {
        arch,
        caps: caps.iter().cloned().collect(),
        kernel,
    };
    ReplayResult {
        profile: profile_name.to_owned(),
        caps,
        arch: arch.as_str(),
        syscalls: names.len(),
        replay: Replay::run(profile, &target, names),
    }
}

/// The result as text.
pub fn render_text(r: &ReplayResult) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replay of {} recorded syscalls against {} ({}; capabilities: {})",
        r.syscalls,
        r.profile,
        r.arch,
        if r.caps.is_empty() {
            "none".to_owned()
        } else {
            r.caps.join(",")
        }
    );
    if r.replay.would_deny.is_empty() {
        let _ = writeln!(out, "would deny: nothing; all {} allowed", r.replay.allowed);
    } else {
        let _ = writeln!(
            out,
            "would deny {} (the workload would break):",
            r.replay.would_deny.len()
        );
        for d in &r.replay.would_deny {
            let _ = writeln!(
                out,
                "  {:<24} {} {}",
                d.name,
                d.action,
                d.errno
                    .as_deref()
                    .unwrap_or("(no errno: the process is killed)")
            );
        }
    }
    if !r.replay.depends_on_arguments.is_empty() {
        let _ = writeln!(
            out,
            "allowed only for some arguments (capmon does not record arguments; test these): {}",
            r.replay.depends_on_arguments.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("capmon-replay-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let p = dir.join(name);
        fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn replays_a_report_against_docker_default_and_a_file() {
        let report = write(
            "r1.json",
            r#"{"syscalls": {"used": ["read", "mount", "socket"], "runtime": ["capset"]}, "granted": ["CAP_CHOWN"]}"#,
        );
        let r = run("docker-default", None, None, &report).expect("replay");
        assert_eq!(r.syscalls, 4);
        assert_eq!(r.caps, vec!["CAP_CHOWN"]);
        assert_eq!(r.replay.would_deny.len(), 1);
        assert_eq!(r.replay.would_deny[0].name, "mount");
        assert_eq!(r.replay.depends_on_arguments, vec!["socket"]);
        let text = render_text(&r);
        assert!(text.contains("would deny 1"), "{text}");
        // With CAP_SYS_ADMIN, Docker's default allows mount.
        let r = run(
            "docker-default",
            Some(vec!["sys_admin".into()]),
            None,
            &report,
        )
        .expect("replay");
        assert!(r.replay.would_deny.is_empty(), "{:?}", r.replay);
        let profile = write(
            "p.json",
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "capset"], "action": "SCMP_ACT_ALLOW"}]}"#,
        );
        let r = run(&profile.to_string_lossy(), None, None, &report).expect("replay");
        let denied: Vec<&str> = r
            .replay
            .would_deny
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(denied, vec!["mount", "socket"]);
    }

    #[test]
    fn bad_input_is_named() {
        let report = write("r2.json", r#"{"syscalls": {"used": ["read", "fly"]}}"#);
        let err = run("docker-default", None, None, &report).expect_err("unknown syscall");
        assert!(
            err.to_string()
                .contains("syscalls.used[1]: unknown syscall \"fly\""),
            "{err}"
        );
        let good = write("r3.json", r#"{"syscalls": {"used": ["read"]}}"#);
        let err =
            run("docker-default", Some(vec!["CAP_FLY".into()]), None, &good).expect_err("cap");
        assert!(err.to_string().contains("CAP_FLY"), "{err}");
        let err = run("/nonexistent/profile.json", None, None, &good).expect_err("missing");
        assert!(
            err.to_string()
                .contains("cannot read /nonexistent/profile.json"),
            "{err}"
        );
        let bad = write(
            "bad.json",
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "ALLOW"}]}"#,
        );
        let err = run(&bad.to_string_lossy(), None, None, &good).expect_err("bad profile");
        assert!(
            err.to_string()
                .contains("syscalls[0].action: unknown action \"ALLOW\""),
            "{err}"
        );
        let err = run("docker-default", None, Some("sparc"), &good).expect_err("arch");
        assert_eq!(
            err.to_string(),
            "unknown architecture \"sparc\": capmon knows x86_64 (amd64) and aarch64 (arm64)"
        );
        // `open` exists on x86_64, not on aarch64.
        let open = write("r5.json", r#"{"syscalls": {"used": ["open"]}}"#);
        let r = run("docker-default", None, Some("x86_64"), &open).expect("x86_64");
        assert_eq!(r.replay.allowed, 1);
        let err = run("docker-default", None, Some("arm64"), &open).expect_err("aarch64");
        assert!(
            err.to_string()
                .contains("unknown syscall \"open\" on aarch64"),
            "{err}"
        );
        let not_report = write("r4.json", r#"{"command": []}"#);
        let err = run("docker-default", None, None, &not_report).expect_err("not a report");
        assert!(
            err.to_string().contains("not a capmon report.json"),
            "{err}"
        );
    }

    #[test]
    fn the_pure_part_takes_the_kernel_from_the_caller() {
        let history = History::parse(
            r#"{"syscalls": {"used": ["ptrace", "read", "read"], "runtime": ["read"]}, "granted": ["CAP_SYS_PTRACE"]}"#,
        )
        .expect("parse");
        let names = history.syscall_names(Arch::X86_64).expect("names");
        assert_eq!(names, vec!["ptrace", "read"]);
        let caps = canonical_caps(&history.granted).expect("caps");
        let docker = Profile::docker_default();
        // Docker's default allows ptrace from kernel 4.8 on (or with CAP_SYS_PTRACE).
        let r = replay(
            "d",
            &docker,
            Vec::new(),
            Arch::X86_64,
            KernelVersion(4, 4),
            &names,
        );
        assert_eq!(r.replay.would_deny.len(), 1, "{:?}", r.replay);
        let r = replay(
            "d",
            &docker,
            Vec::new(),
            Arch::X86_64,
            KernelVersion(4, 8),
            &names,
        );
        assert!(r.replay.would_deny.is_empty(), "{:?}", r.replay);
        let r = replay(
            "d",
            &docker,
            caps,
            Arch::X86_64,
            KernelVersion(4, 4),
            &names,
        );
        assert!(r.replay.would_deny.is_empty(), "{:?}", r.replay);
        assert_eq!(r.caps, vec!["CAP_SYS_PTRACE"]);
        let unknown = History::parse(r#"{"syscalls": {"used": [], "runtime": ["open"]}}"#)
            .expect("parse")
            .syscall_names(Arch::Aarch64)
            .expect_err("no open on aarch64");
        assert_eq!(unknown.field, "syscalls.runtime[0]");
    }
}
