//! The per-container and per-workload families, written from the model into an
//! [`Exposition`]: one pass over the containers (or workloads) per family, since the format
//! wants a family's samples together. Several check sites of one capability and class add up
//! to one series, as do denials of one syscall and errno.

use std::collections::{BTreeMap, BTreeSet};

use capmon_core::posture::Check;

use super::text::{Exposition, Kind};
use crate::daemon::{container::ContainerState, workloads::Group};

/// A container's identity labels, on every one of its series.
type Id<'a> = [(&'a str, &'a str); 6];

fn id_of(c: &ContainerState) -> Id<'_> {
    let info = &c.info;
    [
        ("container_id", info.short_id.as_str()),
        ("name", info.name.as_deref().unwrap_or_default()),
        ("runtime", info.runtime.as_str()),
        ("namespace", info.namespace.as_deref().unwrap_or_default()),
        ("pod", info.pod.as_deref().unwrap_or_default()),
        (
            "container",
            info.k8s_container.as_deref().unwrap_or_default(),
        ),
    ]
}

/// The identity labels followed by `more`.
fn with<'a>(id: &Id<'a>, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = Vec::with_capacity(id.len() + more.len());
    v.extend_from_slice(id);
    v.extend_from_slice(more);
    v
}

/// One family over every container: `each` writes a container's samples.
fn family<'c>(
    e: &mut Exposition,
    all: &[(&'c ContainerState, Id<'c>)],
    (name, help, kind): (&str, &str, Kind),
    mut each: impl FnMut(&mut Exposition, &'c ContainerState, &Id<'c>),
) {
    e.family(name, help, kind);
    for (c, id) in all {
        each(e, c, id);
    }
}

/// Every per-container family.
pub fn containers<'c>(e: &mut Exposition, all: impl Iterator<Item = &'c ContainerState>) {
    let all: Vec<(&ContainerState, Id<'_>)> = all.map(|c| (c, id_of(c))).collect();
    const CHECKS: &str = "capmon_capability_checks_total";
    let help = "Capability checks by capability and class (used, denied, probe, ignored).";
    family(e, &all, (CHECKS, help, Kind::Counter), |e, c, id| {
        let mut sums: BTreeMap<(String, &str), u64> = BTreeMap::new();
        for (key, check) in &c.checks {
            let n = sums
                .entry((key.capability.name(), key.class.as_str()))
                .or_default();
            *n = n.wrapping_add(check.count);
        }
        for ((cap, class), n) in &sums {
            e.sample(
                CHECKS,
                &with(id, &[("capability", cap), ("class", class)]),
                *n,
            );
        }
    });
    const UNUSED: &str = "capmon_capability_unused";
    let help = "1 for each capability the container was granted and never used.";
    family(e, &all, (UNUSED, help, Kind::Gauge), |e, c, id| {
        for cap in &c.unused() {
            e.sample(UNUSED, &with(id, &[("capability", cap)]), 1);
        }
    });
    const GRANTED: &str = "capmon_capabilities_granted";
    let help = "Number of capabilities granted (bounding set).";
    family(e, &all, (GRANTED, help, Kind::Gauge), |e, c, id| {
        e.sample(GRANTED, id, c.info.granted.len() as u64);
    });
    const DENIED: &str = "capmon_syscalls_denied_total";
    let help = "Syscalls refused by seccomp, by syscall and errno.";
    family(e, &all, (DENIED, help, Kind::Counter), |e, c, id| {
        let mut sums: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for (key, d) in &c.denials {
            let n = sums.entry((&key.syscall, &key.errno)).or_default();
            *n = n.wrapping_add(d.count);
        }
        for ((syscall, errno), n) in sums {
            e.sample(
                DENIED,
                &with(id, &[("syscall", syscall), ("errno", errno)]),
                n,
            );
        }
    });
    const OBSERVED: &str = "capmon_syscalls_observed";
    let help = "Distinct syscalls the container made.";
    family(e, &all, (OBSERVED, help, Kind::Gauge), |e, c, id| {
        e.sample(OBSERVED, id, c.syscalls.len() as u64);
    });
    const POSTURE: &str = "capmon_container_posture";
    let help = "1 when the Docker-checklist item fails for the container, 0 when it passes.";
    family(e, &all, (POSTURE, help, Kind::Gauge), |e, c, id| {
        let findings = c.info.findings();
        for check in Check::ALL {
            let fails = findings.iter().any(|f| f.check == check);
            e.sample(
                POSTURE,
                &with(id, &[("check", check.as_str())]),
                u64::from(fails),
            );
        }
    });
    const RUNNING: &str = "capmon_container_running";
    let help = "1 while the container runs, 0 once it exited (shown for metrics_exited_secs).";
    family(e, &all, (RUNNING, help, Kind::Gauge), |e, c, id| {
        e.sample(RUNNING, id, u64::from(c.running()));
    });
    const WOULD_DENY: &str = "capmon_applied_profile_would_deny";
    let help = "1 for each syscall the container made (or was refused) that the seccomp profile \
                its runtime applied refuses.";
    family(e, &all, (WOULD_DENY, help, Kind::Gauge), |e, c, id| {
        let Some(d) = &c.applied_diff else { return };
        let syscalls: BTreeSet<&str> = d.would_deny.iter().map(|r| r.syscall.as_str()).collect();
        for syscall in syscalls {
            e.sample(WOULD_DENY, &with(id, &[("syscall", syscall)]), 1);
        }
    });
    const APPLIED_UNUSED: &str = "capmon_applied_profile_unused_syscalls";
    let help = "Syscalls the seccomp profile its runtime applied allows and the container never \
                made.";
    family(e, &all, (APPLIED_UNUSED, help, Kind::Gauge), |e, c, id| {
        if let Some(d) = &c.applied_diff {
            e.sample(APPLIED_UNUSED, id, d.allowed_unused.len() as u64);
        }
    });
}

/// What the workload families say of one workload.
struct WorkloadFacts<'g> {
    name: &'g str,
    kind: &'static str,
    running: u64,
    exited: u64,
    incomplete: u64,
    caps: Vec<(String, u64)>,
    syscalls: Vec<String>,
}

impl<'g> WorkloadFacts<'g> {
    fn of(g: &'g Group<'_>) -> Self {
        let s = g.summary();
        let running = s.containers.running as u64;
        let (caps, syscalls) = g.coverage();
        WorkloadFacts {
            name: g.workload.name.as_str(),
            kind: g.workload.kind.as_str(),
            running,
            exited: (s.containers.total as u64).saturating_sub(running),
            incomplete: g.incomplete().len() as u64,
            caps: caps
                .into_iter()
                .map(|c| (c.name, c.containers as u64))
                .collect(),
            syscalls: syscalls.into_iter().map(|c| c.name).collect(),
        }
    }
}

/// Every per-workload family; the syscall one only with `syscall_series`.
pub fn workloads(e: &mut Exposition, groups: &[Group<'_>], syscall_series: bool) {
    let all: Vec<WorkloadFacts<'_>> = groups.iter().map(WorkloadFacts::of).collect();
    const USED: &str = "capmon_workload_capability_used";
    e.family(
        USED,
        "Number of the workload's containers that used the capability.",
        Kind::Gauge,
    );
    for w in &all {
        for (cap, n) in &w.caps {
            let labels = [("workload", w.name), ("kind", w.kind), ("capability", cap)];
            e.sample(USED, &labels, *n);
        }
    }
    const CONTAINERS: &str = "capmon_workload_containers";
    e.family(
        CONTAINERS,
        "The workload's containers on this node, by state (running, exited).",
        Kind::Gauge,
    );
    for w in &all {
        for (state, n) in [("running", w.running), ("exited", w.exited)] {
            let labels = [("workload", w.name), ("kind", w.kind), ("state", state)];
            e.sample(CONTAINERS, &labels, n);
        }
    }
    const INCOMPLETE: &str = "capmon_workload_incomplete_containers";
    e.family(
        INCOMPLETE,
        "The workload's containers capmon did not see start (no profile while any).",
        Kind::Gauge,
    );
    for w in &all {
        let labels = [("workload", w.name), ("kind", w.kind)];
        e.sample(INCOMPLETE, &labels, w.incomplete);
    }
    if !syscall_series {
        return;
    }
    const SYSCALL: &str = "capmon_workload_syscall_observed";
    e.family(
        SYSCALL,
        "1 for each syscall any container of the workload made.",
        Kind::Gauge,
    );
    for w in &all {
        for syscall in &w.syscalls {
            let labels = [("workload", w.name), ("kind", w.kind), ("syscall", syscall)];
            e.sample(SYSCALL, &labels, 1);
        }
    }
}
