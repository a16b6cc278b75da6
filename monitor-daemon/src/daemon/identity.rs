//! What a container is called and what its runtime applied, learned outside the kernel:
//! Docker's event stream (name, image, compose and Kubernetes labels), the runtime's OCI
//! bundle (what it applied, Kubernetes names from annotations), the API's inspect answer.
//! These often arrive before the container's cgroup is resolved (a `--rm` container's create
//! event comes before its first process): they wait in [`Pending`] until the model adopts it.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use capmon_core::{
    names::Arch,
    oci::{Applied, CapabilitySets, ContainerType, KubernetesNames},
    posture::{self, Posture},
    runtime_api::ContainerNames,
    seccomp::{AppliedDiff, KernelVersion, Profile, Target},
};
use serde::{Deserialize, Serialize};

/// What the runtime applied to a container, from its OCI spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppliedSpec {
    /// `process.capabilities`.
    pub capabilities: CapabilitySets,
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
    /// Digest of `linux.seccomp` (the store keeps each distinct profile once, by digest).
    pub seccomp_digest: Option<String>,
    /// `linux.seccomp`, shared between the containers that got the same profile.
    #[serde(skip)]
    pub seccomp: Option<Arc<Profile>>,
}

impl Eq for AppliedSpec {}

/// Distinct profiles kept shared (most containers of a node get one of a few).
const INTERNED_PROFILES: usize = 256;

/// The digest of a profile: FNV-1a over its JSON, in hex.
pub fn profile_digest(p: &Profile) -> String {
    let json = serde_json::to_string(p).unwrap_or_default();
    let h = json.bytes().fold(monitor_common::FNV_OFFSET, |h, b| {
        monitor_common::fnv1a_step(h, u64::from(b))
    });
    format!("{h:016x}")
}

/// The shared copy of `p` under `digest`.
pub fn intern(digest: &str, p: Profile) -> Arc<Profile> {
    static TABLE: OnceLock<Mutex<HashMap<String, Arc<Profile>>>> = OnceLock::new();
    let Ok(mut t) = TABLE.get_or_init(Default::default).lock() else {
        return Arc::new(p);
    };
    if let Some(shared) = t.get(digest) {
        return Arc::clone(shared);
    }
    let shared = Arc::new(p);
    if t.len() < INTERNED_PROFILES {
        t.insert(digest.to_owned(), Arc::clone(&shared));
    }
    shared
}

impl AppliedSpec {
    /// The applied part of a parsed spec.
    pub fn of(a: &Applied) -> Self {
        let (seccomp_digest, seccomp) = match &a.seccomp {
            Some(p) => {
                let d = profile_digest(p);
                let shared = intern(&d, p.clone());
                (Some(d), Some(shared))
            }
            None => (None, None),
        };
        AppliedSpec {
            capabilities: a.capabilities.clone(),
            no_new_privileges: a.no_new_privileges,
            uid: a.uid,
            gid: a.gid,
            apparmor_profile: a.apparmor_profile.clone(),
            selinux_label: a.selinux_label.clone(),
            seccomp_digest,
            seccomp,
        }
    }

    /// The LSM label the runtime asked for.
    pub fn label(&self) -> Option<&str> {
        self.apparmor_profile
            .as_deref()
            .or(self.selinux_label.as_deref())
    }
}

/// The syscalls `observed` (made, or refused by seccomp) against the seccomp profile the
/// runtime applied; `None` when it applied none (or capmon could not read it).
pub fn applied_diff(a: &AppliedSpec, observed: &BTreeSet<String>) -> Option<AppliedDiff> {
    static ALLOWED: OnceLock<Mutex<HashMap<String, Arc<BTreeSet<String>>>>> = OnceLock::new();
    let profile = a.seccomp.as_ref()?;
    let target = Target {
        arch: Arch::host(),
        caps: BTreeSet::new(),
        kernel: KernelVersion::running().unwrap_or(KernelVersion(0, 0)),
    };
    let digest = a.seccomp_digest.clone().unwrap_or_default();
    let cached = ALLOWED
        .get_or_init(Default::default)
        .lock()
        .ok()
        .and_then(|t| t.get(&digest).cloned());
    let allowed = match cached {
        Some(a) => a,
        None => {
            let set = Arc::new(profile.allowed(&target));
            if let Ok(mut t) = ALLOWED.get_or_init(Default::default).lock()
                && t.len() < INTERNED_PROFILES
            {
                t.insert(digest, set.clone());
            }
            set
        }
    };
    Some(AppliedDiff::with_allowed(
        profile, &target, &allowed, observed,
    ))
}

/// Names from one source; a field left `None` says nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    /// Container name.
    pub name: Option<String>,
    /// Image.
    pub image: Option<String>,
    /// Compose project.
    pub compose_project: Option<String>,
    /// Compose service.
    pub compose_service: Option<String>,
    /// Kubernetes namespace.
    pub namespace: Option<String>,
    /// Kubernetes pod.
    pub pod: Option<String>,
    /// Kubernetes container name.
    pub k8s_container: Option<String>,
    /// A pod's sandbox (pause) container.
    pub sandbox: Option<bool>,
    /// The `capmon.workload` label or annotation.
    pub workload: Option<String>,
}

impl Names {
    /// What a container API told (inspect, or an event).
    pub fn from_api(n: ContainerNames) -> Self {
        Names {
            name: Some(n.name),
            image: Some(n.image),
            compose_project: n.compose_project,
            compose_service: n.compose_service,
            namespace: n.pod_namespace,
            pod: n.pod_name,
            k8s_container: n.k8s_container,
            sandbox: None,
            workload: n.workload,
        }
    }

    /// What a spec's Kubernetes annotations say.
    pub fn from_kubernetes(k: &KubernetesNames) -> Self {
        Names {
            image: k.image.clone(),
            namespace: k.namespace.clone(),
            pod: k.pod.clone(),
            k8s_container: k.container.clone(),
            sandbox: k.container_type.map(|t| t == ContainerType::Sandbox),
            ..Names::default()
        }
    }

    /// `later` over these: its fields that say something win.
    pub fn merge(&mut self, later: Names) {
        fn take<T>(slot: &mut Option<T>, v: Option<T>) {
            if v.is_some() {
                *slot = v;
            }
        }
        take(&mut self.name, later.name);
        take(&mut self.image, later.image);
        take(&mut self.compose_project, later.compose_project);
        take(&mut self.compose_service, later.compose_service);
        take(&mut self.namespace, later.namespace);
        take(&mut self.pod, later.pod);
        take(&mut self.k8s_container, later.k8s_container);
        take(&mut self.sandbox, later.sandbox);
        take(&mut self.workload, later.workload);
    }
}

/// What was learned about one container from outside the kernel.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Learned {
    /// Names.
    pub names: Names,
    /// What its runtime applied.
    pub applied: Option<AppliedSpec>,
    /// The posture its spec asks for (used when no process of it was read).
    pub spec_posture: Option<Posture>,
}

impl Learned {
    /// Names only.
    pub fn names(names: Names) -> Self {
        Learned {
            names,
            ..Learned::default()
        }
    }

    /// Everything a spec says.
    pub fn from_spec(a: &Applied, host_bounding: u64) -> Self {
        let mut names = a
            .kubernetes
            .as_ref()
            .map(Names::from_kubernetes)
            .unwrap_or_default();
        names.workload = a
            .annotations
            .get(capmon_core::workload::WORKLOAD_LABEL)
            .cloned();
        Learned {
            names,
            applied: Some(AppliedSpec::of(a)),
            spec_posture: Some(posture::from_spec(a, host_bounding)),
        }
    }

    /// `later` over this.
    pub fn merge(&mut self, later: Learned) {
        self.names.merge(later.names);
        if later.applied.is_some() {
            self.applied = later.applied;
            self.spec_posture = later.spec_posture;
        }
    }
}

/// What was learned about containers not adopted yet, bounded in number and age.
#[derive(Debug)]
pub struct Pending {
    by_id: HashMap<String, (Instant, Learned)>,
    order: VecDeque<(Instant, String)>,
    cap: usize,
    max_age: Duration,
}

impl Default for Pending {
    fn default() -> Self {
        Pending::new(8192, Duration::from_secs(600))
    }
}

impl Pending {
    /// At most `cap` containers, each kept at most `max_age`.
    pub fn new(cap: usize, max_age: Duration) -> Self {
        Pending {
            by_id: HashMap::new(),
            order: VecDeque::new(),
            cap,
            max_age,
        }
    }

    /// Keeps `learned` for container `id` (merged over what it has).
    pub fn keep(&mut self, id: &str, learned: Learned) {
        let now = Instant::now();
        self.expire(now);
        match self.by_id.get_mut(id) {
            Some((_, old)) => old.merge(learned),
            None => {
                while self.by_id.len() >= self.cap {
                    let Some((_, oldest)) = self.order.pop_front() else {
                        break;
                    };
                    self.by_id.remove(&oldest);
                }
                self.by_id.insert(id.to_owned(), (now, learned));
                self.order.push_back((now, id.to_owned()));
            }
        }
    }

    /// What was learned about `id`, taken.
    pub fn take(&mut self, id: &str) -> Option<Learned> {
        self.by_id.remove(id).map(|(_, l)| l)
    }

    /// What was learned about `id`, left in place.
    pub fn peek(&self, id: &str) -> Option<&Learned> {
        self.by_id.get(id).map(|(_, l)| l)
    }

    /// How many containers wait.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((t, id)) = self.order.front() {
            let stale = now.duration_since(*t) > self.max_age;
            // An entry taken already leaves its order slot behind; drop it too.
            let gone = self.by_id.get(id).is_none_or(|(at, _)| at != t);
            if !(stale || gone) {
                break;
            }
            if stale && !gone {
                self.by_id.remove(id);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Learned {
        Learned::names(Names {
            name: Some(name.into()),
            ..Names::default()
        })
    }

    #[test]
    fn later_names_win_only_where_they_say_something() {
        let mut a = Names {
            name: Some("web".into()),
            namespace: Some("shop".into()),
            ..Names::default()
        };
        a.merge(Names {
            image: Some("nginx".into()),
            namespace: None,
            ..Names::default()
        });
        assert_eq!(a.name.as_deref(), Some("web"));
        assert_eq!(a.namespace.as_deref(), Some("shop"));
        assert_eq!(a.image.as_deref(), Some("nginx"));
    }

    #[test]
    fn pending_is_bounded_and_merges() {
        let mut p = Pending::new(2, Duration::from_secs(60));
        p.keep("a", named("one"));
        p.keep(
            "a",
            Learned::names(Names {
                image: Some("img".into()),
                ..Names::default()
            }),
        );
        p.keep("b", named("two"));
        p.keep("c", named("three"));
        assert_eq!(p.len(), 2);
        assert_eq!(p.take("a"), None, "the oldest is dropped at the bound");
        let b = p.take("b").expect("b waits");
        assert_eq!(b.names.name.as_deref(), Some("two"));
        assert!(p.take("b").is_none());
        let mut q = Pending::new(8, Duration::from_secs(60));
        q.keep("x", named("one"));
        q.keep(
            "x",
            Learned::names(Names {
                image: Some("img".into()),
                ..Names::default()
            }),
        );
        let x = q.take("x").expect("x");
        assert_eq!(
            (x.names.name.as_deref(), x.names.image.as_deref()),
            (Some("one"), Some("img"))
        );
    }

    #[test]
    fn pending_entries_expire() {
        let mut p = Pending::new(8, Duration::from_millis(0));
        p.keep("a", named("one"));
        std::thread::sleep(Duration::from_millis(5));
        p.keep("b", named("two"));
        assert!(p.take("a").is_none());
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn a_spec_gives_names_applied_and_posture_and_profiles_are_shared() {
        let spec = r#"{"process":{"user":{"uid":0,"gid":0},"noNewPrivileges":true},
            "linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["read"],"action":"SCMP_ACT_ALLOW"}]}},
            "annotations":{"io.kubernetes.cri.container-type":"sandbox",
                "io.kubernetes.cri.sandbox-name":"web-0",
                "io.kubernetes.cri.sandbox-namespace":"shop"}}"#;
        let a = Applied::parse(spec).expect("spec");
        let one = Learned::from_spec(&a, 0);
        let two = Learned::from_spec(&a, 0);
        assert_eq!(one.names.sandbox, Some(true));
        assert_eq!(one.names.pod.as_deref(), Some("web-0"));
        let (x, y) = (
            one.applied.as_ref().expect("applied"),
            two.applied.as_ref().expect("applied"),
        );
        assert!(Arc::ptr_eq(
            x.seccomp.as_ref().expect("profile"),
            y.seccomp.as_ref().expect("profile")
        ));
        assert_eq!(x.seccomp_digest.as_deref().map(str::len), Some(16));
        assert!(one.spec_posture.is_some_and(|p| p.no_new_privs));
    }
}
