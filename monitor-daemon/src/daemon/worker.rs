//! The model worker: turns the probe thread's snapshots into containers (attribution through
//! the cgroup index, which the kernel side's records of created cgroups keep current; posture
//! from the credentials of each cgroup's first exec, else from its processes; names and what
//! the runtime applied from outside the kernel, see `learners`), and keeps house every second
//! (exits, which the kernel side's records of removed cgroups make prompt; retention; what the
//! kernel side may forget or trim).

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{Arc, atomic::Ordering, mpsc as std_mpsc},
    time::{SystemTime, UNIX_EPOCH},
};

use capmon_core::{
    attribution::{Role, Runtime},
    names::Arch,
    posture::{self, Posture},
    report::{self, Observed},
};
use monitor_common::ExecEvent;
use tokio::sync::mpsc;

use super::{
    container::{Container, ContainerState},
    identity::Learned,
    learners::NameLookup,
    model::{Seen, Shared, SweepInput},
    probe_thread::{ProbeRequest, Snapshot},
};
use crate::{
    containers::{
        bundles,
        cgroup::{CgroupEntry, CgroupIndex},
    },
    kernel::events::Lifecycle,
};

/// Postures of first execs kept until their cgroup is resolved (a bound against cgroups that
/// never show activity).
const KERNEL_POSTURES_CAP: usize = 65_536;

/// Now, in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What a cgroup id of a snapshot is.
enum Found {
    /// A container seen for the first time (in this run).
    Container(Box<ContainerState>),
    /// A cgroup that is not a container.
    Other,
    /// No scan has found it (yet).
    Unknown,
}

/// The daemon's model side: turns snapshots into containers.
pub struct ModelWorker {
    shared: Arc<Shared>,
    index: CgroupIndex,
    host_bounding: u64,
    /// cgroups that existed when the daemon started (their history is incomplete).
    startup_cgroups: HashSet<u64>,
    probe_requests: std_mpsc::Sender<ProbeRequest>,
    names: mpsc::Sender<NameLookup>,
    ticks: u64,
    /// Fingerprint of each cgroup's last snapshot.
    prints: HashMap<u64, u64>,
    /// Postures the kernel side read at cgroups' first execs, until their cgroup is resolved.
    kernel_postures: HashMap<u64, Posture>,
    /// cgroups the kernel side saw removed since the last housekeeping.
    removed: HashSet<u64>,
    /// Where runtimes keep their bundles.
    bundle_roots: Vec<bundles::Root>,
}

/// A cheap fingerprint of a cgroup's snapshot (counts, keys, syscalls, denials).
fn fingerprint(o: &Observed) -> u64 {
    let mut h = monitor_common::FNV_OFFSET;
    let mut mix = |v: u64| h = monitor_common::fnv1a_step(h, v);
    for (k, n) in &o.cap_checks {
        mix(u64::from(k.cap) ^ (k.stack << 8) ^ u64::from(k.context) ^ (*n << 32));
    }
    for nr in o.syscalls.iter().chain(&o.runtime_syscalls) {
        mix(u64::from(*nr));
    }
    for (k, n) in &o.denials {
        mix(u64::from(k.syscall_nr) ^ (u64::from(k.errno) << 16) ^ (n << 32));
    }
    mix(o.cap_checks.len() as u64);
    h
}

impl ModelWorker {
    /// A worker over the cgroup tree indexed in `index`.
    pub fn new(
        shared: Arc<Shared>,
        mut index: CgroupIndex,
        startup_cgroups: HashSet<u64>,
        probe_requests: std_mpsc::Sender<ProbeRequest>,
        names: mpsc::Sender<NameLookup>,
    ) -> Self {
        index.scan();
        ModelWorker {
            shared,
            index,
            host_bounding: crate::containers::posture::host_bounding(),
            startup_cgroups,
            probe_requests,
            names,
            ticks: 0,
            prints: HashMap::new(),
            kernel_postures: HashMap::new(),
            removed: HashSet::new(),
            bundle_roots: bundles::default_roots(),
        }
    }

    /// Folds a snapshot into the model: the cgroups created and the first execs first (so
    /// that a cgroup already gone is attributed), then the counts, then the removals.
    pub fn apply(&mut self, snap: Snapshot) {
        let removed = self.learn(&snap.lifecycle);
        self.absorb_all(snap.observed);
        self.ended(removed);
        if let Ok(mut model) = self.shared.model.lock() {
            model.snapshot_applied();
        }
    }

    /// Takes the cgroups created and the first execs; returns the cgroups removed, in order.
    fn learn(&mut self, lifecycle: &[Lifecycle]) -> Vec<u64> {
        let mut removed = Vec::new();
        let oldest_created = lifecycle
            .iter()
            .filter_map(|l| match l {
                Lifecycle::Created { cgroup_id, .. } => Some(*cgroup_id),
                _ => None,
            })
            .min();
        if let (Some(id), Ok(mut m)) = (oldest_created, self.shared.model.lock()) {
            m.created(id);
        }
        for l in lifecycle {
            match l {
                Lifecycle::Created {
                    cgroup_id,
                    path: Some(path),
                } => {
                    tracing::trace!(cgroup_id, path, "created");
                    self.index.learn(*cgroup_id, path)
                }
                // Cut short: found by scanning while its directory exists.
                Lifecycle::Created {
                    path: None,
                    cgroup_id,
                } => tracing::debug!(cgroup_id, "created, its path cut short: found by scanning"),
                Lifecycle::Removed { cgroup_id } => removed.push(*cgroup_id),
                Lifecycle::FirstExec(e) => self.first_exec(e),
            }
        }
        removed
    }

    /// The posture a cgroup's first program started with: for its container if that is
    /// already known and still lacks one (its first counts can come a snapshot before this
    /// record, and it may be gone by now), else kept until the cgroup is resolved.
    fn first_exec(&mut self, e: &ExecEvent) {
        let Some(p) = posture::from_exec(e, self.host_bounding) else {
            return;
        };
        // The label is not among the credentials: read it while the process lives.
        let p = p.with_label(crate::containers::posture::read_label(e.tgid as i32).as_deref());
        let Ok(mut model) = self.shared.model.lock() else {
            return;
        };
        if let Seen::Container(id) = model.seen(e.cgroup_id) {
            let bounding = p.bounding.clone();
            if let Some(proc) = model.take_kernel_posture(&id, p) {
                tracing::warn!(
                    id,
                    kernel = ?bounding,
                    proc = ?proc,
                    "the bounding set read at the first exec differs from /proc's"
                );
            }
            return;
        }
        if self.kernel_postures.len() < KERNEL_POSTURES_CAP {
            self.kernel_postures.insert(e.cgroup_id, p);
        }
    }

    /// cgroups removed: exited at the next housekeeping; forgotten here when nothing was ever
    /// recorded for them (they will never show up again: their records all came before).
    fn ended(&mut self, removed: Vec<u64>) {
        let Ok(model) = self.shared.model.lock() else {
            return;
        };
        for id in removed {
            self.kernel_postures.remove(&id);
            if model.knows(id) {
                self.index.mark_exited(id);
                self.removed.insert(id);
            } else {
                tracing::debug!(cgroup_id = id, "removed with nothing recorded: forgotten");
                self.index.remove(id);
            }
        }
    }

    /// Folds each cgroup's counts into its container.
    fn absorb_all(&mut self, observed: std::collections::BTreeMap<u64, Observed>) {
        let arch = Arch::host();
        for (cgroup_id, observed) in observed {
            let Some((id, fresh)) = self.resolve(cgroup_id) else {
                continue;
            };
            // Unchanged since the last poll: nothing to do.
            let print = fingerprint(&observed);
            if fresh.is_none() && self.prints.get(&cgroup_id) == Some(&print) {
                continue;
            }
            self.prints.insert(cgroup_id, print);
            let (caps, syscalls, _) = report::facts(arch, &observed);
            let late_posture = match fresh {
                None => self.late_posture(cgroup_id, &id),
                Some(_) => None,
            };
            let Ok(mut model) = self.shared.model.lock() else {
                return;
            };
            if let Some(p) = late_posture {
                model.set_posture(&id, p);
            }
            if let Some(state) = fresh {
                model.adopt(cgroup_id, *state);
            }
            model.absorb(&id, caps, syscalls, now());
        }
    }

    /// The container id of a cgroup of a snapshot, with its state when it was found just now;
    /// `None` for records to ignore.
    fn resolve(&mut self, cgroup_id: u64) -> Option<(String, Option<Box<ContainerState>>)> {
        let seen = self.shared.model.lock().ok()?.seen(cgroup_id);
        match seen {
            Seen::Container(id) => return Some((id, None)),
            Seen::Ignored => return None,
            Seen::New => {}
        }
        match self.new_container(cgroup_id) {
            Found::Container(state) => Some((state.info.id.clone(), Some(state))),
            Found::Other => {
                self.kernel_postures.remove(&cgroup_id);
                if let Ok(mut m) = self.shared.model.lock() {
                    m.not_a_container(cgroup_id);
                }
                None
            }
            Found::Unknown => {
                tracing::debug!(
                    cgroup_id,
                    "counts for a cgroup no record or scan names (yet)"
                );
                if let Ok(mut m) = self.shared.model.lock() {
                    m.not_found_yet(cgroup_id, now());
                }
                None
            }
        }
    }

    /// The posture of a container found while only the runtime was in its cgroup (no process
    /// of the container's own yet), once its first process runs.
    fn late_posture(&mut self, cgroup_id: u64, id: &str) -> Option<Posture> {
        let needed = self
            .shared
            .model
            .lock()
            .ok()
            .is_some_and(|m| m.needs_posture(id));
        if !needed {
            return None;
        }
        let path = self.index.lookup(cgroup_id).map(|e| e.path.clone())?;
        self.posture_at(&path)
    }

    /// The posture of a container found just now: the one its first program started with (the
    /// kernel side read it), else read from a process of its own that still runs; both when
    /// they can, as a cross-check (the bounding set a container starts with stays).
    fn posture_of(&mut self, cgroup_id: u64, entry: &CgroupEntry) -> Option<Posture> {
        let kernel = self.kernel_postures.remove(&cgroup_id);
        let proc = match entry.exited {
            true => None,
            false => self.posture_at(&entry.path),
        };
        match (kernel, proc) {
            (Some(k), Some(p)) => {
                if k.bounding != p.bounding {
                    tracing::warn!(
                        path = %entry.path,
                        kernel = ?k.bounding,
                        proc = ?p.bounding,
                        "the bounding set read at the first exec differs from /proc's"
                    );
                }
                Some(match k.lsm_label {
                    Some(_) => k,
                    None => k.with_label(p.lsm_label.as_deref()),
                })
            }
            (k, p) => k.or(p),
        }
    }

    /// The posture of the container in the cgroup at `path` (under the cgroup2 mount), once a
    /// process of its own runs there.
    fn posture_at(&self, path: &str) -> Option<Posture> {
        let dir = self.index.mount().join(path.trim_start_matches('/'));
        crate::containers::posture::read_cgroup(&dir, self.host_bounding)
            .ok()
            .flatten()
    }

    fn new_container(&mut self, cgroup_id: u64) -> Found {
        let Some(entry) = self.index.lookup(cgroup_id).cloned() else {
            return Found::Unknown;
        };
        let ident = &entry.identity;
        if ident.role != Role::Container
            || matches!(ident.runtime, Runtime::Host | Runtime::Systemd)
        {
            return Found::Other;
        }
        let Some(id) = ident.container_id.clone() else {
            return Found::Other;
        };
        let t = now();
        let mut info = Container {
            short_id: ident
                .short_id
                .clone()
                .unwrap_or_else(|| id.chars().take(12).collect()),
            id: id.clone(),
            runtime: ident.runtime,
            name: None,
            image: None,
            namespace: None,
            pod: None,
            k8s_container: None,
            compose_project: None,
            compose_service: None,
            sandbox: false,
            workload_label: None,
            applied: None,
            pod_uid: ident.pod_uid.clone(),
            qos: ident.qos,
            cgroup_path: entry.path.clone(),
            cgroup_id,
            first_seen: t,
            last_seen: t,
            exited_at: entry.exited.then_some(t),
            complete: !self.startup_cgroups.contains(&cgroup_id),
            granted: Vec::new(),
            posture: None,
            uid: None,
        };
        if let Some(p) = self.posture_of(cgroup_id, &entry) {
            info.set_posture(p);
        }
        let (named, specified) = self
            .shared
            .model
            .lock()
            .map(|m| m.pending_for(&id))
            .unwrap_or_default();
        let mut state = ContainerState::found(info);
        // The watcher hands specs over as they are written; one it missed (or of a container
        // that ran before the daemon) is read now, while its bundle exists.
        if !specified && let Some(learned) = self.spec_of(&id) {
            state.learn(learned);
        }
        if !named {
            let socket = self
                .shared
                .config
                .read()
                .map(|c| c.docker_socket.clone())
                .unwrap_or_default();
            let _ = self.names.try_send((id, socket));
        }
        let info = &state.info;
        tracing::info!(id = %info.short_id, runtime = %info.runtime.as_str(), path = %info.cgroup_path, "container found");
        Found::Container(Box::new(state))
    }

    /// What the OCI spec in container `id`'s bundle says, when there is one.
    fn spec_of(&self, id: &str) -> Option<Learned> {
        let path = bundles::find(&self.bundle_roots, id)?;
        match bundles::read(&path) {
            Ok(spec) => Some(Learned::from_spec(&spec, self.host_bounding)),
            Err(bundles::BundleError::Empty { .. }) => None,
            Err(e) => {
                tracing::warn!("OCI spec: {e}");
                None
            }
        }
    }

    /// Marks containers whose cgroup is gone as exited; asks the probe thread to forget
    /// those already written; prunes past retention.
    pub fn housekeeping(&mut self) {
        self.ticks += 1;
        // Exits come from the kernel side's cgroup removals (`self.removed`); a full walk of
        // the cgroup tree every 10 s also finds exited cgroups that are not containers.
        let mut exited: HashSet<u64> = std::mem::take(&mut self.removed);
        if self.ticks.is_multiple_of(10) {
            exited.extend(self.index.scan().exited);
        }
        let retention = self
            .shared
            .config
            .read()
            .map(|c| c.retention_secs())
            .unwrap_or(i64::MAX);
        let health = &self.shared.health;
        let records_lost = health.lifecycle_dropped.load(Ordering::Relaxed) > 0
            || health
                .kernel_lost()
                .iter()
                .any(|(reason, n)| *reason == "ringbuf_full" && *n > 0);
        // The kernel side reports each cgroup's removal; looking for every running container's
        // directory (a path walk each: 10 % of the daemon's CPU with 1,000 containers) is the
        // fallback for records lost, every 10 s, or every second once records were lost.
        let look = records_lost || self.ticks.is_multiple_of(10);
        let mount = self.index.mount().to_owned();
        let exists = |path: &str| !look || mount.join(path.trim_start_matches('/')).exists();
        let input = SweepInput {
            now: now(),
            retention,
            exited: &exited,
            cgroup_exists: &exists,
            records_lost,
        };
        let Ok(mut model) = self.shared.model.lock() else {
            return;
        };
        let swept = model.sweep(&input);
        // Counts of cgroups that are not containers are never reported: drop them now and
        // then, so that the host's own activity does not fill the maps.
        let trim = if self.ticks.is_multiple_of(10) {
            model.not_containers()
        } else {
            BTreeSet::new()
        };
        drop(model);
        for id in &swept.untracked {
            self.index.remove(*id);
        }
        for id in &swept.forget {
            self.prints.remove(id);
        }
        let health = &self.shared.health;
        health
            .unattributed
            .fetch_add(swept.unattributed, Ordering::Relaxed);
        health
            .before_start
            .fetch_add(swept.before_start, Ordering::Relaxed);
        if !swept.forget.is_empty() {
            let _ = self.probe_requests.send(ProbeRequest::Forget(swept.forget));
        }
        if !trim.is_empty() {
            let _ = self.probe_requests.send(ProbeRequest::Trim(trim));
        }
    }
}
