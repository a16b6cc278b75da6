//! `capmon run`: the node daemon.
//!
//! ```text
//! probe thread (owns the probes)  --bounded queue-->  model task  <-- HTTP API, /metrics
//!   reads every map each poll,       (drops counted)    attribution, posture,     |
//!   forgets cgroups that are gone                       names, classes, counts    |
//!                                                              |                   |
//!                                      store thread <-- batch every interval ------+
//!                                      (SQLite, one transaction per batch)
//! ```
//!
//! The kernel's counts are cumulative, so a snapshot dropped from the full queue loses
//! nothing: the next one carries the same counts and more.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use capmon_core::{
    attribution::{Role, Runtime},
    classify::CapClass,
    config::Config,
    names::Arch,
    report::{
        self, BuildContext, CapCheck, Capabilities, Denial, Observed, RecordReport, Syscalls,
    },
};

use crate::{
    containers::cgroup::CgroupIndex,
    record::{RecordError, Recorder},
    store::{Batch, CheckRow, ContainerRow, DenialRow, Store, StoreError, Stored},
};

/// Errors that stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The probes.
    #[error(transparent)]
    Probes(#[from] RecordError),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The API address.
    #[error(
        "cannot listen on {addr}: {source} (another process uses it? choose one with --listen)"
    )]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// cgroup2.
    #[error(transparent)]
    Cgroup(#[from] crate::containers::cgroup::CgroupError),
    /// A thread or task failed.
    #[error("{0}")]
    Internal(String),
}

/// Pipeline stages that can drop work (label values of `capmon_pipeline_dropped_total`).
pub const STAGES: [&str; 2] = ["probe_to_model", "unattributed"];

/// Daemon health, shared with `/metrics`.
pub struct Health {
    /// Probe mode name.
    pub mode: &'static str,
    /// Attached programs.
    pub attached: AtomicU64,
    /// Kernel loss counters (name -> value), as last read.
    pub kernel_lost: Mutex<BTreeMap<String, u64>>,
    /// Snapshots dropped at the model's queue.
    pub dropped: AtomicU64,
    /// cgroups whose records were dropped because no scan found their path before they
    /// were gone (containers that lived less than about a second).
    pub unattributed: AtomicU64,
    /// Map fill: (map, entries, capacity), as last read.
    pub map_fill: Mutex<Vec<(&'static str, u64, u64)>>,
    /// Capability-check first sightings taken from the ring buffer.
    pub processed_checks: AtomicU64,
    /// Seccomp-denial first sightings taken from the ring buffer.
    pub processed_denials: AtomicU64,
    /// Store write latency.
    pub store_write: prometheus::Histogram,
    /// Failed store writes (the batch is kept and retried).
    pub store_errors: AtomicU64,
}

/// Everything the API reads.
pub struct Shared {
    /// Containers.
    pub model: Mutex<Model>,
    /// Health.
    pub health: Health,
    /// Current configuration.
    pub config: RwLock<Config>,
    /// The store's file.
    pub db_path: PathBuf,
}

/// A container as the daemon keeps it.
#[derive(Clone, Debug, Default)]
pub struct ContainerState {
    /// Identity and state (as stored).
    pub row: ContainerRow,
    /// Check sites by (capability, class, result, site, syscall).
    pub checks: BTreeMap<(String, String, String, String, String), CheckRow>,
    /// Counts stored by earlier runs, added to this run's kernel counts.
    check_base: BTreeMap<(String, String, String, String, String), u64>,
    /// The workload's syscalls.
    pub syscalls: BTreeSet<String>,
    /// The runtime's syscalls under the filter.
    pub runtime_syscalls: BTreeSet<String>,
    /// Denials by (syscall, errno).
    pub denials: BTreeMap<(String, String), DenialRow>,
    denial_base: BTreeMap<(String, String), u64>,
    /// Failed posture checks (check, detail).
    pub findings: Vec<(String, String)>,
    dirty_row: bool,
    /// Only `last_seen` changed.
    touched: bool,
    dirty_checks: BTreeSet<(String, String, String, String, String)>,
    new_syscalls: Vec<(String, bool)>,
    dirty_denials: BTreeSet<(String, String)>,
    /// The kernel side was told to forget it (exited and flushed).
    forgotten: bool,
}

/// All containers.
#[derive(Default)]
pub struct Model {
    /// By container id.
    pub containers: BTreeMap<String, ContainerState>,
    by_cgroup: HashMap<u64, String>,
    /// cgroups seen that are not containers.
    not_containers: HashSet<u64>,
    /// cgroups of exited containers whose kernel entries were dropped, with the time: a
    /// snapshot taken before that and read after must not bring them back.
    gone: HashMap<u64, i64>,
    /// cgroup ids in snapshots that no scan found yet, with when they were first seen.
    unknown: HashMap<u64, i64>,
    /// Ids deleted by retention, to delete from the store.
    pruned: Vec<String>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn check_key(c: &CheckRow) -> (String, String, String, String, String) {
    (
        c.capability.clone(),
        c.class.clone(),
        c.result.clone(),
        c.site.clone(),
        c.syscall.clone(),
    )
}

impl ContainerState {
    fn from_stored(s: Stored) -> Self {
        let mut c = ContainerState {
            row: s.row,
            syscalls: s.syscalls.into_iter().collect(),
            runtime_syscalls: s.runtime_syscalls.into_iter().collect(),
            forgotten: true,
            ..Default::default()
        };
        c.findings = findings_of(c.row.posture.as_ref());
        for check in s.checks {
            let key = check_key(&check);
            c.check_base.insert(key.clone(), check.count);
            c.checks.insert(key, check);
        }
        for d in s.denials {
            let key = (d.syscall.clone(), d.errno.clone());
            c.denial_base.insert(key.clone(), d.count);
            c.denials.insert(key, d);
        }
        c
    }

    /// Folds a kernel snapshot (cumulative since this daemon started) into the state.
    fn absorb(&mut self, caps: Capabilities, syscalls: Syscalls) {
        let mut counts: BTreeMap<(String, String, String, String, String), CheckRow> =
            BTreeMap::new();
        for c in caps.checks {
            let key = (
                c.capability,
                c.class.as_str().to_owned(),
                c.result.to_owned(),
                c.site.unwrap_or_default(),
                c.syscall.unwrap_or_default(),
            );
            match counts.get_mut(&key) {
                Some(r) => r.count += c.count,
                None => {
                    let row = CheckRow {
                        capability: key.0.clone(),
                        class: key.1.clone(),
                        result: key.2.clone(),
                        site: key.3.clone(),
                        syscall: key.4.clone(),
                        count: c.count,
                        reason: c.reason,
                        comm: c.comm,
                        pid: c.pid,
                        stack: c.stack,
                    };
                    counts.insert(key, row);
                }
            }
        }
        for (key, mut row) in counts {
            row.count += self.check_base.get(&key).copied().unwrap_or(0);
            match self.checks.get_mut(&key) {
                Some(old) if old.count == row.count => {}
                Some(old) => {
                    old.count = row.count;
                    old.reason = row.reason;
                    self.dirty_checks.insert(key);
                }
                None => {
                    self.checks.insert(key.clone(), row);
                    self.dirty_checks.insert(key);
                }
            }
        }
        for name in syscalls.used {
            if self.syscalls.insert(name.clone()) {
                self.new_syscalls.push((name, false));
            }
        }
        for name in syscalls.runtime {
            if self.runtime_syscalls.insert(name.clone()) {
                self.new_syscalls.push((name, true));
            }
        }
        for d in syscalls.denied {
            let key = (d.name.clone(), d.errno.clone());
            let count = d.count + self.denial_base.get(&key).copied().unwrap_or(0);
            match self.denials.get_mut(&key) {
                Some(old) if old.count == count => {}
                Some(old) => {
                    old.count = count;
                    self.dirty_denials.insert(key);
                }
                None => {
                    self.denials.insert(
                        key.clone(),
                        DenialRow {
                            syscall: d.name,
                            number: d.number,
                            errno: d.errno,
                            count,
                            comm: d.comm.unwrap_or_default(),
                        },
                    );
                    self.dirty_denials.insert(key);
                }
            }
        }
        if !self.dirty_checks.is_empty()
            || !self.new_syscalls.is_empty()
            || !self.dirty_denials.is_empty()
        {
            // Activity only moves last_seen: a small update, not the whole row.
            self.row.last_seen = now();
            self.touched = true;
        }
    }

    /// The capabilities with check sites of `class` (`used`, `denied`, ...), in capability
    /// number order.
    pub fn in_class(&self, class: &str) -> Vec<String> {
        let set: BTreeSet<&str> = self
            .checks
            .values()
            .filter(|c| c.class == class)
            .map(|c| c.capability.as_str())
            .collect();
        let mut v: Vec<String> = set.into_iter().map(str::to_owned).collect();
        v.sort_by_key(|c| capmon_core::names::capability_number(c).unwrap_or(u32::MAX));
        v
    }

    /// Granted and never used (the analysis' `unused`, without building a report).
    pub fn unused(&self) -> Vec<String> {
        let used = self.in_class("used");
        self.row
            .granted
            .iter()
            .filter(|g| !used.contains(g))
            .cloned()
            .collect()
    }

    /// Its seccomp denials, as reports list them.
    pub fn denied(&self) -> Vec<Denial> {
        self.denials
            .values()
            .map(|d| Denial {
                name: d.syscall.clone(),
                number: d.number,
                errno: d.errno.clone(),
                count: d.count,
                comm: Some(d.comm.clone()),
            })
            .collect()
    }

    /// Whether the container runs.
    pub fn running(&self) -> bool {
        self.row.exited_at.is_none()
    }

    /// The container's report, from what is kept (the same analysis `capmon record` makes).
    pub fn report(&self) -> RecordReport {
        let mut checks = Vec::new();
        for c in self.checks.values() {
            checks.push(CapCheck {
                capability: c.capability.clone(),
                class: CapClass::parse(&c.class).unwrap_or(CapClass::Used),
                reason: c.reason.clone(),
                result: if c.result == "granted" {
                    "granted"
                } else {
                    "refused"
                },
                count: c.count,
                noaudit_caller: None,
                comm: c.comm.clone(),
                pid: c.pid,
                syscall: (!c.syscall.is_empty()).then(|| c.syscall.clone()),
                site: (!c.site.is_empty()).then(|| c.site.clone()),
                stack: c.stack.clone(),
            });
        }
        let caps = Capabilities {
            used: self.in_class("used"),
            denied: self.in_class("denied"),
            probe: self.in_class("probe"),
            ignored: self.in_class("ignored"),
            checks,
        };
        let syscalls = Syscalls {
            used: self.syscalls.iter().cloned().collect(),
            runtime: self.runtime_syscalls.iter().cloned().collect(),
            denied: self.denied(),
        };
        let mut ctx = BuildContext::new(self.row.granted.clone());
        ctx.findings = self.findings.clone();
        ctx.uid = self.row.uid;
        ctx.complete = self.row.complete;
        report::assemble(
            &ctx,
            vec![self.display_name().to_owned()],
            0,
            None,
            caps,
            syscalls,
            BTreeMap::new(),
        )
    }

    /// Name, or short id when there is none.
    pub fn display_name(&self) -> &str {
        self.row.name.as_deref().unwrap_or(&self.row.short_id)
    }

    fn take_batch(&mut self, batch: &mut Batch) {
        let id = self.row.id.clone();
        if self.dirty_row {
            batch.containers.push(self.row.clone());
            self.dirty_row = false;
        } else if self.touched {
            batch.touches.push((id.clone(), self.row.last_seen));
        }
        self.touched = false;
        for key in std::mem::take(&mut self.dirty_checks) {
            if let Some(c) = self.checks.get(&key) {
                batch.checks.push((id.clone(), c.clone()));
            }
        }
        for (name, runtime) in self.new_syscalls.drain(..) {
            batch.syscalls.push((id.clone(), name, runtime));
        }
        for key in std::mem::take(&mut self.dirty_denials) {
            if let Some(d) = self.denials.get(&key) {
                batch.denials.push((id.clone(), d.clone()));
            }
        }
    }

    fn is_dirty(&self) -> bool {
        self.dirty_row
            || self.touched
            || !self.dirty_checks.is_empty()
            || !self.new_syscalls.is_empty()
            || !self.dirty_denials.is_empty()
    }
}

/// A posture's failed checks as (check, detail).
fn posture_findings(p: capmon_core::posture::Posture) -> Vec<(String, String)> {
    p.findings
        .into_iter()
        .map(|f| (f.check.as_str().to_owned(), f.detail))
        .collect()
}

fn findings_of(posture: Option<&serde_json::Value>) -> Vec<(String, String)> {
    posture
        .and_then(|p| p.get("findings"))
        .and_then(|f| f.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|f| {
                    Some((
                        f.get("check")?.as_str()?.to_owned(),
                        f.get("detail")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Model {
    /// Loads what the store holds.
    pub fn from_store(stored: Vec<Stored>) -> Model {
        let mut m = Model::default();
        for s in stored {
            let c = ContainerState::from_stored(s);
            // Running containers of an earlier run keep their cgroup id; new snapshots for it
            // continue their counts.
            if c.running() {
                m.by_cgroup.insert(c.row.cgroup_id, c.row.id.clone());
            }
            m.containers.insert(c.row.id.clone(), c);
        }
        m
    }

    /// Finds a container by full id, unique id prefix (the short id), or name.
    pub fn find(&self, key: &str) -> Result<&ContainerState, FindError> {
        if let Some(c) = self.containers.get(key) {
            return Ok(c);
        }
        let by_name: Vec<&ContainerState> = self
            .containers
            .values()
            .filter(|c| c.row.name.as_deref() == Some(key))
            .collect();
        let matches: Vec<&ContainerState> = if !by_name.is_empty() {
            by_name
        } else if key.len() >= 4 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.containers
                .values()
                .filter(|c| c.row.id.starts_with(key))
                .collect()
        } else {
            Vec::new()
        };
        match matches.as_slice() {
            [one] => Ok(one),
            [] => Err(FindError::NotFound(key.to_owned())),
            many => {
                // The running one wins over exited namesakes.
                let running: Vec<&&ContainerState> = many.iter().filter(|c| c.running()).collect();
                match running.as_slice() {
                    [one] => Ok(one),
                    _ => Err(FindError::Ambiguous(key.to_owned(), many.len())),
                }
            }
        }
    }

    fn batch(&mut self) -> Batch {
        let mut batch = Batch {
            deletes: std::mem::take(&mut self.pruned),
            ..Default::default()
        };
        for c in self.containers.values_mut().filter(|c| c.is_dirty()) {
            c.take_batch(&mut batch);
        }
        batch
    }

    /// Containers by state.
    pub fn counts(&self) -> (usize, usize) {
        let running = self.containers.values().filter(|c| c.running()).count();
        (running, self.containers.len() - running)
    }
}

/// Why a container lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// No such container.
    #[error("no container with id, short id or name {0:?}")]
    NotFound(String),
    /// Several match.
    #[error("{0:?} matches {1} containers: use more of the id")]
    Ambiguous(String, usize),
}

/// A snapshot from the probe thread.
struct Snapshot {
    observed: BTreeMap<u64, Observed>,
}

/// What the probe thread is asked to do besides polling.
enum ProbeRequest {
    /// Forget these cgroups in the kernel maps.
    Forget(BTreeSet<u64>),
    /// Drop the counts of these live cgroups that are not containers.
    Trim(BTreeSet<u64>),
    /// Detach and stop.
    Stop(oneshot::Sender<()>),
}

fn probe_thread(
    mut recorder: Recorder,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Snapshot>,
    requests: std::sync::mpsc::Receiver<ProbeRequest>,
) {
    let mut last_poll = Instant::now();
    let mut polls: u64 = 0;
    loop {
        let interval = shared
            .config
            .read()
            .map(|c| c.poll_interval())
            .unwrap_or(Duration::from_secs(1));
        // The ring buffer is drained every 50 ms (so bursts of first sightings fit in it);
        // the maps are read every poll interval.
        let wait = interval
            .saturating_sub(last_poll.elapsed())
            .min(Duration::from_millis(50));
        match requests.recv_timeout(wait) {
            Ok(ProbeRequest::Forget(gone)) => {
                if let Err(e) = recorder.forget(&gone) {
                    tracing::warn!("cannot clear exited cgroups from the kernel maps: {e}");
                }
                continue;
            }
            Ok(ProbeRequest::Trim(ids)) => {
                if let Err(e) = recorder.trim(&ids) {
                    tracing::warn!("cannot trim the kernel maps: {e}");
                }
                continue;
            }
            Ok(ProbeRequest::Stop(done)) => {
                drop(recorder);
                let _ = done.send(());
                return;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        recorder.drain();
        let (checks, denials) = recorder.drained();
        shared
            .health
            .processed_checks
            .store(checks, Ordering::Relaxed);
        shared
            .health
            .processed_denials
            .store(denials, Ordering::Relaxed);
        if last_poll.elapsed() < interval {
            continue;
        }
        last_poll = Instant::now();
        match recorder.observe_all() {
            Ok(observed) => {
                if let Some(o) = observed.values().next() {
                    let mut lost = o
                        .counters
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), *v))
                        .collect::<BTreeMap<_, _>>();
                    lost.insert("undecodable".into(), o.undecodable);
                    if let Ok(mut l) = shared.health.kernel_lost.lock() {
                        *l = lost;
                    }
                }
                // Counting every map's keys costs a syscall per key: every tenth poll.
                polls += 1;
                if polls % 10 == 1
                    && let Ok(fill) = recorder.probes().map_fill()
                    && let Ok(mut f) = shared.health.map_fill.lock()
                {
                    *f = fill;
                }
                shared
                    .health
                    .attached
                    .store(recorder.probes().attached() as u64, Ordering::Relaxed);
                if tx.try_send(Snapshot { observed }).is_err() {
                    shared.health.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => tracing::warn!("reading the kernel maps failed: {e}"),
        }
    }
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
struct ModelWorker {
    shared: Arc<Shared>,
    index: CgroupIndex,
    host_bounding: u64,
    startup_cgroups: HashSet<u64>,
    probe_requests: std::sync::mpsc::Sender<ProbeRequest>,
    names: mpsc::Sender<(String, PathBuf)>,
    ticks: u64,
    /// Fingerprint of each cgroup's last snapshot.
    prints: HashMap<u64, u64>,
}

/// A cheap fingerprint of a cgroup's snapshot (counts, keys, syscalls, denials).
fn fingerprint(o: &Observed) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |v: u64| h = (h ^ v).wrapping_mul(0x100_0000_01b3);
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
    fn apply(&mut self, snap: Snapshot) {
        let arch = Arch::host();
        for (cgroup_id, observed) in snap.observed {
            let known = {
                let Ok(model) = self.shared.model.lock() else {
                    return;
                };
                if model.not_containers.contains(&cgroup_id) || model.gone.contains_key(&cgroup_id)
                {
                    continue;
                }
                model.by_cgroup.get(&cgroup_id).cloned()
            };
            let (id, fresh) = match known {
                Some(id) => (id, None),
                None => match self.new_container(cgroup_id) {
                    Found::Container(state) => (state.row.id.clone(), Some(state)),
                    Found::Other => {
                        if let Ok(mut m) = self.shared.model.lock() {
                            m.unknown.remove(&cgroup_id);
                            m.not_containers.insert(cgroup_id);
                        }
                        continue;
                    }
                    Found::Unknown => {
                        if let Ok(mut m) = self.shared.model.lock() {
                            m.unknown.entry(cgroup_id).or_insert_with(now);
                        }
                        continue;
                    }
                },
            };
            // Unchanged since the last poll: nothing to do.
            let print = fingerprint(&observed);
            if fresh.is_none() && self.prints.get(&cgroup_id) == Some(&print) {
                continue;
            }
            self.prints.insert(cgroup_id, print);
            let (caps, syscalls, _) = report::facts(arch, &observed);
            // Found while only the runtime was in its cgroup (no process of the container's
            // own yet): its posture is read once the container's first process runs.
            let needs_posture = fresh.is_none()
                && self.shared.model.lock().ok().is_some_and(|m| {
                    m.containers
                        .get(&id)
                        .is_some_and(|c| c.row.posture.is_none() && c.row.exited_at.is_none())
                });
            let late_posture = if needs_posture {
                let path = self.index.lookup(cgroup_id).map(|e| e.path.clone());
                path.and_then(|p| self.posture_at(&p))
            } else {
                None
            };
            let Ok(mut model) = self.shared.model.lock() else {
                return;
            };
            if let Some(p) = late_posture
                && let Some(c) = model.containers.get_mut(&id)
            {
                c.row.granted = p.bounding.clone();
                c.row.uid = Some(p.uid);
                c.row.posture = serde_json::to_value(&p).ok();
                c.findings = posture_findings(p);
                c.dirty_row = true;
            }
            if let Some(state) = fresh {
                model.unknown.remove(&cgroup_id);
                model.by_cgroup.insert(cgroup_id, id.clone());
                match model.containers.get_mut(&id) {
                    // Seen in an earlier run: it keeps its history and counts; a new cgroup
                    // means a restart of the container.
                    Some(old) => {
                        old.row.cgroup_id = state.row.cgroup_id;
                        old.row.cgroup_path = state.row.cgroup_path;
                        old.row.exited_at = None;
                        old.row.granted = state.row.granted;
                        old.row.posture = state.row.posture;
                        old.findings = state.findings;
                        old.dirty_row = true;
                    }
                    None => {
                        model.containers.insert(id.clone(), *state);
                    }
                }
            }
            if let Some(c) = model.containers.get_mut(&id) {
                // Active again (a container of an earlier run that still runs continues its
                // counts).
                c.forgotten = false;
                c.absorb(caps, syscalls);
            }
        }
    }

    /// The posture of the container in the cgroup at `path` (under the cgroup2 mount), once a
    /// process of its own runs there.
    fn posture_at(&self, path: &str) -> Option<capmon_core::posture::Posture> {
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
        let posture = self.posture_at(&entry.path);
        let t = now();
        let row = ContainerRow {
            short_id: ident
                .short_id
                .clone()
                .unwrap_or_else(|| id.chars().take(12).collect()),
            id: id.clone(),
            runtime: ident.runtime.as_str().to_owned(),
            pod_uid: ident.pod_uid.clone(),
            qos: ident.qos.map(|q| format!("{q:?}").to_lowercase()),
            cgroup_path: entry.path.clone(),
            cgroup_id,
            first_seen: t,
            last_seen: t,
            exited_at: entry.exited.then_some(t),
            complete: !self.startup_cgroups.contains(&cgroup_id),
            granted: posture
                .as_ref()
                .map(|p| p.bounding.clone())
                .unwrap_or_default(),
            uid: posture.as_ref().map(|p| p.uid),
            posture: posture.as_ref().and_then(|p| serde_json::to_value(p).ok()),
            ..Default::default()
        };
        let _ = self.names.try_send((
            id,
            self.shared
                .config
                .read()
                .map(|c| c.docker_socket.clone())
                .unwrap_or_default(),
        ));
        let findings = posture.map(posture_findings).unwrap_or_default();
        tracing::info!(id = %row.short_id, runtime = %row.runtime, path = %row.cgroup_path, "container found");
        Found::Container(Box::new(ContainerState {
            row,
            findings,
            dirty_row: true,
            ..Default::default()
        }))
    }

    /// Marks containers whose cgroup is gone as exited; asks the probe thread to forget
    /// those already written; prunes past retention.
    fn housekeeping(&mut self) {
        self.ticks += 1;
        // A full walk of the cgroup tree every 10 s finds exited cgroups that are not
        // containers; containers' own exits are seen every second by their directory.
        let exited: HashSet<u64> = if self.ticks.is_multiple_of(10) {
            self.index.scan().exited.into_iter().collect()
        } else {
            HashSet::new()
        };
        // Exited cgroups that are not containers: their kernel entries go, and so do they.
        let mut forget_other = BTreeSet::new();
        let retention = self
            .shared
            .config
            .read()
            .map(|c| c.retention_secs())
            .unwrap_or(i64::MAX);
        let t = now();
        let mut forget = BTreeSet::new();
        let Ok(mut model) = self.shared.model.lock() else {
            return;
        };
        let mut pruned = Vec::new();
        for c in model.containers.values_mut() {
            if c.running()
                && (exited.contains(&c.row.cgroup_id)
                    || !self
                        .index
                        .mount()
                        .join(c.row.cgroup_path.trim_start_matches('/'))
                        .exists())
            {
                c.row.exited_at = Some(t);
                c.dirty_row = true;
                tracing::info!(id = %c.row.short_id, "container exited");
            } else if !c.running() && !c.forgotten && !c.is_dirty() {
                // Exited and written: its counts are final here; the kernel may drop them.
                c.forgotten = true;
                forget.insert(c.row.cgroup_id);
            }
            if c.row.exited_at.is_some_and(|e| t - e > retention) {
                pruned.push(c.row.id.clone());
            }
        }
        for id in &pruned {
            if let Some(c) = model.containers.remove(id) {
                model.by_cgroup.remove(&c.row.cgroup_id);
                self.index.remove(c.row.cgroup_id);
                tracing::info!(id = %c.row.short_id, "container pruned after retention");
            }
        }
        for id in &exited {
            if model.not_containers.remove(id) {
                forget_other.insert(*id);
                self.index.remove(*id);
            }
        }
        // Unknown for two seconds (several scans): the cgroup came and went between scans.
        let stale: Vec<u64> = model
            .unknown
            .iter()
            .filter(|(_, first)| t - **first >= 2)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            model.unknown.remove(&id);
            forget_other.insert(id);
            self.shared
                .health
                .unattributed
                .fetch_add(1, Ordering::Relaxed);
        }
        for id in &forget_other {
            model.gone.insert(*id, t);
        }
        for id in forget.iter().chain(&forget_other) {
            self.prints.remove(id);
        }
        forget.extend(forget_other);
        model.pruned.extend(pruned);
        for id in &forget {
            model.by_cgroup.remove(id);
            model.not_containers.remove(id);
            model.gone.insert(*id, t);
        }
        // Snapshots in flight are long consumed after a minute.
        model.gone.retain(|_, when| t - *when < 60);
        // Counts of cgroups that are not containers are never reported: drop them now and
        // then, so that the host's own activity does not fill the maps.
        let trim: BTreeSet<u64> = if self.ticks.is_multiple_of(10) {
            model.not_containers.iter().copied().collect()
        } else {
            BTreeSet::new()
        };
        drop(model);
        if !forget.is_empty() {
            let _ = self.probe_requests.send(ProbeRequest::Forget(forget));
        }
        if !trim.is_empty() {
            let _ = self.probe_requests.send(ProbeRequest::Trim(trim));
        }
    }
}

/// Opens the store, loads it, starts the probes and the API; runs until SIGTERM/SIGINT.
pub async fn run(
    config: Config,
    config_file: Option<PathBuf>,
    overrides: capmon_core::config::Overrides,
) -> Result<(), DaemonError> {
    // Signals first: once the API answers, a SIGHUP or SIGTERM must find its handler (their
    // default action would end the process without a flush).
    use tokio::signal::unix::{SignalKind, signal};
    let sig = |kind| signal(kind).map_err(|e| DaemonError::Internal(format!("signals: {e}")));
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    let mut hup = sig(SignalKind::hangup())?;
    let store = Store::open(&config.state_dir)?;
    let stored = store.load()?;
    tracing::info!(path = %store.path().display(), containers = stored.len(), "store opened");
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: config.listen,
            source,
        })?;
    let mount = crate::containers::cgroup::find_cgroup2_mount()?;
    let startup_cgroups: HashSet<u64> = crate::containers::cgroup::all_cgroup_ids(&mount)
        .into_iter()
        .collect();
    let recorder = Recorder::start()?;
    // Loading parsed the kernel's BTF and symbol table (tens of MB, now freed): give the
    // memory back to the system rather than keep it in the allocator's free lists.
    // SAFETY: plain libc call without pointers.
    unsafe { libc::malloc_trim(0) };
    let mode = recorder.probes().mode().name();
    let shared = Arc::new(Shared {
        model: Mutex::new(Model::from_store(stored)),
        health: Health {
            mode,
            attached: AtomicU64::new(recorder.probes().attached() as u64),
            kernel_lost: Mutex::new(BTreeMap::new()),
            dropped: AtomicU64::new(0),
            unattributed: AtomicU64::new(0),
            map_fill: Mutex::new(Vec::new()),
            processed_checks: AtomicU64::new(0),
            processed_denials: AtomicU64::new(0),
            store_write: prometheus::Histogram::with_opts(
                prometheus::HistogramOpts::new(
                    "capmon_store_write_duration_seconds",
                    "Time to write one batch to the store.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                ]),
            )
            .map_err(|e| DaemonError::Internal(e.to_string()))?,
            store_errors: AtomicU64::new(0),
        },
        db_path: store.path().to_owned(),
        config: RwLock::new(config.clone()),
    });
    tracing::info!(mode, listen = %config.listen, "capmon running");

    let (snap_tx, mut snap_rx) = mpsc::channel::<Snapshot>(config.queue_capacity);
    let (req_tx, req_rx) = std::sync::mpsc::channel();
    let probe_shared = shared.clone();
    let probe = std::thread::Builder::new()
        .name("capmon-probes".into())
        .spawn(move || probe_thread(recorder, probe_shared, snap_tx, req_rx))
        .map_err(|e| DaemonError::Internal(format!("cannot start the probe thread: {e}")))?;

    // Names from the container API, looked up off the model's path.
    let (names_tx, mut names_rx) = mpsc::channel::<(String, PathBuf)>(1024);
    let names_shared = shared.clone();
    tokio::spawn(async move {
        while let Some((id, socket)) = names_rx.recv().await {
            match crate::containers::names_api::lookup(&socket, &id, Duration::from_secs(2)).await {
                Ok(Some(n)) => {
                    if let Ok(mut m) = names_shared.model.lock()
                        && let Some(c) = m.containers.get_mut(&id)
                    {
                        c.row.name = Some(n.name);
                        c.row.image = Some(n.image);
                        c.row.namespace = n.pod_namespace;
                        c.row.pod = n.pod_name;
                        c.row.k8s_container = n.k8s_container;
                        c.dirty_row = true;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::debug!("container names: {e}"),
            }
        }
    });

    // The store thread: batches in, one transaction each. At most one batch is in flight:
    // while the store is busy (a slow disk), changes stay marked in the model and go into the
    // next batch, so nothing queues without bound and nothing is lost.
    let (batch_tx, batch_rx) = std::sync::mpsc::channel::<(Batch, Option<oneshot::Sender<()>>)>();
    let store_busy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = store_busy.clone();
    let store_shared = shared.clone();
    let store_thread = std::thread::Builder::new()
        .name("capmon-store".into())
        .spawn(move || {
            let mut store = store;
            let mut pending: Option<Batch> = None;
            while let Ok((batch, done)) = batch_rx.recv() {
                let batch = match pending.take() {
                    Some(mut p) => {
                        p.containers.extend(batch.containers);
                        p.touches.extend(batch.touches);
                        p.checks.extend(batch.checks);
                        p.syscalls.extend(batch.syscalls);
                        p.denials.extend(batch.denials);
                        p.deletes.extend(batch.deletes);
                        p
                    }
                    None => batch,
                };
                if !batch.is_empty() {
                    let t = Instant::now();
                    match store.write(&batch) {
                        Ok(()) => store_shared
                            .health
                            .store_write
                            .observe(t.elapsed().as_secs_f64()),
                        Err(e) => {
                            tracing::error!("{e}; the batch is kept and retried");
                            store_shared
                                .health
                                .store_errors
                                .fetch_add(1, Ordering::Relaxed);
                            pending = Some(batch);
                        }
                    }
                }
                busy.store(false, Ordering::Release);
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        })
        .map_err(|e| DaemonError::Internal(format!("cannot start the store thread: {e}")))?;

    let api = crate::api::router(shared.clone());
    let (stop_api_tx, stop_api_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, api)
            .with_graceful_shutdown(async {
                let _ = stop_api_rx.await;
            })
            .await
    });

    let mut worker = ModelWorker {
        shared: shared.clone(),
        index: {
            let mut index = CgroupIndex::new(mount);
            index.scan();
            index
        },
        host_bounding: crate::containers::posture::host_bounding(),
        startup_cgroups,
        probe_requests: req_tx.clone(),
        names: names_tx,
        ticks: 0,
        prints: HashMap::new(),
    };
    let batch_every = config.batch_interval();
    let mut batch_timer = tokio::time::interval(batch_every);
    let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            Some(snap) = snap_rx.recv() => worker.apply(snap),
            _ = batch_timer.tick() => {
                if !store_busy.swap(true, Ordering::AcqRel) {
                    let batch = shared.model.lock().map(|mut m| m.batch()).unwrap_or_default();
                    let _ = batch_tx.send((batch, None));
                } else {
                    tracing::debug!("the store is still writing the last batch; deferring");
                }
            }
            _ = housekeeping.tick() => worker.housekeeping(),
            _ = hup.recv() => reload(&shared, config_file.as_deref(), &overrides),
            _ = term.recv() => { tracing::info!("SIGTERM: flushing and stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: flushing and stopping"); break; }
        }
    }
    // Stop: detach the probes, take what they last saw, write it, stop the API.
    let (done_tx, done_rx) = oneshot::channel();
    let _ = req_tx.send(ProbeRequest::Stop(done_tx));
    let _ = tokio::time::timeout(Duration::from_secs(1), done_rx).await;
    while let Ok(snap) = snap_rx.try_recv() {
        worker.apply(snap);
    }
    let batch = shared
        .model
        .lock()
        .map(|mut m| m.batch())
        .unwrap_or_default();
    let (flushed_tx, flushed_rx) = oneshot::channel();
    let _ = batch_tx.send((batch, Some(flushed_tx)));
    let _ = tokio::time::timeout(Duration::from_secs(2), flushed_rx).await;
    drop(batch_tx);
    let _ = stop_api_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    let _ = probe.join();
    let _ = store_thread.join();
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: re-reads the config file (flags and environment still override it); settings that
/// need a restart are reported.
fn reload(shared: &Shared, file: Option<&Path>, overrides: &capmon_core::config::Overrides) {
    match Config::load(file, overrides) {
        Ok(new) => {
            let Ok(mut cur) = shared.config.write() else {
                return;
            };
            if new.listen != cur.listen || new.state_dir != cur.state_dir {
                tracing::warn!("listen and state_dir changes take effect at the next start");
            }
            cur.poll_interval_ms = new.poll_interval_ms;
            cur.retention_hours = new.retention_hours;
            cur.docker_socket = new.docker_socket;
            tracing::info!(
                poll_interval_ms = cur.poll_interval_ms,
                retention_hours = cur.retention_hours,
                "SIGHUP: configuration reloaded"
            );
        }
        Err(e) => tracing::error!("SIGHUP: {e}; keeping the current configuration"),
    }
}

/// A container in API listings.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Full id.
    pub id: String,
    /// Short id.
    pub short_id: String,
    /// Name.
    pub name: Option<String>,
    /// Image.
    pub image: Option<String>,
    /// Runtime.
    pub runtime: String,
    /// Kubernetes namespace.
    pub namespace: Option<String>,
    /// Kubernetes pod.
    pub pod: Option<String>,
    /// Running or exited.
    pub running: bool,
    /// First seen (Unix seconds).
    pub first_seen: i64,
    /// Last activity.
    pub last_seen: i64,
    /// Exit time.
    pub exited_at: Option<i64>,
    /// Granted capabilities.
    pub granted: Vec<String>,
    /// Used.
    pub used: Vec<String>,
    /// Denied.
    pub denied: Vec<String>,
    /// Granted and unused.
    pub unused: Vec<String>,
    /// Distinct syscalls.
    pub syscalls_used: usize,
    /// Seccomp denials (syscall, errno, count).
    pub syscalls_denied: Vec<Denial>,
    /// Failed checklist items.
    pub posture: Vec<String>,
}

impl ContainerState {
    /// The listing entry.
    pub fn summary(&self) -> Summary {
        Summary {
            id: self.row.id.clone(),
            short_id: self.row.short_id.clone(),
            name: self.row.name.clone(),
            image: self.row.image.clone(),
            runtime: self.row.runtime.clone(),
            namespace: self.row.namespace.clone(),
            pod: self.row.pod.clone(),
            running: self.running(),
            first_seen: self.row.first_seen,
            last_seen: self.row.last_seen,
            exited_at: self.row.exited_at,
            granted: self.row.granted.clone(),
            used: self.in_class("used"),
            denied: self.in_class("denied"),
            unused: self.unused(),
            syscalls_used: self.syscalls.len(),
            syscalls_denied: self.denied(),
            posture: self.findings.iter().map(|(c, _)| c.clone()).collect(),
        }
    }
}
