//! Least-privilege recommendations: from what a workload was granted and what it was seen to
//! use, the capabilities to keep, drop and add, the warnings a security reviewer wants, and
//! the same advice in every format users paste into their deployments (`docker run` flags,
//! compose, a Kubernetes `securityContext`, an AppArmor capability block, and seccomp profiles
//! as Docker JSON, OCI `linux.seccomp` and a Security Profiles Operator resource).
//!
//! Pure functions over a [`RecordReport`]; `tests/closed_loop.rs` proves with real runc that
//! the advice works.

use std::{collections::BTreeSet, fmt, str::FromStr};

use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    names::Arch,
    report::RecordReport,
    seccomp::{Profile, Target},
};

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

/// One thing a reviewer should look at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Stable code: `cap_sys_admin`, `cap_net_raw`, `cap_sys_ptrace`, `cap_dac_read_search`,
    /// `privileged`, a posture check name, `no_new_privileges_may_break`.
    pub code: String,
    /// The capability concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// Whether the workload needs it (`true`) or it can simply go (`false`).
    pub needed: bool,
    /// What and why.
    pub message: String,
}

/// Capabilities that deserve a warning whenever they are granted, and why.
const DANGEROUS: &[(&str, &str)] = &[
    (
        "CAP_SYS_ADMIN",
        "nearly root: mount, namespaces, BPF, keyrings and many other kernel interfaces",
    ),
    (
        "CAP_NET_RAW",
        "raw and packet sockets: spoofing and sniffing traffic on the container's network \
         (ping can use ICMP datagram sockets instead: sysctl net.ipv4.ping_group_range)",
    ),
    (
        "CAP_SYS_PTRACE",
        "traces and reads the memory of other processes in the PID namespace (the host's with \
         hostPID)",
    ),
    (
        "CAP_DAC_READ_SEARCH",
        "bypasses read permission checks and allows open_by_handle_at, the 'shocker' container \
         escape",
    ),
];

/// What a workload was granted against what it used, and what it should get instead.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Analysis {
    /// Capabilities the workload held.
    pub granted: Vec<String>,
    /// Used (granted, audited, its own).
    pub used: Vec<String>,
    /// Refused checks that made a syscall fail.
    pub denied: Vec<String>,
    /// Only ever checked without audit or without consequence: not needed.
    pub probe_only: Vec<String>,
    /// Granted and never used: drop them.
    pub unused: Vec<String>,
    /// Denied and not granted: the workload failed without them; add them (or fix it).
    pub add: Vec<String>,
    /// The least-privilege set: used plus add.
    pub recommended: Vec<String>,
    /// Whether to set no-new-privileges (`allowPrivilegeEscalation: false`).
    pub no_new_privileges: bool,
    /// Things to look at.
    pub warnings: Vec<Warning>,
}

/// What [`analyze`] needs beyond the report's capability classes.
#[derive(Clone, Debug, Default)]
pub struct Context<'a> {
    /// Capabilities the workload held (`CAP_*`).
    pub granted: &'a [String],
    /// Failed checklist items of its posture (`posture::Finding::check`, detail).
    pub findings: &'a [(String, String)],
    /// Its effective uid, when known.
    pub uid: Option<u32>,
}

fn sorted(set: BTreeSet<&String>) -> Vec<String> {
    let mut v: Vec<String> = set.into_iter().cloned().collect();
    v.sort_by_key(|c| crate::names::capability_number(c).unwrap_or(u32::MAX));
    v
}

/// Compares granted with used and denied.
pub fn analyze(report: &RecordReport, ctx: &Context<'_>) -> Analysis {
    let caps = &report.capabilities;
    let granted: BTreeSet<&String> = ctx.granted.iter().collect();
    let used: BTreeSet<&String> = caps.used.iter().collect();
    let denied: BTreeSet<&String> = caps.denied.iter().collect();
    let probe: BTreeSet<&String> = caps.probe.iter().collect();
    let add: BTreeSet<&String> = denied.difference(&granted).copied().collect();
    let recommended: BTreeSet<&String> = used.union(&add).copied().collect();
    let mut warnings = Vec::new();
    for (cap, why) in DANGEROUS {
        let cap = (*cap).to_owned();
        let needed = recommended.contains(&cap);
        if !needed && !granted.contains(&cap) {
            continue;
        }
        let message = if needed {
            format!("{cap} is needed by the workload; it is dangerous: {why}")
        } else {
            format!("{cap} is granted but never used: drop it ({why})")
        };
        warnings.push(Warning {
            code: cap.to_ascii_lowercase(),
            capability: Some(cap),
            needed,
            message,
        });
    }
    for (check, detail) in ctx.findings {
        warnings.push(Warning {
            code: check.clone(),
            capability: None,
            needed: false,
            message: match check.as_str() {
                "privileged" => format!("privileged ({detail}): run it with the recommended set"),
                "seccomp_disabled" => {
                    format!("{detail}: apply the generated seccomp profile")
                }
                "no_new_privileges_off" => {
                    format!("{detail}: set no-new-privileges (allowPrivilegeEscalation: false)")
                }
                "runs_as_root" => format!("{detail}: run as a non-root user if it allows"),
                "lsm_unconfined" => {
                    format!("{detail}: confine it with an AppArmor or SELinux profile")
                }
                _ => detail.clone(),
            },
        });
    }
    let non_root_with_caps = ctx.uid.is_some_and(|u| u != 0) && !recommended.is_empty();
    if non_root_with_caps {
        warnings.push(Warning {
            code: "no_new_privileges_may_break".into(),
            capability: None,
            needed: false,
            message: "the workload runs as a non-root user and uses capabilities: if it gets \
                      them from a setuid or file-capability binary, no-new-privileges stops \
                      that; grant them as ambient capabilities instead"
                .into(),
        });
    }
    Analysis {
        granted: sorted(granted.clone()),
        used: sorted(used),
        denied: sorted(denied),
        probe_only: sorted(
            probe
                .difference(&recommended)
                .copied()
                .collect::<BTreeSet<_>>(),
        ),
        unused: sorted(granted.difference(&recommended).copied().collect()),
        add: sorted(add),
        recommended: sorted(recommended),
        no_new_privileges: true,
        warnings,
    }
}

/// `CAP_NET_RAW` -> `NET_RAW` (Docker, compose and Kubernetes spell them so).
fn short(cap: &str) -> &str {
    cap.strip_prefix("CAP_").unwrap_or(cap)
}

/// A name usable as a file name, compose service and Kubernetes object name (DNS-1123 label).
pub fn object_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let out = out.trim_matches('-');
    let out: String = out.chars().take(63).collect();
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() {
        "workload".into()
    } else {
        out
    }
}

/// Everything needed to render advice for one workload.
#[derive(Clone, Debug)]
pub struct Advice<'a> {
    /// Container name, or the recorded command.
    pub name: &'a str,
    /// The analysis.
    pub analysis: &'a Analysis,
    /// The generated profile, or why there is none.
    pub profile: Result<&'a Profile, &'a str>,
    /// The architecture and kernel the profile is for (caps are the recommended set).
    pub arch: Arch,
}

impl<'a> Advice<'a> {
    /// The advice for a recorded report.
    pub fn of(name: &'a str, report: &'a RecordReport) -> Self {
        Advice {
            name,
            analysis: &report.analysis,
            profile: report.seccomp_profile.as_ref().ok_or(
                report
                    .seccomp_profile_error
                    .as_deref()
                    .unwrap_or("not generated"),
            ),
            arch: Arch::host(),
        }
    }

    fn seccomp_file(&self) -> String {
        format!("seccomp-{}.json", object_name(self.name))
    }

    fn profile(&self) -> Result<&'a Profile, RecommendError> {
        self.profile.map_err(|reason| RecommendError::NoProfile {
            name: self.name.to_owned(),
            reason: reason.to_owned(),
        })
    }

    /// The advice in `format`.
    pub fn render(&self, format: Format) -> Result<String, RecommendError> {
        let a = self.analysis;
        let adds: Vec<&str> = a.recommended.iter().map(|c| short(c)).collect();
        let mut security_opt = Vec::new();
        Ok(match format {
            Format::Docker => {
                let mut flags = vec!["--cap-drop ALL".to_owned()];
                flags.extend(adds.iter().map(|c| format!("--cap-add {c}")));
                if a.no_new_privileges {
                    flags.push("--security-opt no-new-privileges".into());
                }
                let note = match self.profile {
                    Ok(_) => {
                        flags.push(format!("--security-opt seccomp={}", self.seccomp_file()));
                        format!(
                            "# seccomp profile: `--format seccomp` output saved as {}",
                            self.seccomp_file()
                        )
                    }
                    Err(why) => format!("# no seccomp profile: {why}"),
                };
                format!(
                    "# capmon: least privilege for {}\n{note}\n{}\n",
                    self.name,
                    flags.join(" ")
                )
            }
            Format::Compose => {
                if a.no_new_privileges {
                    security_opt.push("no-new-privileges:true".to_owned());
                }
                if self.profile.is_ok() {
                    security_opt.push(format!("seccomp={}", self.seccomp_file()));
                }
                let mut service = json!({"cap_drop": ["ALL"]});
                if !adds.is_empty() {
                    service["cap_add"] = json!(adds);
                }
                if !security_opt.is_empty() {
                    service["security_opt"] = json!(security_opt);
                }
                let doc = json!({"services": {object_name(self.name): service}});
                format!(
                    "# capmon: least privilege for {}\n{}",
                    self.name,
                    serde_norway::to_string(&doc)?
                )
            }
            Format::Kubernetes => {
                let mut caps = json!({"drop": ["ALL"]});
                if !adds.is_empty() {
                    caps["add"] = json!(adds);
                }
                let mut ctx = json!({"privileged": false, "capabilities": caps});
                // Kubernetes rejects allowPrivilegeEscalation: false with CAP_SYS_ADMIN.
                if a.no_new_privileges && !adds.contains(&"SYS_ADMIN") {
                    ctx["allowPrivilegeEscalation"] = false.into();
                }
                if self.profile.is_ok() {
                    ctx["seccompProfile"] = json!({
                        "type": "Localhost",
                        "localhostProfile": format!("capmon/{}", self.seccomp_file()),
                    });
                }
                format!(
                    "# capmon: least privilege for {} (a container's securityContext)\n{}",
                    self.name,
                    serde_norway::to_string(&json!({"securityContext": ctx}))?
                )
            }
            Format::Apparmor => {
                let mut out = format!(
                    "  # capmon: capability rules for {} (inside the container's AppArmor profile)\n",
                    self.name
                );
                for cap in &a.recommended {
                    out.push_str(&format!("  capability {},\n", short(cap).to_lowercase()));
                }
                for cap in &a.unused {
                    out.push_str(&format!(
                        "  deny capability {},\n",
                        short(cap).to_lowercase()
                    ));
                }
                out
            }
            Format::Seccomp => self.profile()?.to_json_pretty() + "\n",
            Format::Oci => self.oci()?.to_json_pretty() + "\n",
            Format::Spo => {
                let oci = self.oci()?;
                let mut spec: Value = serde_json::to_value(&oci).unwrap_or_default();
                if let Some(obj) = spec.as_object_mut() {
                    // The resource has no defaultErrnoRet: runc's default errno is EPERM.
                    obj.remove("defaultErrnoRet");
                }
                let doc = json!({
                    "apiVersion": "security-profiles-operator.x-k8s.io/v1beta1",
                    "kind": "SeccompProfile",
                    "metadata": {"name": format!("capmon-{}", object_name(self.name))},
                    "spec": spec,
                });
                format!(
                    "# capmon: seccomp profile for {}\n{}",
                    self.name,
                    serde_norway::to_string(&doc)?
                )
            }
        })
    }

    /// The generated profile as the runtime takes it (`linux.seccomp` of the OCI spec).
    pub fn oci(&self) -> Result<Profile, RecommendError> {
        let target = Target {
            arch: self.arch,
            caps: self.analysis.recommended.iter().cloned().collect(),
            kernel: crate::seccomp::KernelVersion::running()
                .unwrap_or(crate::seccomp::KernelVersion(0, 0)),
        };
        Ok(self.profile()?.resolve(&target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(recommended: &[&str], unused: &[&str]) -> Analysis {
        Analysis {
            recommended: recommended.iter().map(|s| s.to_string()).collect(),
            unused: unused.iter().map(|s| s.to_string()).collect(),
            no_new_privileges: true,
            ..Default::default()
        }
    }

    fn yaml(text: &str) -> Value {
        serde_norway::from_str(text).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{text}"))
    }

    #[test]
    fn every_format_for_a_ping_workload() {
        let a = analysis(
            &["CAP_CHOWN", "CAP_NET_RAW"],
            &["CAP_SYS_ADMIN", "CAP_KILL"],
        );
        let profile = Profile::allow_only(Arch::X86_64, &["read", "socket", "execve"]);
        let advice = Advice {
            name: "My App_1",
            analysis: &a,
            profile: Ok(&profile),
            arch: Arch::X86_64,
        };
        let docker = advice.render(Format::Docker).expect("docker");
        assert_eq!(
            docker.lines().last(),
            Some(
                "--cap-drop ALL --cap-add CHOWN --cap-add NET_RAW --security-opt no-new-privileges \
                 --security-opt seccomp=seccomp-my-app-1.json"
            )
        );
        let compose = yaml(&advice.render(Format::Compose).expect("compose"));
        assert_eq!(
            compose,
            json!({"services": {"my-app-1": {
                "cap_drop": ["ALL"],
                "cap_add": ["CHOWN", "NET_RAW"],
                "security_opt": ["no-new-privileges:true", "seccomp=seccomp-my-app-1.json"],
            }}})
        );
        let k8s = yaml(&advice.render(Format::Kubernetes).expect("kubernetes"));
        assert_eq!(
            k8s,
            json!({"securityContext": {
                "privileged": false,
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "NET_RAW"]},
                "seccompProfile": {"type": "Localhost", "localhostProfile": "capmon/seccomp-my-app-1.json"},
            }})
        );
        let apparmor = advice.render(Format::Apparmor).expect("apparmor");
        let rules: Vec<&str> = apparmor.lines().skip(1).map(str::trim).collect();
        assert_eq!(
            rules,
            vec![
                "capability chown,",
                "capability net_raw,",
                "deny capability sys_admin,",
                "deny capability kill,"
            ]
        );
        let seccomp: Value =
            serde_json::from_str(&advice.render(Format::Seccomp).expect("seccomp")).expect("json");
        assert_eq!(
            seccomp["syscalls"][0]["names"],
            json!(["execve", "read", "socket"])
        );
        let oci: Value =
            serde_json::from_str(&advice.render(Format::Oci).expect("oci")).expect("json");
        assert_eq!(oci["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(oci["architectures"], json!(["SCMP_ARCH_X86_64"]));
        assert_eq!(oci["syscalls"][0]["action"], "SCMP_ACT_ALLOW");
        let spo = yaml(&advice.render(Format::Spo).expect("spo"));
        assert_eq!(
            spo["apiVersion"],
            "security-profiles-operator.x-k8s.io/v1beta1"
        );
        assert_eq!(spo["kind"], "SeccompProfile");
        assert_eq!(spo["metadata"]["name"], "capmon-my-app-1");
        assert_eq!(spo["spec"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(
            spo["spec"]["syscalls"][0]["names"],
            json!(["execve", "read", "socket"])
        );
        assert!(spo["spec"].get("defaultErrnoRet").is_none());
    }

    #[test]
    fn no_capabilities_and_no_profile() {
        let a = analysis(&[], &["CAP_CHOWN"]);
        let advice = Advice {
            name: "ls",
            analysis: &a,
            profile: Err("capmon did not see the workload start"),
            arch: Arch::X86_64,
        };
        let docker = advice.render(Format::Docker).expect("docker");
        assert!(
            docker.contains("# no seccomp profile: capmon did not see"),
            "{docker}"
        );
        assert_eq!(
            docker.lines().last(),
            Some("--cap-drop ALL --security-opt no-new-privileges")
        );
        let compose = yaml(&advice.render(Format::Compose).expect("compose"));
        assert_eq!(
            compose,
            json!({"services": {"ls": {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"]}}})
        );
        for format in [Format::Seccomp, Format::Oci, Format::Spo] {
            let err = advice.render(format).expect_err("no profile");
            assert_eq!(
                err.to_string(),
                "no seccomp profile for ls: capmon did not see the workload start"
            );
        }
    }

    #[test]
    fn sys_admin_keeps_kubernetes_valid() {
        let a = analysis(&["CAP_SYS_ADMIN"], &[]);
        let profile = Profile::allow_only(Arch::X86_64, &["mount"]);
        let advice = Advice {
            name: "fuse",
            analysis: &a,
            profile: Ok(&profile),
            arch: Arch::X86_64,
        };
        let k8s = yaml(&advice.render(Format::Kubernetes).expect("kubernetes"));
        // Kubernetes rejects allowPrivilegeEscalation: false together with CAP_SYS_ADMIN.
        assert!(
            k8s["securityContext"]
                .get("allowPrivilegeEscalation")
                .is_none(),
            "{k8s}"
        );
        assert_eq!(
            k8s["securityContext"]["capabilities"]["add"],
            json!(["SYS_ADMIN"])
        );
    }

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

    #[test]
    fn object_names() {
        assert_eq!(object_name("/usr/bin/My App"), "usr-bin-my-app");
        assert_eq!(object_name("---"), "workload");
        assert_eq!(object_name(&"a".repeat(80)).len(), 63);
    }
}
