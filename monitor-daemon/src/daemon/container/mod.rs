//! One container as the daemon keeps it: its identity and state ([`Container`]), its capability
//! check sites and seccomp denials under typed keys, what changed since the last write, and the
//! report built from all that. Capabilities, classes, outcomes, runtimes, QoS classes and
//! postures are types here; their names and JSON belong to the store and the API.

use std::collections::{BTreeMap, BTreeSet};

use capmon_core::{
    attribution::{QosClass, Runtime},
    classify::CapClass,
    posture::{Finding, Posture, PostureSource},
    report::{self, BuildContext, CapCheck, Capabilities, Denial, RecordReport, Syscalls},
};

use capmon_core::seccomp::AppliedDiff;

use super::identity::{self, AppliedSpec, Learned};

mod keys;

pub use keys::{Capability, Check, CheckKey, CheckResult, DenialCount, DenialKey};

/// A container's identity and state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// Full container id.
    pub id: String,
    /// 12-character id.
    pub short_id: String,
    /// Who created it.
    pub runtime: Runtime,
    /// Name, when an API told it.
    pub name: Option<String>,
    /// Image.
    pub image: Option<String>,
    /// Kubernetes namespace.
    pub namespace: Option<String>,
    /// Kubernetes pod.
    pub pod: Option<String>,
    /// Kubernetes container name.
    pub k8s_container: Option<String>,
    /// Compose project.
    pub compose_project: Option<String>,
    /// Compose service.
    pub compose_service: Option<String>,
    /// A pod's sandbox (pause) container.
    pub sandbox: bool,
    /// The `capmon.workload` label or annotation, when it has one.
    pub workload_label: Option<String>,
    /// What its runtime applied (its OCI spec), when capmon could read it.
    pub applied: Option<AppliedSpec>,
    /// Kubernetes pod UID.
    pub pod_uid: Option<String>,
    /// Kubernetes QoS class.
    pub qos: Option<QosClass>,
    /// cgroup path.
    pub cgroup_path: String,
    /// cgroup id (inode number).
    pub cgroup_id: u64,
    /// First seen (Unix seconds).
    pub first_seen: i64,
    /// Last activity (Unix seconds).
    pub last_seen: i64,
    /// When it exited (Unix seconds).
    pub exited_at: Option<i64>,
    /// Whether capmon saw it start (its syscall history is complete).
    pub complete: bool,
    /// Capabilities granted (bounding set of its process), as `CAP_*` names.
    pub granted: Vec<String>,
    /// Its process' posture, once read.
    pub posture: Option<Posture>,
    /// Effective uid of its process.
    pub uid: Option<u32>,
}

/// What changed since the last batch for the store.
#[derive(Clone, Debug, Default)]
struct Dirty {
    /// The whole row.
    row: bool,
    /// Only `last_seen`.
    touched: bool,
    checks: BTreeSet<CheckKey>,
    /// (name, made by the runtime).
    new_syscalls: Vec<(String, bool)>,
    denials: BTreeSet<DenialKey>,
}

/// A container with everything observed of it.
#[derive(Clone, Debug)]
pub struct ContainerState {
    /// Identity and state.
    pub info: Container,
    /// Check sites.
    pub checks: BTreeMap<CheckKey, Check>,
    /// Counts stored by earlier runs, added to this run's kernel counts.
    check_base: BTreeMap<CheckKey, u64>,
    /// The workload's syscalls.
    pub syscalls: BTreeSet<String>,
    /// The runtime's syscalls under the filter.
    pub runtime_syscalls: BTreeSet<String>,
    /// Seccomp denials.
    pub denials: BTreeMap<DenialKey, DenialCount>,
    denial_base: BTreeMap<DenialKey, u64>,
    dirty: Dirty,
    /// The kernel side was told to forget it (exited and flushed).
    pub(super) forgotten: bool,
    /// Its syscalls against the seccomp profile its runtime applied (redone when it makes a
    /// syscall or meets a refusal it had not).
    pub applied_diff: Option<AppliedDiff>,
}

/// A container as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Identity and state.
    pub container: Container,
    /// Check sites.
    pub checks: Vec<(CheckKey, Check)>,
    /// Syscalls of the workload.
    pub syscalls: Vec<String>,
    /// Syscalls of the runtime under the filter.
    pub runtime_syscalls: Vec<String>,
    /// Denials.
    pub denials: Vec<(DenialKey, DenialCount)>,
}

/// Changes to write to the store in one transaction.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Containers to insert or update.
    pub containers: Vec<Container>,
    /// Containers whose `last_seen` moved: (id, last_seen).
    pub touches: Vec<(String, i64)>,
    /// Check sites to insert or update, by container id.
    pub checks: Vec<(String, CheckKey, Check)>,
    /// Syscalls to insert: (container id, name, made by the runtime).
    pub syscalls: Vec<(String, String, bool)>,
    /// Denials to insert or update, by container id.
    pub denials: Vec<(String, DenialKey, DenialCount)>,
    /// Containers to delete (pruned after retention).
    pub deletes: Vec<String>,
}

impl Batch {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
            && self.touches.is_empty()
            && self.checks.is_empty()
            && self.syscalls.is_empty()
            && self.denials.is_empty()
            && self.deletes.is_empty()
    }

    /// Adds the changes of a later batch (written after this one's).
    pub fn extend(&mut self, later: Batch) {
        self.containers.extend(later.containers);
        self.touches.extend(later.touches);
        self.checks.extend(later.checks);
        self.syscalls.extend(later.syscalls);
        self.denials.extend(later.denials);
        self.deletes.extend(later.deletes);
    }
}

impl Container {
    /// Takes the posture read from its process: granted set, uid and checklist.
    pub fn set_posture(&mut self, p: Posture) {
        self.granted = p.bounding.clone();
        self.uid = Some(p.uid);
        self.posture = Some(p);
    }

    /// Failed checklist items of its posture.
    pub fn findings(&self) -> &[Finding] {
        self.posture.as_ref().map_or(&[], |p| &p.findings)
    }

    /// Name, or short id when there is none.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.short_id)
    }

    /// Its workload (`capmon_core::workload`'s rules); `None` for a pod's sandbox and for a
    /// container known by its id alone.
    pub fn workload(&self) -> Option<capmon_core::workload::Workload> {
        if self.sandbox {
            return None;
        }
        capmon_core::workload::of(&capmon_core::workload::Names {
            label: self.workload_label.as_deref(),
            namespace: self.namespace.as_deref(),
            pod: self.pod.as_deref(),
            k8s_container: self.k8s_container.as_deref(),
            compose_project: self.compose_project.as_deref(),
            compose_service: self.compose_service.as_deref(),
            systemd_unit: None,
            name: self.name.as_deref(),
            image: self.image.as_deref(),
        })
    }
}

impl ContainerState {
    /// A container found in this run, to be written.
    pub fn found(info: Container) -> Self {
        let mut c = ContainerState::new(info);
        c.dirty.row = true;
        c
    }

    fn new(info: Container) -> Self {
        ContainerState {
            info,
            checks: BTreeMap::new(),
            check_base: BTreeMap::new(),
            syscalls: BTreeSet::new(),
            runtime_syscalls: BTreeSet::new(),
            denials: BTreeMap::new(),
            denial_base: BTreeMap::new(),
            dirty: Dirty::default(),
            forgotten: false,
            applied_diff: None,
        }
    }

    /// A container loaded from the store: its counts are the base this run's add to.
    pub fn from_stored(s: Stored) -> Self {
        let mut c = ContainerState::new(s.container);
        c.syscalls = s.syscalls.into_iter().collect();
        c.runtime_syscalls = s.runtime_syscalls.into_iter().collect();
        c.forgotten = true;
        for (key, check) in s.checks {
            c.check_base.insert(key.clone(), check.count);
            c.checks.insert(key, check);
        }
        for (key, d) in s.denials {
            c.denial_base.insert(key.clone(), d.count);
            c.denials.insert(key, d);
        }
        c.refresh_applied_diff();
        c
    }

    /// Redoes [`ContainerState::applied_diff`].
    fn refresh_applied_diff(&mut self) {
        let Some(applied) = &self.info.applied else {
            self.applied_diff = None;
            return;
        };
        let mut observed = self.syscalls.clone();
        observed.extend(self.denials.keys().map(|k| k.syscall.clone()));
        self.applied_diff = identity::applied_diff(applied, &observed);
    }

    /// Marks the identity and state as changed (written whole at the next batch).
    pub fn mark_changed(&mut self) {
        self.dirty.row = true;
    }

    /// Takes what was learned from outside the kernel: names where they say something, what
    /// the runtime applied, and the spec's posture while no process of the container was read
    /// (the spec's LSM label where a process' posture could not read one).
    pub fn learn(&mut self, l: Learned) {
        let info = &mut self.info;
        let n = l.names;
        for (slot, v) in [
            (&mut info.name, n.name),
            (&mut info.image, n.image),
            (&mut info.compose_project, n.compose_project),
            (&mut info.compose_service, n.compose_service),
            (&mut info.namespace, n.namespace),
            (&mut info.pod, n.pod),
            (&mut info.k8s_container, n.k8s_container),
            (&mut info.workload_label, n.workload),
        ] {
            if v.is_some() {
                *slot = v;
            }
        }
        if let Some(s) = n.sandbox {
            info.sandbox = s;
        }
        if let Some(a) = l.applied {
            if let Some(p) = info.posture.take() {
                info.posture = Some(match p.lsm_label {
                    None if p.source != PostureSource::Spec => p.with_label(a.label()),
                    _ => p,
                });
            }
            info.applied = Some(a);
        }
        if let Some(p) = l.spec_posture
            && info.posture.is_none()
        {
            info.set_posture(p);
        }
        self.refresh_applied_diff();
        self.mark_changed();
    }

    /// Folds a kernel snapshot (cumulative since this daemon started) into the state; `now`
    /// becomes `last_seen` when anything changed.
    pub fn absorb(&mut self, caps: Capabilities, syscalls: Syscalls, now: i64) {
        let before = (self.syscalls.len(), self.denials.len());
        self.absorb_checks(caps.checks);
        for name in syscalls.used {
            if self.syscalls.insert(name.clone()) {
                self.dirty.new_syscalls.push((name, false));
            }
        }
        for name in syscalls.runtime {
            if self.runtime_syscalls.insert(name.clone()) {
                self.dirty.new_syscalls.push((name, true));
            }
        }
        self.absorb_denials(syscalls.denied);
        if (self.syscalls.len(), self.denials.len()) != before {
            self.refresh_applied_diff();
        }
        let d = &self.dirty;
        if !d.checks.is_empty() || !d.new_syscalls.is_empty() || !d.denials.is_empty() {
            // Activity only moves last_seen: a small update, not the whole row.
            self.info.last_seen = now;
            self.dirty.touched = true;
        }
    }

    fn absorb_checks(&mut self, checks: Vec<CapCheck>) {
        let mut counts: BTreeMap<CheckKey, Check> = BTreeMap::new();
        for c in checks {
            let Some(capability) = Capability::from_name(&c.capability) else {
                tracing::warn!(capability = %c.capability, "check of an unknown capability");
                continue;
            };
            let key = CheckKey {
                capability,
                class: c.class,
                result: if c.result == CheckResult::Granted.as_str() {
                    CheckResult::Granted
                } else {
                    CheckResult::Refused
                },
                site: c.site,
                syscall: c.syscall,
            };
            let check = counts.entry(key).or_insert_with(|| Check {
                count: 0,
                reason: c.reason,
                comm: c.comm,
                pid: c.pid,
                stack: c.stack,
            });
            check.count += c.count;
        }
        for (key, mut check) in counts {
            check.count += self.check_base.get(&key).copied().unwrap_or(0);
            match self.checks.get_mut(&key) {
                Some(old) if old.count == check.count => {}
                Some(old) => {
                    old.count = check.count;
                    old.reason = check.reason;
                    self.dirty.checks.insert(key);
                }
                None => {
                    self.checks.insert(key.clone(), check);
                    self.dirty.checks.insert(key);
                }
            }
        }
    }

    fn absorb_denials(&mut self, denied: Vec<Denial>) {
        for d in denied {
            let key = DenialKey {
                syscall: d.name,
                errno: d.errno,
            };
            let count = d.count + self.denial_base.get(&key).copied().unwrap_or(0);
            match self.denials.get_mut(&key) {
                Some(old) if old.count == count => {}
                Some(old) => {
                    old.count = count;
                    self.dirty.denials.insert(key);
                }
                None => {
                    let denial = DenialCount {
                        number: d.number,
                        count,
                        comm: d.comm.unwrap_or_default(),
                    };
                    self.denials.insert(key.clone(), denial);
                    self.dirty.denials.insert(key);
                }
            }
        }
    }

    /// The capabilities with check sites of `class`, by capability number.
    pub fn in_class(&self, class: CapClass) -> Vec<Capability> {
        let set: BTreeSet<Capability> = self
            .checks
            .keys()
            .filter(|k| k.class == class)
            .map(|k| k.capability)
            .collect();
        set.into_iter().collect()
    }

    /// Names of the capabilities with check sites of `class`, by capability number.
    pub fn names_in_class(&self, class: CapClass) -> Vec<String> {
        self.in_class(class)
            .into_iter()
            .map(Capability::name)
            .collect()
    }

    /// Granted and never used (the analysis' `unused`, without building a report).
    pub fn unused(&self) -> Vec<String> {
        let used = self.names_in_class(CapClass::Used);
        self.info
            .granted
            .iter()
            .filter(|g| !used.contains(g))
            .cloned()
            .collect()
    }

    /// Its seccomp denials, as reports list them.
    pub fn denied(&self) -> Vec<Denial> {
        self.denials
            .iter()
            .map(|(k, d)| Denial {
                name: k.syscall.clone(),
                number: d.number,
                errno: k.errno.clone(),
                count: d.count,
                comm: Some(d.comm.clone()),
            })
            .collect()
    }

    /// Whether the container runs.
    pub fn running(&self) -> bool {
        self.info.exited_at.is_none()
    }

    /// Its check sites as reports list them: by capability name, then class, result, site
    /// and syscall names (the order the API has always listed them in).
    pub(crate) fn cap_checks(&self) -> Vec<CapCheck> {
        let mut checks: Vec<CapCheck> = self
            .checks
            .iter()
            .map(|(k, c)| CapCheck {
                capability: k.capability.name(),
                class: k.class,
                reason: c.reason.clone(),
                result: k.result.as_str(),
                count: c.count,
                noaudit_caller: None,
                comm: c.comm.clone(),
                pid: c.pid,
                syscall: k.syscall.clone(),
                site: k.site.clone(),
                stack: c.stack.clone(),
            })
            .collect();
        fn order(c: &CapCheck) -> (&str, &str, &str, &str, &str) {
            let site = c.site.as_deref().unwrap_or_default();
            let syscall = c.syscall.as_deref().unwrap_or_default();
            (&c.capability, c.class.as_str(), c.result, site, syscall)
        }
        checks.sort_by(|a, b| order(a).cmp(&order(b)));
        checks
    }

    /// The container's report, from what is kept (the same analysis `capmon record` makes).
    pub fn report(&self) -> RecordReport {
        let caps = Capabilities {
            used: self.names_in_class(CapClass::Used),
            denied: self.names_in_class(CapClass::Denied),
            probe: self.names_in_class(CapClass::Probe),
            ignored: self.names_in_class(CapClass::Ignored),
            checks: self.cap_checks(),
            ..Default::default()
        };
        let syscalls = Syscalls {
            used: self.syscalls.iter().cloned().collect(),
            runtime: self.runtime_syscalls.iter().cloned().collect(),
            denied: self.denied(),
        };
        let mut ctx = BuildContext::new(self.info.granted.clone());
        ctx.findings = self
            .info
            .findings()
            .iter()
            .map(|f| (f.check.as_str().to_owned(), f.detail.clone()))
            .collect();
        ctx.uid = self.info.uid;
        ctx.complete = self.info.complete;
        let command = vec![self.info.display_name().to_owned()];
        report::assemble(&ctx, command, 0, None, caps, syscalls, BTreeMap::new())
    }

    /// Moves what changed into `batch`.
    pub(super) fn take_batch(&mut self, batch: &mut Batch) {
        let id = self.info.id.clone();
        let dirty = std::mem::take(&mut self.dirty);
        if dirty.row {
            batch.containers.push(self.info.clone());
        } else if dirty.touched {
            batch.touches.push((id.clone(), self.info.last_seen));
        }
        for key in dirty.checks {
            if let Some(c) = self.checks.get(&key) {
                batch.checks.push((id.clone(), key, c.clone()));
            }
        }
        for (name, runtime) in dirty.new_syscalls {
            batch.syscalls.push((id.clone(), name, runtime));
        }
        for key in dirty.denials {
            if let Some(d) = self.denials.get(&key) {
                batch.denials.push((id.clone(), key, d.clone()));
            }
        }
    }

    /// Something is still to be written.
    pub fn is_dirty(&self) -> bool {
        let d = &self.dirty;
        d.row
            || d.touched
            || !d.checks.is_empty()
            || !d.new_syscalls.is_empty()
            || !d.denials.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests;
