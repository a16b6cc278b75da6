//! A container's posture: what it was granted and how it is confined, from the credentials the
//! kernel side read at the container's first exec ([`from_exec`]) or from the text of
//! `/proc/<pid>/status` (`CapEff`, `CapPrm`, `CapBnd`, `NoNewPrivs`, `Seccomp`, `Uid`, parsed
//! by procfs-core, [`from_status`]) and its LSM label. The checklist follows Docker's security guidance:
//! privileged, `CAP_SYS_ADMIN`, seccomp off, LSM unconfined or absent, uid 0, no
//! `no-new-privileges`. Reading the files is the daemon's job (`containers::posture`).

use procfs_core::FromRead as _;
use serde::{Deserialize, Serialize};

use crate::names::{capability_name, capability_number};

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

/// Where a posture was read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PostureSource {
    /// `/proc/<pid>/status` of a process of the container.
    #[default]
    Proc,
    /// The task's credentials, read by the kernel side at the container's first exec.
    Kernel,
    /// The OCI runtime spec in the container's bundle: what its runtime asked for (used when
    /// no process of the container was read).
    Spec,
}

/// Granted capabilities and confinement of a process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posture {
    /// The process read.
    pub pid: i32,
    /// Where it was read.
    #[serde(default)]
    pub source: PostureSource,
    /// Effective capabilities (`CAP_*`, sorted by number).
    pub effective: Vec<String>,
    /// Permitted capabilities.
    pub permitted: Vec<String>,
    /// Bounding set.
    pub bounding: Vec<String>,
    /// Inheritable set (known when read by the kernel side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inheritable: Option<Vec<String>>,
    /// Ambient set (known when read by the kernel side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ambient: Option<Vec<String>>,
    /// Effective uid.
    pub uid: u32,
    /// Effective gid (known when read by the kernel side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
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

impl Posture {
    /// This posture with the LSM label `label` (read apart from the credentials), its
    /// LSM finding redone.
    pub fn with_label(mut self, label: Option<&str>) -> Posture {
        let label = label.map(str::trim).filter(|l| !l.is_empty());
        self.lsm_label = label.map(str::to_owned);
        self.findings.retain(|f| f.check != Check::LsmUnconfined);
        if lsm_unconfined(label) {
            self.findings.push(lsm_finding(label));
            self.findings.sort_by_key(|f| f.check);
        }
        self
    }
}

/// The finding of an unconfined (or unlabelled) process.
fn lsm_finding(label: Option<&str>) -> Finding {
    Finding {
        check: Check::LsmUnconfined,
        detail: label
            .map(|l| format!("LSM label {l}"))
            .unwrap_or_else(|| "no LSM confinement".into()),
    }
}

/// What a posture is built from, wherever it was read.
struct Raw {
    pid: i32,
    source: PostureSource,
    effective: u64,
    permitted: u64,
    bounding: u64,
    inheritable: Option<u64>,
    ambient: Option<u64>,
    euid: u32,
    egid: Option<u32>,
    no_new_privs: bool,
    seccomp: SeccompMode,
}

impl SeccompMode {
    /// The mode the kernel numbers `n` (`Seccomp:` of the status, `task->seccomp.mode`).
    pub fn from_number(n: u32) -> Self {
        match n {
            0 => SeccompMode::Disabled,
            1 => SeccompMode::Strict,
            2 => SeccompMode::Filter,
            _ => SeccompMode::Unknown,
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
    let raw = Raw {
        pid,
        source: PostureSource::Proc,
        effective: s.capeff,
        permitted: s.capprm,
        bounding: s.capbnd.unwrap_or(0),
        inheritable: None,
        ambient: None,
        euid: s.euid,
        egid: None,
        no_new_privs: s.nonewprivs == Some(1),
        seccomp: s
            .seccomp
            .map_or(SeccompMode::Unknown, SeccompMode::from_number),
    };
    Ok(build(raw, lsm_label, host_bounding))
}

/// Builds the posture from the credentials the kernel side read at a cgroup's first exec;
/// `None` when it could not read the capability sets. The LSM label is not read there.
pub fn from_exec(e: &monitor_common::ExecEvent, host_bounding: u64) -> Option<Posture> {
    use monitor_common::exec_read;
    if e.read & exec_read::CAPS == 0 {
        return None;
    }
    let [inheritable, permitted, effective, bounding, ambient] = e.caps;
    let ids = (e.read & exec_read::IDS != 0).then_some(e.ids);
    let raw = Raw {
        pid: e.tgid as i32,
        source: PostureSource::Kernel,
        effective,
        permitted,
        bounding,
        inheritable: Some(inheritable),
        ambient: Some(ambient),
        // uid, gid, suid, sgid, euid, egid, fsuid, fsgid.
        euid: ids.map_or(0, |i| i[4]),
        egid: ids.map(|i| i[5]),
        no_new_privs: e.read & exec_read::FLAGS != 0 && e.atomic_flags & 1 != 0,
        seccomp: if e.read & exec_read::SECCOMP != 0 {
            SeccompMode::from_number(e.seccomp_mode)
        } else {
            SeccompMode::Unknown
        },
    };
    Some(build(raw, None, host_bounding))
}

/// Builds the posture the runtime asked for in a container's OCI spec: its capability sets,
/// user, `noNewPrivileges`, seccomp filter or none, AppArmor profile or SELinux label.
pub fn from_spec(a: &crate::oci::Applied, host_bounding: u64) -> Posture {
    let mask = |names: &[String]| {
        names
            .iter()
            .filter_map(|n| capability_number(n))
            .fold(0u64, |m, c| m | (1u64 << c))
    };
    let caps = &a.capabilities;
    let raw = Raw {
        pid: 0,
        source: PostureSource::Spec,
        effective: mask(&caps.effective),
        permitted: mask(&caps.permitted),
        bounding: mask(&caps.bounding),
        inheritable: Some(mask(&caps.inheritable)),
        ambient: Some(mask(&caps.ambient)),
        euid: a.uid,
        egid: Some(a.gid),
        no_new_privs: a.no_new_privileges,
        seccomp: match a.seccomp {
            Some(_) => SeccompMode::Filter,
            None => SeccompMode::Disabled,
        },
    };
    let label = a.apparmor_profile.as_deref().or(a.selinux_label.as_deref());
    build(raw, label, host_bounding)
}

/// The posture of `raw`, with the checklist items it fails.
fn build(raw: Raw, lsm_label: Option<&str>, host_bounding: u64) -> Posture {
    let label = lsm_label
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty());
    let findings = findings(&raw, label.as_deref(), host_bounding);
    Posture {
        pid: raw.pid,
        source: raw.source,
        effective: names(raw.effective),
        permitted: names(raw.permitted),
        bounding: names(raw.bounding),
        inheritable: raw.inheritable.map(names),
        ambient: raw.ambient.map(names),
        uid: raw.euid,
        gid: raw.egid,
        no_new_privs: raw.no_new_privs,
        seccomp: raw.seccomp,
        lsm_label: label,
        findings,
    }
}

/// The checklist items `raw` fails.
fn findings(raw: &Raw, label: Option<&str>, host_bounding: u64) -> Vec<Finding> {
    let sys_admin = 1u64 << 21;
    let mut findings = Vec::new();
    let mut fail = |check, detail: String| findings.push(Finding { check, detail });
    if host_bounding != 0 && raw.bounding & host_bounding == host_bounding {
        fail(
            Check::Privileged,
            "holds every capability of the host's bounding set".into(),
        );
    }
    if (raw.effective | raw.bounding) & sys_admin != 0 {
        fail(
            Check::CapSysAdmin,
            "CAP_SYS_ADMIN is granted (nearly root)".into(),
        );
    }
    if raw.seccomp == SeccompMode::Disabled {
        fail(Check::SeccompDisabled, "no seccomp filter".into());
    }
    if lsm_unconfined(label) {
        let f = lsm_finding(label);
        fail(f.check, f.detail);
    }
    if raw.euid == 0 {
        fail(Check::RunsAsRoot, "effective uid 0".into());
    }
    if !raw.no_new_privs {
        fail(Check::NoNewPrivilegesOff, "no_new_privs is not set".into());
    }
    findings
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

    /// A first exec's credentials as the kernel side sends them.
    fn exec_event(read: u32, caps: [u64; 5], ids: [u32; 8]) -> monitor_common::ExecEvent {
        monitor_common::ExecEvent {
            kind: monitor_common::kind::FIRST_EXEC,
            pid: 41,
            tgid: 40,
            read,
            cgroup_id: 9,
            caps,
            ids,
            atomic_flags: 1,
            seccomp_mode: 2,
            _pad: 0,
            comm: [0; 16],
        }
    }

    #[test]
    fn kernel_posture_equals_the_status_of_the_same_process() {
        use monitor_common::exec_read::{CAPS, FLAGS, IDS, SECCOMP};
        let docker = 0xa804_25fb;
        let e = exec_event(
            CAPS | IDS | FLAGS | SECCOMP,
            [0, docker, docker, docker, 0],
            [0; 8],
        );
        let k = from_exec(&e, HOST_BND).expect("caps read");
        let p = from_status(40, &docker_default(), None, HOST_BND).expect("parse");
        assert_eq!(k.source, PostureSource::Kernel);
        assert_eq!(p.source, PostureSource::Proc);
        assert_eq!(
            (&k.effective, &k.permitted, &k.bounding),
            (&p.effective, &p.permitted, &p.bounding)
        );
        assert_eq!((k.pid, k.uid, k.gid), (40, 0, Some(0)));
        assert_eq!((k.no_new_privs, k.seccomp), (true, SeccompMode::Filter));
        assert_eq!(k.inheritable.as_deref(), Some(&[][..]));
        assert_eq!(k.findings, p.findings);
    }

    #[test]
    fn kernel_posture_reads_ids_and_says_what_it_could_not_read() {
        use monitor_common::exec_read::{CAPS, IDS};
        let mut ids = [1000; 8];
        ids[5] = 1001;
        let k =
            from_exec(&exec_event(CAPS | IDS, [0, 0, 0, 1 << 21, 1], ids), 0).expect("caps read");
        assert_eq!((k.uid, k.gid), (1000, Some(1001)));
        assert_eq!(k.ambient.as_deref(), Some(&["CAP_CHOWN".to_owned()][..]));
        // Neither flags nor the seccomp mode were read: unknown, never "off" by accident.
        assert_eq!(k.seccomp, SeccompMode::Unknown);
        assert!(!k.no_new_privs);
        assert_eq!(
            checks(&k),
            vec!["cap_sys_admin", "lsm_unconfined", "no_new_privileges_off"]
        );
        assert!(from_exec(&exec_event(IDS, [0; 5], ids), 0).is_none());
        // The label, read apart, redoes the LSM finding only.
        let confined = k.clone().with_label(Some("docker-default (enforce)\n"));
        assert_eq!(
            confined.lsm_label.as_deref(),
            Some("docker-default (enforce)")
        );
        assert_eq!(
            checks(&confined),
            vec!["cap_sys_admin", "no_new_privileges_off"]
        );
        assert_eq!(confined.with_label(None).findings, k.findings);
    }

    #[test]
    fn a_spec_posture_equals_the_status_of_the_container_it_starts() {
        let spec = crate::oci::Applied::parse(&format!(
            r#"{{"process":{{"user":{{"uid":0,"gid":0}},"noNewPrivileges":true,
                "capabilities":{{"bounding":{caps},"effective":{caps},"permitted":{caps}}}}},
              "linux":{{"seccomp":{{"defaultAction":"SCMP_ACT_ERRNO"}}}}}}"#,
            caps = serde_json::to_string(crate::seccomp::DOCKER_DEFAULT_CAPS).expect("json"),
        ))
        .expect("spec");
        let s = from_spec(&spec, HOST_BND);
        let p = from_status(7, &docker_default(), None, HOST_BND).expect("status");
        assert_eq!(s.source, PostureSource::Spec);
        assert_eq!((&s.bounding, &s.effective), (&p.bounding, &p.effective));
        assert_eq!(
            (s.uid, s.no_new_privs, s.seccomp),
            (0, true, SeccompMode::Filter)
        );
        assert_eq!(s.ambient.as_deref(), Some(&[][..]));
        assert_eq!(checks(&s), checks(&p));
        let confined = crate::oci::Applied::parse(
            r#"{"process":{"user":{"uid":1000,"gid":1000},"apparmorProfile":"docker-default"}}"#,
        )
        .expect("spec");
        let c = from_spec(&confined, HOST_BND);
        assert_eq!(c.lsm_label.as_deref(), Some("docker-default"));
        assert_eq!(checks(&c), ["seccomp_disabled", "no_new_privileges_off"]);
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
