//! A container's posture: what it was granted and how it is confined, from the text of
//! `/proc/<pid>/status` (`CapEff`, `CapPrm`, `CapBnd`, `NoNewPrivs`, `Seccomp`, `Uid`, parsed
//! by procfs-core) and its LSM label. The checklist follows Docker's security guidance:
//! privileged, `CAP_SYS_ADMIN`, seccomp off, LSM unconfined or absent, uid 0, no
//! `no-new-privileges`. Reading the files is the daemon's job (`containers::posture`).

use procfs_core::FromRead as _;
use serde::{Deserialize, Serialize};

use crate::names::capability_name;

/// A status text that cannot be parsed.
#[derive(Debug, thiserror::Error)]
#[error("cannot parse /proc/{pid}/status: {source}")]
pub struct StatusError {
    /// The process.
    pub pid: i32,
    /// Why.
    #[source]
    pub source: procfs_core::ProcError,
}

/// `Seccomp:` of `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompMode {
    /// 0: no filter.
    Disabled,
    /// 1: strict mode.
    Strict,
    /// 2: BPF filter.
    Filter,
    /// The kernel did not say.
    Unknown,
}

/// A checklist item (Docker's security guidance), named in JSON and metric labels as
/// [`Check::as_str`] writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Holds every capability of the host's bounding set.
    Privileged,
    /// `CAP_SYS_ADMIN` granted.
    CapSysAdmin,
    /// No seccomp filter.
    SeccompDisabled,
    /// No LSM confinement.
    LsmUnconfined,
    /// Effective uid 0.
    RunsAsRoot,
    /// `no_new_privs` not set.
    NoNewPrivilegesOff,
}

impl Check {
    /// Every item, in the order the checklist reports them.
    pub const ALL: [Check; 6] = [
        Check::Privileged,
        Check::CapSysAdmin,
        Check::SeccompDisabled,
        Check::LsmUnconfined,
        Check::RunsAsRoot,
        Check::NoNewPrivilegesOff,
    ];

    /// Stable name: `privileged`, `cap_sys_admin`, `seccomp_disabled`, `lsm_unconfined`,
    /// `runs_as_root`, `no_new_privileges_off`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Check::Privileged => "privileged",
            Check::CapSysAdmin => "cap_sys_admin",
            Check::SeccompDisabled => "seccomp_disabled",
            Check::LsmUnconfined => "lsm_unconfined",
            Check::RunsAsRoot => "runs_as_root",
            Check::NoNewPrivilegesOff => "no_new_privileges_off",
        }
    }
}

/// One failed checklist item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Which item.
    pub check: Check,
    /// What was seen.
    pub detail: String,
}

/// Granted capabilities and confinement of a process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posture {
    /// The process read.
    pub pid: i32,
    /// Effective capabilities (`CAP_*`, sorted by number).
    pub effective: Vec<String>,
    /// Permitted capabilities.
    pub permitted: Vec<String>,
    /// Bounding set.
    pub bounding: Vec<String>,
    /// Effective uid.
    pub uid: u32,
    /// `no_new_privs` set.
    pub no_new_privs: bool,
    /// Seccomp mode.
    pub seccomp: SeccompMode,
    /// LSM label, when an LSM reports one.
    pub lsm_label: Option<String>,
    /// Checklist items that fail.
    pub findings: Vec<Finding>,
}

fn names(mask: u64) -> Vec<String> {
    (0..64u32)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(capability_name)
        .collect()
}

/// Whether an LSM label means "not confined".
pub fn lsm_unconfined(label: Option<&str>) -> bool {
    match label.map(str::trim) {
        None | Some("") => true,
        Some(l) => {
            l == "unconfined"
                || l.starts_with("unconfined ")
                || l.split(':')
                    .nth(2)
                    .is_some_and(|t| matches!(t, "unconfined_t" | "spc_t" | "kernel_t"))
        }
    }
}

/// Builds the posture from a status text, an LSM label and the host's own bounding set (a
/// container holding all of it is privileged).
pub fn from_status(
    pid: i32,
    status: &str,
    lsm_label: Option<&str>,
    host_bounding: u64,
) -> Result<Posture, StatusError> {
    let s = procfs_core::process::Status::from_read(status.as_bytes())
        .map_err(|source| StatusError { pid, source })?;
    let bounding = s.capbnd.unwrap_or(0);
    let seccomp = match s.seccomp {
        Some(0) => SeccompMode::Disabled,
        Some(1) => SeccompMode::Strict,
        Some(2) => SeccompMode::Filter,
        _ => SeccompMode::Unknown,
    };
    let no_new_privs = s.nonewprivs == Some(1);
    let label = lsm_label
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty());
    let sys_admin = 1u64 << 21;
    let mut findings = Vec::new();
    if host_bounding != 0 && bounding & host_bounding == host_bounding {
        findings.push(Finding {
            check: Check::Privileged,
            detail: "holds every capability of the host's bounding set".into(),
        });
    }
    if (s.capeff | bounding) & sys_admin != 0 {
        findings.push(Finding {
            check: Check::CapSysAdmin,
            detail: "CAP_SYS_ADMIN is granted (nearly root)".into(),
        });
    }
    if seccomp == SeccompMode::Disabled {
        findings.push(Finding {
            check: Check::SeccompDisabled,
            detail: "no seccomp filter".into(),
        });
    }
    if lsm_unconfined(label.as_deref()) {
        findings.push(Finding {
            check: Check::LsmUnconfined,
            detail: label
                .clone()
                .map(|l| format!("LSM label {l}"))
                .unwrap_or_else(|| "no LSM confinement".into()),
        });
    }
    if s.euid == 0 {
        findings.push(Finding {
            check: Check::RunsAsRoot,
            detail: "effective uid 0".into(),
        });
    }
    if !no_new_privs {
        findings.push(Finding {
            check: Check::NoNewPrivilegesOff,
            detail: "no_new_privs is not set".into(),
        });
    }
    Ok(Posture {
        pid,
        effective: names(s.capeff),
        permitted: names(s.capprm),
        bounding: names(bounding),
        uid: s.euid,
        no_new_privs,
        seccomp,
        lsm_label: label,
        findings,
    })
}
/// Whether a process name is a container runtime still setting the container up (runc starts
/// as `/proc/self/exe` = "exe", re-execs itself as "runc", then names itself
/// "runc:[2:INIT]"; crun, youki, runsc and conmon likewise; the kernel side uses the same
/// list). Such a process still holds the runtime's privileges, not the container's.
pub fn is_runtime_setup(comm: &str) -> bool {
    monitor_common::is_runtime_comm(comm.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/self/status` of a root shell on this project's build machine.
    const HOST_ROOT: &str = include_str!("../tests/fixtures/status-host-root.txt");
    const HOST_BND: u64 = 0x0000_01ff_feff_ffff;

    /// The status of a process in a Docker-default container: Docker's 14 capabilities, seccomp
    /// filter, no_new_privs, uid 0 (fields as Linux 6.x prints them).
    fn docker_default() -> String {
        HOST_ROOT
            .replace("CapPrm:\t000001fffeffffff", "CapPrm:\t00000000a80425fb")
            .replace("CapEff:\t000001fffeffffff", "CapEff:\t00000000a80425fb")
            .replace("CapBnd:\t000001fffeffffff", "CapBnd:\t00000000a80425fb")
            .replace("NoNewPrivs:\t0", "NoNewPrivs:\t1")
            .replace("Seccomp:\t0", "Seccomp:\t2")
            .replace("Seccomp_filters:\t0", "Seccomp_filters:\t1")
    }

    fn checks(p: &Posture) -> Vec<&'static str> {
        p.findings.iter().map(|f| f.check.as_str()).collect()
    }

    #[test]
    fn runtime_setup_processes_are_not_the_container() {
        for comm in [
            "runc",
            "runc:[2:INIT]",
            "runc:[1:CHILD]",
            "exe",
            "crun",
            "conmon",
        ] {
            assert!(is_runtime_setup(comm), "{comm}");
        }
        for comm in ["sh", "nginx", "exec", "crond", "runner"] {
            assert!(!is_runtime_setup(comm), "{comm}");
        }
    }

    #[test]
    fn host_root_shell_fails_everything() {
        let p = from_status(1, HOST_ROOT, None, HOST_BND).expect("parse");
        assert_eq!(p.uid, 0);
        assert_eq!(p.seccomp, SeccompMode::Disabled);
        assert!(!p.no_new_privs);
        assert!(p.effective.contains(&"CAP_SYS_ADMIN".to_owned()));
        assert!(
            !p.effective.contains(&"CAP_SYS_RESOURCE".to_owned()),
            "this VM withholds it"
        );
        assert_eq!(
            checks(&p),
            vec![
                "privileged",
                "cap_sys_admin",
                "seccomp_disabled",
                "lsm_unconfined",
                "runs_as_root",
                "no_new_privileges_off"
            ]
        );
    }

    #[test]
    fn docker_default_container() {
        let p = from_status(
            7,
            &docker_default(),
            Some("docker-default (enforce)"),
            HOST_BND,
        )
        .expect("parse");
        assert_eq!(
            p.effective,
            vec![
                "CAP_CHOWN",
                "CAP_DAC_OVERRIDE",
                "CAP_FOWNER",
                "CAP_FSETID",
                "CAP_KILL",
                "CAP_SETGID",
                "CAP_SETUID",
                "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE",
                "CAP_NET_RAW",
                "CAP_SYS_CHROOT",
                "CAP_MKNOD",
                "CAP_AUDIT_WRITE",
                "CAP_SETFCAP"
            ]
        );
        assert_eq!(p.seccomp, SeccompMode::Filter);
        assert!(p.no_new_privs);
        assert_eq!(p.lsm_label.as_deref(), Some("docker-default (enforce)"));
        assert_eq!(checks(&p), vec!["runs_as_root"]);
    }

    #[test]
    fn lsm_labels() {
        assert!(lsm_unconfined(None));
        assert!(lsm_unconfined(Some("unconfined")));
        assert!(lsm_unconfined(Some("unconfined (unconfined)")));
        assert!(lsm_unconfined(Some("system_u:system_r:spc_t:s0")));
        assert!(lsm_unconfined(Some(
            "unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023"
        )));
        assert!(!lsm_unconfined(Some(
            "system_u:system_r:container_t:s0:c123,c456"
        )));
        assert!(!lsm_unconfined(Some("docker-default (enforce)")));
        assert!(!lsm_unconfined(Some("cri-containerd.apparmor.d (enforce)")));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(from_status(3, "not a status file", None, HOST_BND).is_err());
        assert!(from_status(3, "", None, HOST_BND).is_err());
    }

    #[test]
    fn check_names_are_their_json_and_a_posture_reads_back() {
        for c in Check::ALL {
            assert_eq!(serde_json::to_value(c).expect("json"), c.as_str());
        }
        let p = from_status(1, HOST_ROOT, None, HOST_BND).expect("parse");
        let text = serde_json::to_string(&p).expect("json");
        assert!(
            text.contains(r#"{"check":"privileged","detail":"#),
            "{text}"
        );
        assert!(text.contains(r#""seccomp":"disabled""#), "{text}");
        let back: Posture = serde_json::from_str(&text).expect("read back");
        assert_eq!(back, p);
        assert!(serde_json::from_str::<Check>(r#""no_such_check""#).is_err());
    }
}
