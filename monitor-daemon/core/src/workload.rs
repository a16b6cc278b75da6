//! Workloads: what a user locks down is not one container but all of its replicas, restarts
//! and nodes. A container's workload is derived from its names by a rule table (the first
//! rule that applies wins):
//!
//! | rule | from | workload name | kind |
//! | --- | --- | --- | --- |
//! | 1 | a `capmon.workload` label or annotation | its value | `labelled` |
//! | 2 | Kubernetes pod `name-<pod-template-hash>-<5>` | `k8s:<ns>:<name>:<container>` | `deployment` |
//! | 3 | Kubernetes pod `name-<8+ digits>-<5>` | `k8s:<ns>:<name>:<container>` | `cronjob` |
//! | 4 | Kubernetes pod `name-<5>` | `k8s:<ns>:<name>:<container>` | `controller` (DaemonSet, Job or bare ReplicaSet: the name alone cannot tell) |
//! | 5 | Kubernetes pod `name-<ordinal>` | `k8s:<ns>:<name>:<container>` | `statefulset` |
//! | 6 | any other Kubernetes pod | `k8s:<ns>:<pod>:<container>` | `pod` |
//! | 7 | compose project and service labels | `compose:<project>:<service>` | `compose` |
//! | 8 | a systemd unit's cgroup | `systemd:<unit>` | `systemd` |
//! | 9 | a container name (Docker, podman) | `container:<image repository>:<name without a trailing replica number>` | `container` |
//!
//! `<5>` is the 5-character suffix Kubernetes appends to generated names and
//! `<pod-template-hash>` a 6-10 character hash, both from the alphabet of
//! `k8s.io/apimachinery/pkg/util/rand.SafeEncodeString` (no vowels, no `0`, `1`, `3`), so that
//! a word such as `proxy` in `kube-proxy-x7k2p` is never taken for a hash. A replica number is
//! `-N`, `_N` or `.N` at the end of a name (`web-3`, compose v1's `shop_web_1`).

use serde::Serialize;

/// The label (Docker, podman) or annotation (OCI, Kubernetes) that names a workload outright.
pub const WORKLOAD_LABEL: &str = "capmon.workload";

/// The alphabet of Kubernetes' generated name suffixes and pod-template hashes.
const SAFE_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";

/// What kind of workload a container belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Labelled,
    Deployment,
    CronJob,
    Controller,
    StatefulSet,
    Pod,
    Compose,
    Systemd,
    Container,
}

impl Kind {
    /// The kind's name, as the API and the store show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Labelled => "labelled",
            Kind::Deployment => "deployment",
            Kind::CronJob => "cronjob",
            Kind::Controller => "controller",
            Kind::StatefulSet => "statefulset",
            Kind::Pod => "pod",
            Kind::Compose => "compose",
            Kind::Systemd => "systemd",
            Kind::Container => "container",
        }
    }

    /// The kind named `text` ([`Kind::as_str`]).
    pub fn parse(text: &str) -> Option<Kind> {
        [
            Kind::Labelled,
            Kind::Deployment,
            Kind::CronJob,
            Kind::Controller,
            Kind::StatefulSet,
            Kind::Pod,
            Kind::Compose,
            Kind::Systemd,
            Kind::Container,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// A container's workload.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Workload {
    pub name: String,
    pub kind: Kind,
}

/// What a container is known by.
#[derive(Clone, Debug, Default)]
pub struct Names<'a> {
    /// The `capmon.workload` label or annotation.
    pub label: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub pod: Option<&'a str>,
    pub k8s_container: Option<&'a str>,
    pub compose_project: Option<&'a str>,
    pub compose_service: Option<&'a str>,
    pub systemd_unit: Option<&'a str>,
    /// Container name (Docker, podman).
    pub name: Option<&'a str>,
    /// Image reference.
    pub image: Option<&'a str>,
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// The workload of a container with these names; `None` when nothing names one (a container
/// known by its id alone).
pub fn of(n: &Names<'_>) -> Option<Workload> {
    if let Some(label) = nonempty(n.label) {
        return Some(Workload {
            name: label.to_owned(),
            kind: Kind::Labelled,
        });
    }
    if let (Some(ns), Some(pod)) = (nonempty(n.namespace), nonempty(n.pod)) {
        let (controller, kind) = controller_of(pod);
        let container = nonempty(n.k8s_container).unwrap_or("-");
        return Some(Workload {
            name: format!("k8s:{ns}:{controller}:{container}"),
            kind,
        });
    }
    if let (Some(project), Some(service)) =
        (nonempty(n.compose_project), nonempty(n.compose_service))
    {
        return Some(Workload {
            name: format!("compose:{project}:{service}"),
            kind: Kind::Compose,
        });
    }
    if let Some(unit) = nonempty(n.systemd_unit) {
        return Some(Workload {
            name: format!("systemd:{unit}"),
            kind: Kind::Systemd,
        });
    }
    let name = nonempty(n.name)?;
    let repo = nonempty(n.image).map(repository).unwrap_or("-");
    Some(Workload {
        name: format!("container:{repo}:{}", without_replica_number(name)),
        kind: Kind::Container,
    })
}

fn safe(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| SAFE_ALPHABET.contains(c))
}

/// The controller's name and kind from a pod name (rules 2 to 6).
pub fn controller_of(pod: &str) -> (&str, Kind) {
    let Some((rest, last)) = pod.rsplit_once('-') else {
        return (pod, Kind::Pod);
    };
    if rest.is_empty() {
        return (pod, Kind::Pod);
    }
    if last.len() == 5 && safe(last) {
        if let Some((name, hash)) = rest.rsplit_once('-')
            && !name.is_empty()
        {
            if (6..=10).contains(&hash.len()) && safe(hash) {
                return (name, Kind::Deployment);
            }
            if hash.len() >= 8 && hash.chars().all(|c| c.is_ascii_digit()) {
                return (name, Kind::CronJob);
            }
        }
        return (rest, Kind::Controller);
    }
    if !last.is_empty() && last.chars().all(|c| c.is_ascii_digit()) {
        return (rest, Kind::StatefulSet);
    }
    (pod, Kind::Pod)
}

/// An image reference's repository: without its digest and tag (a registry's port stays).
pub fn repository(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(r, _)| r);
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(colon) => &image[..slash + colon],
        None => image,
    }
}

/// A container name without a trailing replica number (`web-3`, `shop_web_1`, `web.2`).
pub fn without_replica_number(name: &str) -> &str {
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if trimmed.len() == name.len() {
        return name;
    }
    match trimmed.strip_suffix(['-', '_', '.']) {
        Some(stem) if !stem.is_empty() => stem,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k8s<'a>(ns: &'a str, pod: &'a str, container: &'a str) -> Names<'a> {
        Names {
            namespace: Some(ns),
            pod: Some(pod),
            k8s_container: Some(container),
            ..Default::default()
        }
    }

    fn named(n: &Names<'_>) -> (String, Kind) {
        let w = of(n).expect("a workload");
        (w.name, w.kind)
    }

    #[test]
    fn kubernetes_pod_names_give_their_controller() {
        // Real shapes: a Deployment's pods (pod-template-hash of 8 to 10 characters, then 5).
        for (pod, controller, kind) in [
            ("web-7d9f8b6c5-x2x4z", "web", Kind::Deployment),
            ("coredns-5dd5756b68-8qx7w", "coredns", Kind::Deployment),
            (
                "ingress-nginx-controller-6c5f7d7b94-kx4vt",
                "ingress-nginx-controller",
                Kind::Deployment,
            ),
            (
                "metrics-server-67fc4df55-z2nqw",
                "metrics-server",
                Kind::Deployment,
            ),
            // A CronJob's Job's pod: scheduled time in minutes, then 5.
            ("backup-28912345-7bh2k", "backup", Kind::CronJob),
            // DaemonSet, Job or a bare ReplicaSet: the name, then 5.
            ("kube-proxy-x7k2p", "kube-proxy", Kind::Controller),
            ("fluent-bit-9zq4m", "fluent-bit", Kind::Controller),
            ("migrate-db-x9w2c", "migrate-db", Kind::Controller),
            // StatefulSet ordinals.
            ("postgres-0", "postgres", Kind::StatefulSet),
            ("kafka-broker-12", "kafka-broker", Kind::StatefulSet),
            // Anything else is a pod of its own.
            ("debug", "debug", Kind::Pod),
            ("my-proxy", "my-proxy", Kind::Pod),
            ("etcd-control-plane", "etcd-control-plane", Kind::Pod),
            ("-5", "-5", Kind::Pod),
        ] {
            assert_eq!(controller_of(pod), (controller, kind), "{pod}");
        }
        // A word that looks like 5 characters but is not from the hash alphabet.
        assert_eq!(controller_of("kube-proxy"), ("kube-proxy", Kind::Pod));
        assert_eq!(
            named(&k8s("shop", "web-7d9f8b6c5-x2x4z", "app")),
            ("k8s:shop:web:app".into(), Kind::Deployment)
        );
        // Every replica and every restart of the Deployment's container is one workload.
        assert_eq!(
            of(&k8s("shop", "web-7d9f8b6c5-x2x4z", "app")),
            of(&k8s("shop", "web-6b8c9d7f4-q9n2m", "app"))
        );
        // Another container of the same pods is another workload.
        assert_ne!(
            of(&k8s("shop", "web-7d9f8b6c5-x2x4z", "app")),
            of(&k8s("shop", "web-7d9f8b6c5-x2x4z", "sidecar"))
        );
    }

    #[test]
    fn compose_systemd_and_plain_containers() {
        let compose = Names {
            compose_project: Some("shop"),
            compose_service: Some("web"),
            name: Some("shop-web-3"),
            ..Default::default()
        };
        assert_eq!(named(&compose), ("compose:shop:web".into(), Kind::Compose));
        let unit = Names {
            systemd_unit: Some("nginx.service"),
            ..Default::default()
        };
        assert_eq!(
            named(&unit),
            ("systemd:nginx.service".into(), Kind::Systemd)
        );
        let plain = |name, image| Names {
            name: Some(name),
            image: Some(image),
            ..Default::default()
        };
        assert_eq!(
            named(&plain(
                "web-3",
                "registry.example:5000/team/web:1.2@sha256:abc"
            )),
            (
                "container:registry.example:5000/team/web:web".into(),
                Kind::Container
            )
        );
        assert_eq!(
            of(&plain("web-3", "nginx:1.25")),
            of(&plain("web_7", "nginx"))
        );
        assert_eq!(named(&plain("cache", "redis")).0, "container:redis:cache");
        assert_eq!(of(&Names::default()), None);
    }

    #[test]
    fn a_label_overrides_every_rule() {
        let mut n = k8s("shop", "web-7d9f8b6c5-x2x4z", "app");
        n.label = Some("storefront");
        assert_eq!(named(&n), ("storefront".into(), Kind::Labelled));
        n.label = Some("  ");
        assert_eq!(named(&n).1, Kind::Deployment, "a blank label is no label");
    }

    #[test]
    fn image_repositories_and_replica_numbers() {
        for (image, repo) in [
            ("nginx", "nginx"),
            ("nginx:1.25", "nginx"),
            ("docker.io/library/nginx:1.25", "docker.io/library/nginx"),
            ("localhost:5000/app", "localhost:5000/app"),
            ("localhost:5000/app:v2", "localhost:5000/app"),
            ("app@sha256:0123", "app"),
        ] {
            assert_eq!(repository(image), repo, "{image}");
        }
        for (name, stem) in [
            ("web-3", "web"),
            ("shop_web_1", "shop_web"),
            ("web.12", "web"),
            ("web", "web"),
            ("web3", "web3"),
            ("-3", "-3"),
            ("42", "42"),
        ] {
            assert_eq!(without_replica_number(name), stem, "{name}");
        }
        for k in [Kind::Deployment, Kind::Container, Kind::Labelled] {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
    }
}
