//! What a container runtime applied, from the OCI runtime spec in its bundle (`config.json`):
//! the capability sets it asked for, its seccomp profile, `noNewPrivileges`, the user, the
//! LSM labels, and the Kubernetes names its annotations carry (containerd's CRI plugin and
//! CRI-O write them; no CRI socket or kubelet is needed). Reading the file is the daemon's job.
//!
//! Bundles: containerd `/run/containerd/io.containerd.runtime.v2.task/<namespace>/<id>/`
//! (Docker's own containers in namespace `moby`); CRI-O and podman
//! `/run/containers/storage/overlay-containers/<id>/userdata/`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::seccomp::{Profile, SeccompError};

/// A `config.json` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Not an OCI runtime spec.
    #[error("not an OCI runtime spec: {0}")]
    Json(#[from] serde_json::Error),
    /// Its `linux.seccomp` is not a profile capmon can read.
    #[error("linux.seccomp: {0}")]
    Seccomp(#[from] SeccompError),
}

/// The capability sets of `process.capabilities` (`CAP_*` names as the spec writes them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CapabilitySets {
    /// Bounding set.
    pub bounding: Vec<String>,
    /// Effective set.
    pub effective: Vec<String>,
    /// Permitted set.
    pub permitted: Vec<String>,
    /// Inheritable set.
    pub inheritable: Vec<String>,
    /// Ambient set.
    pub ambient: Vec<String>,
}

/// Whether a Kubernetes container is a pod's sandbox (the pause container) or a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerType {
    /// The pod's sandbox (`pause`).
    Sandbox,
    /// A workload container.
    Container,
}

/// Kubernetes names from the spec's annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubernetesNames {
    /// Pod namespace.
    pub namespace: Option<String>,
    /// Pod name.
    pub pod: Option<String>,
    /// Container name (none for a sandbox).
    pub container: Option<String>,
    /// Sandbox or workload, when the runtime says.
    pub container_type: Option<ContainerType>,
    /// The sandbox's id (containerd).
    pub sandbox_id: Option<String>,
    /// Image name (containerd).
    pub image: Option<String>,
}

/// What the runtime applied to a container.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// `process.capabilities`.
    pub capabilities: CapabilitySets,
    /// `linux.seccomp`, when a profile was applied.
    pub seccomp: Option<Profile>,
    /// `process.noNewPrivileges`.
    pub no_new_privileges: bool,
    /// `process.user.uid`.
    pub uid: u32,
    /// `process.user.gid`.
    pub gid: u32,
    /// `process.apparmorProfile`.
    pub apparmor_profile: Option<String>,
    /// `process.selinuxLabel`.
    pub selinux_label: Option<String>,
    /// Kubernetes names, when the annotations carry them.
    pub kubernetes: Option<KubernetesNames>,
    /// Every annotation.
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Spec {
    #[serde(default)]
    process: Process,
    #[serde(default)]
    linux: Linux,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Process {
    capabilities: CapabilitySets,
    no_new_privileges: bool,
    user: User,
    apparmor_profile: Option<String>,
    selinux_label: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct User {
    uid: u32,
    gid: u32,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Linux {
    seccomp: Option<serde_json::Value>,
}

/// containerd's CRI plugin.
const CRI_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
const CRI_POD: &str = "io.kubernetes.cri.sandbox-name";
const CRI_CONTAINER: &str = "io.kubernetes.cri.container-name";
const CRI_TYPE: &str = "io.kubernetes.cri.container-type";
const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
const CRI_IMAGE: &str = "io.kubernetes.cri.image-name";
/// CRI-O.
const CRIO_NAMESPACE: &str = "io.kubernetes.pod.namespace";
const CRIO_POD: &str = "io.kubernetes.pod.name";
const CRIO_CONTAINER: &str = "io.kubernetes.container.name";
const CRIO_TYPE: &str = "io.kubernetes.cri-o.ContainerType";

impl Applied {
    /// Reads a `config.json`.
    pub fn parse(text: &str) -> Result<Applied, SpecError> {
        let spec: Spec = serde_json::from_str(text)?;
        let seccomp = match spec.linux.seccomp {
            Some(v) => Some(Profile::parse(&v.to_string())?),
            None => None,
        };
        Ok(Applied {
            kubernetes: kubernetes_names(&spec.annotations),
            capabilities: spec.process.capabilities,
            seccomp,
            no_new_privileges: spec.process.no_new_privileges,
            uid: spec.process.user.uid,
            gid: spec.process.user.gid,
            apparmor_profile: spec.process.apparmor_profile.filter(|p| !p.is_empty()),
            selinux_label: spec.process.selinux_label.filter(|l| !l.is_empty()),
            annotations: spec.annotations,
        })
    }
}

/// The Kubernetes names in containerd's or CRI-O's annotations; `None` when there are none.
pub fn kubernetes_names(a: &BTreeMap<String, String>) -> Option<KubernetesNames> {
    let get = |cri: &str, crio: &str| a.get(cri).or_else(|| a.get(crio)).cloned();
    let container_type =
        a.get(CRI_TYPE)
            .or_else(|| a.get(CRIO_TYPE))
            .and_then(|t| match t.as_str() {
                "sandbox" => Some(ContainerType::Sandbox),
                "container" => Some(ContainerType::Container),
                _ => None,
            });
    let names = KubernetesNames {
        namespace: get(CRI_NAMESPACE, CRIO_NAMESPACE),
        pod: get(CRI_POD, CRIO_POD),
        container: get(CRI_CONTAINER, CRIO_CONTAINER),
        container_type,
        sandbox_id: a.get(CRI_SANDBOX_ID).cloned(),
        image: a.get(CRI_IMAGE).cloned(),
    };
    (names.pod.is_some() || names.namespace.is_some()).then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A containerd CRI workload container's spec, trimmed to the fields capmon reads (shape
    /// as containerd 1.6 writes it).
    const CRI_CONTAINER_SPEC: &str = r#"{
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 1000, "gid": 3000},
            "args": ["/bin/sh", "-c", "sleep 1"],
            "capabilities": {
                "bounding": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]
            },
            "noNewPrivileges": true,
            "apparmorProfile": "cri-containerd.apparmor.d"
        },
        "linux": {
            "seccomp": {
                "defaultAction": "SCMP_ACT_ERRNO",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
            }
        },
        "annotations": {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": "app",
            "io.kubernetes.cri.sandbox-id": "5f0e",
            "io.kubernetes.cri.sandbox-name": "web-7d4b9c-x2x9q",
            "io.kubernetes.cri.sandbox-namespace": "shop",
            "io.kubernetes.cri.image-name": "registry.example/web:1.2"
        }
    }"#;

    #[test]
    fn reads_what_containerd_applied() {
        let a = Applied::parse(CRI_CONTAINER_SPEC).expect("parse");
        assert_eq!(
            a.capabilities.bounding,
            ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]
        );
        assert!(a.capabilities.ambient.is_empty());
        assert!(a.no_new_privileges);
        assert_eq!((a.uid, a.gid), (1000, 3000));
        assert_eq!(
            a.apparmor_profile.as_deref(),
            Some("cri-containerd.apparmor.d")
        );
        let profile = a.seccomp.expect("a profile");
        assert_eq!(profile.default_action, "SCMP_ACT_ERRNO");
        let k = a.kubernetes.expect("kubernetes names");
        assert_eq!(k.namespace.as_deref(), Some("shop"));
        assert_eq!(k.pod.as_deref(), Some("web-7d4b9c-x2x9q"));
        assert_eq!(k.container.as_deref(), Some("app"));
        assert_eq!(k.container_type, Some(ContainerType::Container));
        assert_eq!(k.image.as_deref(), Some("registry.example/web:1.2"));
    }

    #[test]
    fn a_sandbox_and_cri_o_names() {
        let sandbox = BTreeMap::from([
            (CRI_TYPE.to_owned(), "sandbox".to_owned()),
            (CRI_POD.to_owned(), "web-0".to_owned()),
            (CRI_NAMESPACE.to_owned(), "shop".to_owned()),
        ]);
        let k = kubernetes_names(&sandbox).expect("names");
        assert_eq!(k.container_type, Some(ContainerType::Sandbox));
        assert_eq!(k.container, None);
        let crio = BTreeMap::from([
            (CRIO_POD.to_owned(), "db-0".to_owned()),
            (CRIO_NAMESPACE.to_owned(), "data".to_owned()),
            (CRIO_CONTAINER.to_owned(), "postgres".to_owned()),
        ]);
        let k = kubernetes_names(&crio).expect("names");
        assert_eq!(
            (
                k.pod.as_deref(),
                k.namespace.as_deref(),
                k.container.as_deref()
            ),
            (Some("db-0"), Some("data"), Some("postgres"))
        );
        assert_eq!(kubernetes_names(&BTreeMap::new()), None);
    }

    #[test]
    fn a_plain_runc_spec_and_bad_input() {
        let a = Applied::parse(r#"{"process":{"args":["sh"]}}"#).expect("minimal spec");
        assert_eq!(a.seccomp, None);
        assert!(!a.no_new_privileges);
        assert_eq!(a.kubernetes, None);
        assert!(matches!(
            Applied::parse("not json"),
            Err(SpecError::Json(_))
        ));
        let bad = r#"{"linux":{"seccomp":{"defaultAction":"SCMP_ACT_SOMETIMES"}}}"#;
        let e = Applied::parse(bad).expect_err("bad action");
        assert!(e.to_string().starts_with("linux.seccomp: "), "{e}");
    }
}
