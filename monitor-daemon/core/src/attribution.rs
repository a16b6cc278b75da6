//! Attribution: a cgroup path (relative to the cgroup2 mount) -> who runs there: container
//! runtime, container id, Kubernetes pod UID and QoS class, systemd unit, or the host.
//!
//! Pure functions over strings, tested on real path shapes of Docker (cgroupfs and systemd
//! drivers), containerd/CRI, CRI-O, podman, Kubernetes (all QoS classes, both drivers, kind and
//! minikube nesting), systemd units and plain runc. Unknown shapes keep their path, never
//! dropped; hostile input (very long, odd bytes) never panics (see the fuzz target).

use serde::Serialize;

/// Who created the container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runtime {
    /// Docker (`docker-<id>.scope`, `/docker/<id>`).
    Docker,
    /// containerd through CRI (`cri-containerd-<id>.scope`).
    Containerd,
    /// CRI-O (`crio-<id>.scope`).
    CriO,
    /// podman (`libpod-<id>`).
    Podman,
    /// A Kubernetes container whose runtime the path does not name (cgroupfs driver).
    Cri,
    /// A container id in an unrecognised parent (plain runc, ctr, ...).
    Unknown,
    /// A systemd service or scope that is not a container.
    Systemd,
    /// The host (root cgroup, `init.scope`).
    Host,
}

impl Runtime {
    /// The name used in JSON and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Cri => "cri",
            Runtime::Unknown => "unknown",
            Runtime::Systemd => "systemd",
            Runtime::Host => "host",
        }
    }

    /// Every runtime.
    pub const ALL: [Runtime; 8] = [
        Runtime::Docker,
        Runtime::Containerd,
        Runtime::CriO,
        Runtime::Podman,
        Runtime::Cri,
        Runtime::Unknown,
        Runtime::Systemd,
        Runtime::Host,
    ];

    /// The runtime named `s` (as [`Runtime::as_str`] writes it).
    pub fn parse(s: &str) -> Option<Self> {
        Runtime::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Kubernetes QoS class, from the `kubepods` level above the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QosClass {
    /// Directly under `kubepods`.
    Guaranteed,
    /// Under `burstable`.
    Burstable,
    /// Under `besteffort`.
    BestEffort,
}

impl QosClass {
    /// Every class.
    pub const ALL: [QosClass; 3] = [
        QosClass::Guaranteed,
        QosClass::Burstable,
        QosClass::BestEffort,
    ];

    /// Lower-case name, as in JSON and Kubernetes' cgroup paths.
    pub const fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "guaranteed",
            QosClass::Burstable => "burstable",
            QosClass::BestEffort => "besteffort",
        }
    }

    /// The class named `s` (as [`QosClass::as_str`] writes it).
    pub fn parse(s: &str) -> Option<Self> {
        QosClass::ALL.into_iter().find(|q| q.as_str() == s)
    }
}

/// What runs in the cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The container's own processes.
    Container,
    /// The runtime's monitor process for a container (`crio-conmon-`, `libpod-conmon-`).
    Conmon,
    /// A Kubernetes pod's cgroup itself (no container level).
    Pod,
    /// Not a container.
    Other,
}

/// The identity of a cgroup.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Identity {
    /// Runtime.
    pub runtime: Runtime,
    /// What runs there.
    pub role: Role,
    /// Full container id (lower-case hex), when the path has one.
    pub container_id: Option<String>,
    /// First 12 characters of the id, as `docker ps` shows it.
    pub short_id: Option<String>,
    /// Kubernetes pod UID with dashes, when under `kubepods`.
    pub pod_uid: Option<String>,
    /// Kubernetes QoS class, when under `kubepods`.
    pub qos: Option<QosClass>,
    /// systemd unit (`nginx.service`) for services and scopes that are not containers.
    pub unit: Option<String>,
    /// The cgroup path, always kept.
    pub path: String,
}

/// Longest path component considered; longer ones are treated as opaque.
const MAX_COMPONENT: usize = 512;

fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `prefix<64 hex>suffix` -> the id.
fn id_between<'a>(component: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    let id = component.strip_prefix(prefix)?.strip_suffix(suffix)?;
    is_hex_id(id).then_some(id)
}

/// A pod UID from `pod<uid>` (cgroupfs, dashes) or `kubepods-<qos>-pod<uid>.slice` /
/// `kubepods-pod<uid>.slice` (systemd, underscores). Returned with dashes.
fn pod_uid(component: &str) -> Option<String> {
    let raw = if let Some(rest) = component.strip_suffix(".slice") {
        rest.rsplit_once("-pod").map(|(_, uid)| uid)?
    } else {
        component.strip_prefix("pod")?
    };
    let uid = raw.replace('_', "-");
    let ok = uid.len() == 36
        && uid.bytes().enumerate().all(|(i, b)| {
            if [8, 13, 18, 23].contains(&i) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        });
    ok.then_some(uid.to_ascii_lowercase())
}

fn qos_of(component: &str) -> Option<QosClass> {
    let c = component.strip_suffix(".slice").unwrap_or(component);
    let level = c.rsplit('-').next().unwrap_or(c);
    match level {
        "burstable" => Some(QosClass::Burstable),
        "besteffort" => Some(QosClass::BestEffort),
        _ => None,
    }
}

/// A container runtime's leaf: (runtime, role, id).
fn container_leaf(component: &str) -> Option<(Runtime, Role, &str)> {
    const SHAPES: &[(&str, &str, Runtime, Role)] = &[
        ("docker-", ".scope", Runtime::Docker, Role::Container),
        (
            "cri-containerd-",
            ".scope",
            Runtime::Containerd,
            Role::Container,
        ),
        ("crio-conmon-", ".scope", Runtime::CriO, Role::Conmon),
        ("crio-", ".scope", Runtime::CriO, Role::Container),
        ("crio-", "", Runtime::CriO, Role::Container),
        ("libpod-conmon-", ".scope", Runtime::Podman, Role::Conmon),
        ("libpod-conmon-", "", Runtime::Podman, Role::Conmon),
        ("libpod-", ".scope", Runtime::Podman, Role::Container),
        ("libpod-", "", Runtime::Podman, Role::Container),
        ("runc-", ".scope", Runtime::Unknown, Role::Container),
    ];
    SHAPES
        .iter()
        .find_map(|(p, s, rt, role)| id_between(component, p, s).map(|id| (*rt, *role, id)))
}

/// What a walk down a cgroup path has found so far.
#[derive(Default)]
struct Walk {
    /// The innermost container: (component index, runtime, role, id).
    found: Option<(usize, Runtime, Role, String)>,
    in_kubepods: bool,
    pod: Option<String>,
    qos: Option<QosClass>,
    pod_level_at: Option<usize>,
}

impl Walk {
    /// Takes component `i` of `components`. The innermost container wins (Docker-in-Docker,
    /// kind and minikube nodes are containers themselves); Kubernetes context is what sits
    /// above it.
    fn step(&mut self, i: usize, components: &[&str]) {
        let c = components[i];
        let base = c.strip_suffix(".slice").unwrap_or(c);
        if base.split('-').any(|t| t == "kubepods") {
            self.kubepods_level(i, c);
            return;
        }
        if self.in_kubepods && self.pod_or_qos_level(i, c) {
            return;
        }
        if let Some((rt, role, cid)) = container_leaf(c) {
            self.found = Some((i, rt, role, cid.to_ascii_lowercase()));
        } else if is_hex_id(c) {
            let parent = if i > 0 { components[i - 1] } else { "" };
            let rt = if self.in_kubepods && self.pod.is_some() {
                Runtime::Cri
            } else if parent == "docker" {
                Runtime::Docker
            } else {
                Runtime::Unknown
            };
            self.found = Some((i, rt, Role::Container, c.to_ascii_lowercase()));
        }
        // Anything else is structure (slices) or a sub-cgroup inside a container (podman's
        // `container`): the container found so far stands until a deeper one replaces it.
        if self.found.as_ref().is_some_and(|f| f.0 == i) && i + 1 < components.len() {
            // A container further down (nested runtime) resets the Kubernetes context unless
            // it re-appears below.
            self.in_kubepods = false;
        }
    }

    /// A `kubepods` component (`kubepods`, `kubepods-burstable.slice`,
    /// `kubepods-besteffort-pod<uid>.slice`, ...).
    fn kubepods_level(&mut self, i: usize, c: &str) {
        if !self.in_kubepods {
            // A new (possibly nested) Kubernetes node: reset what an outer one said.
            self.in_kubepods = true;
            self.pod = None;
            self.qos = None;
        }
        if let Some(q) = qos_of(c) {
            self.qos = Some(q);
        }
        if let Some(uid) = pod_uid(c) {
            self.pod = Some(uid);
            self.pod_level_at = Some(i);
        }
    }

    /// Inside kubepods (cgroupfs driver): `burstable`, `besteffort`, `pod<uid>`. Whether `c`
    /// was one.
    fn pod_or_qos_level(&mut self, i: usize, c: &str) -> bool {
        if let Some(q) = qos_of(c).filter(|_| matches!(c, "burstable" | "besteffort")) {
            self.qos = Some(q);
            return true;
        }
        if let Some(uid) = pod_uid(c) {
            self.pod = Some(uid);
            self.pod_level_at = Some(i);
            return true;
        }
        false
    }

    /// The identity once every component was taken.
    fn finish(self, mut id: Identity, components: &[&str]) -> Identity {
        // Kubernetes context only applies if it sits above the container found.
        if let Some((at, rt, role, cid)) = self.found {
            id.runtime = rt;
            id.role = role;
            id.short_id = Some(cid.chars().take(12).collect());
            id.container_id = Some(cid);
            if self.pod_level_at.is_some_and(|p| p < at) {
                id.pod_uid = self.pod;
                id.qos = Some(self.qos.unwrap_or(QosClass::Guaranteed));
            }
            return id;
        }
        if let Some(uid) = self.pod {
            id.runtime = Runtime::Cri;
            id.role = Role::Pod;
            id.pod_uid = Some(uid);
            id.qos = Some(self.qos.unwrap_or(QosClass::Guaranteed));
            return id;
        }
        if let Some(unit) = components
            .iter()
            .rev()
            .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
        {
            id.runtime = Runtime::Systemd;
            id.unit = Some((*unit).to_owned());
            return id;
        }
        id.runtime = if self.in_kubepods {
            Runtime::Cri
        } else {
            Runtime::Unknown
        };
        id
    }
}

/// The identity of the cgroup at `path` (relative to the cgroup2 mount, starting with `/`).
pub fn identify(path: &str) -> Identity {
    let id = Identity {
        runtime: Runtime::Host,
        role: Role::Other,
        container_id: None,
        short_id: None,
        pod_uid: None,
        qos: None,
        unit: None,
        path: path.to_owned(),
    };
    // Overlong components are kept as opaque placeholders: they match nothing.
    let components: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(|c| if c.len() > MAX_COMPONENT { "?" } else { c })
        .collect();
    if components.is_empty() || components == ["init.scope"] {
        return id;
    }
    let mut walk = Walk::default();
    for i in 0..components.len() {
        walk.step(i, &components);
    }
    walk.finish(id, &components)
}

#[cfg(test)]
mod tests;
