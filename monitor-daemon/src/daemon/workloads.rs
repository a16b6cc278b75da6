//! Workloads on this node: containers grouped by `capmon_core::workload`'s rules (replicas,
//! restarts), merged into one report, with each capability's and syscall's coverage (how many
//! of the workload's containers used it). Read from the model; the API renders them.

use std::collections::{BTreeMap, BTreeSet};

use capmon_core::{
    classify::CapClass,
    report::{self, BuildContext, Capabilities, RecordReport, Syscalls},
    workload::Workload,
};
use serde::Serialize;

use super::{container::ContainerState, model::Model};

/// A workload and its containers.
pub struct Group<'a> {
    pub workload: Workload,
    pub members: Vec<&'a ContainerState>,
}

/// Every workload in the model, by name.
pub fn groups(m: &Model) -> Vec<Group<'_>> {
    let mut by: BTreeMap<Workload, Vec<&ContainerState>> = BTreeMap::new();
    for c in m.containers.values() {
        if let Some(w) = c.info.workload() {
            by.entry(w).or_default().push(c);
        }
    }
    by.into_iter()
        .map(|(workload, members)| Group { workload, members })
        .collect()
}

/// The workload named `name`.
pub fn find<'a>(m: &'a Model, name: &str) -> Option<Group<'a>> {
    groups(m).into_iter().find(|g| g.workload.name == name)
}

/// How many containers: all, and running.
#[derive(Debug, Serialize)]
pub struct Counts {
    pub total: usize,
    pub running: usize,
}

/// A workload in API listings.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub name: String,
    pub kind: &'static str,
    pub containers: Counts,
    pub first_seen: i64,
    pub last_seen: i64,
    /// Granted to any of its containers.
    pub granted: Vec<String>,
    /// Used by any.
    pub used: Vec<String>,
    /// Denied to any.
    pub denied: Vec<String>,
    /// Granted and used by none.
    pub unused: Vec<String>,
    /// Made by any (the workloads' own, not the runtime's).
    pub syscalls: Vec<String>,
}

/// One capability or syscall, and how many of the workload's containers used it.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Coverage {
    pub name: String,
    pub containers: usize,
    pub of: usize,
}

fn union<'a>(sets: impl Iterator<Item = Vec<String>> + 'a) -> Vec<String> {
    sets.flatten()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

impl Group<'_> {
    /// Its listing entry.
    pub fn summary(&self) -> Summary {
        let m = &self.members;
        let granted = union(m.iter().map(|c| c.info.granted.clone()));
        let used = union(m.iter().map(|c| c.names_in_class(CapClass::Used)));
        Summary {
            name: self.workload.name.clone(),
            kind: self.workload.kind.as_str(),
            containers: Counts {
                total: m.len(),
                running: m.iter().filter(|c| c.running()).count(),
            },
            first_seen: m.iter().map(|c| c.info.first_seen).min().unwrap_or(0),
            last_seen: m.iter().map(|c| c.info.last_seen).max().unwrap_or(0),
            unused: granted
                .iter()
                .filter(|g| !used.contains(g))
                .cloned()
                .collect(),
            granted,
            used,
            denied: union(m.iter().map(|c| c.names_in_class(CapClass::Denied))),
            syscalls: union(m.iter().map(|c| c.syscalls.iter().cloned().collect())),
        }
    }

    /// Each used capability and each syscall with the number of containers that used it.
    pub fn coverage(&self) -> (Vec<Coverage>, Vec<Coverage>) {
        let of = self.members.len();
        let count = |sets: Vec<Vec<String>>| {
            let mut n: BTreeMap<String, usize> = BTreeMap::new();
            for set in sets {
                for name in set.into_iter().collect::<BTreeSet<_>>() {
                    *n.entry(name).or_default() += 1;
                }
            }
            n.into_iter()
                .map(|(name, containers)| Coverage {
                    name,
                    containers,
                    of,
                })
                .collect()
        };
        let caps = self
            .members
            .iter()
            .map(|c| c.names_in_class(CapClass::Used))
            .collect();
        let syscalls = self
            .members
            .iter()
            .map(|c| c.syscalls.iter().cloned().collect())
            .collect();
        (count(caps), count(syscalls))
    }

    /// Short ids of the containers whose history is incomplete (capmon did not see them
    /// start): no profile is written for the workload while there are any.
    pub fn incomplete(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|c| !c.info.complete)
            .map(|c| c.info.short_id.clone())
            .collect()
    }

    /// One report for all its containers: every check site and syscall of each, granted the
    /// union of what each was granted.
    pub fn report(&self) -> RecordReport {
        let m = &self.members;
        let class = |k: CapClass| union(m.iter().map(|c| c.names_in_class(k)));
        let caps = Capabilities {
            used: class(CapClass::Used),
            denied: class(CapClass::Denied),
            probe: class(CapClass::Probe),
            ignored: class(CapClass::Ignored),
            checks: m.iter().flat_map(|c| c.cap_checks()).collect(),
            ..Default::default()
        };
        let syscalls = Syscalls {
            used: union(m.iter().map(|c| c.syscalls.iter().cloned().collect())),
            runtime: union(
                m.iter()
                    .map(|c| c.runtime_syscalls.iter().cloned().collect()),
            ),
            denied: m.iter().flat_map(|c| c.denied()).collect(),
        };
        let mut ctx = BuildContext::new(union(m.iter().map(|c| c.info.granted.clone())));
        let uids: BTreeSet<Option<u32>> = m.iter().map(|c| c.info.uid).collect();
        ctx.uid = match uids.len() {
            1 => uids.into_iter().next().flatten(),
            _ => None,
        };
        ctx.complete = m.iter().all(|c| c.info.complete);
        let command = vec![self.workload.name.clone()];
        report::assemble(&ctx, command, 0, None, caps, syscalls, BTreeMap::new())
    }
}

/// `name` as a file name (the advice names its profile file after it): every character
/// outside `[A-Za-z0-9._-]` becomes `-`.
pub fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '-',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::container::tests::{container, facts};
    use capmon_core::report::Syscalls;

    /// A model with three replicas of one Deployment (one of them without the chown), a
    /// sandbox of theirs, and a container of no workload.
    fn model() -> Model {
        let mut m = Model::default();
        for (i, (id, pod)) in [
            ("a1", "web-7d9f8b6c5-x2x4z"),
            ("a2", "web-7d9f8b6c5-q9n2m"),
            ("a3", "web-6b8c9d7f4-k2p5w"),
            ("s1", "web-7d9f8b6c5-x2x4z"),
            ("z9", ""),
        ]
        .into_iter()
        .enumerate()
        {
            let mut c = container(id, 100 + i as i64);
            c.cgroup_id = i as u64;
            if !pod.is_empty() {
                c.namespace = Some("shop".into());
                c.pod = Some(pod.into());
                c.k8s_container = Some("app".into());
            }
            c.sandbox = id == "s1";
            m.adopt(i as u64, ContainerState::found(c));
            let (caps, syscalls) = facts(1);
            let (caps, syscalls) = if id == "a3" {
                let only_read = Syscalls {
                    used: vec!["read".into()],
                    ..Default::default()
                };
                (Default::default(), only_read)
            } else {
                (caps, syscalls)
            };
            m.absorb(id, caps, syscalls, 200);
        }
        m
    }

    #[test]
    fn replicas_merge_into_one_workload_with_coverage() {
        let m = model();
        let all = groups(&m);
        assert_eq!(
            all.len(),
            1,
            "the sandbox and the unnamed container are no workload"
        );
        let g = &all[0];
        assert_eq!(g.workload.name, "k8s:shop:web:app");
        let s = g.summary();
        assert_eq!((s.containers.total, s.containers.running), (3, 3));
        assert_eq!(s.kind, "deployment");
        assert_eq!(s.used, ["CAP_CHOWN"]);
        assert_eq!(s.unused, ["CAP_NET_RAW"]);
        assert_eq!(s.syscalls, ["fchownat", "read"]);
        assert_eq!((s.first_seen, s.last_seen), (100, 200));
        let (caps, syscalls) = g.coverage();
        assert_eq!(
            caps,
            [Coverage {
                name: "CAP_CHOWN".into(),
                containers: 2,
                of: 3
            }]
        );
        assert_eq!(
            syscalls
                .iter()
                .map(|c| (c.name.as_str(), c.containers))
                .collect::<Vec<_>>(),
            [("fchownat", 2), ("read", 3)]
        );
        let r = g.report();
        assert_eq!(r.capabilities.used, ["CAP_CHOWN"]);
        assert!(r.seccomp_profile.is_some(), "{:?}", r.seccomp_profile_error);
        assert!(find(&m, "k8s:shop:web:app").is_some());
        assert!(find(&m, "k8s:shop:web:other").is_none());
    }

    #[test]
    fn an_incomplete_member_is_named() {
        let mut m = model();
        if let Some(c) = m.containers.get_mut("a2") {
            c.info.complete = false;
        }
        let g = find(&m, "k8s:shop:web:app").expect("workload");
        assert_eq!(g.incomplete(), ["a2"]);
        assert!(g.report().seccomp_profile.is_none());
        assert_eq!(
            file_name("container:docker.io/library/nginx:web"),
            "container-docker.io-library-nginx-web"
        );
    }
}
