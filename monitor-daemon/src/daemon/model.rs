//! The daemon's model: every container it knows, by id and by cgroup; what it knows of cgroups
//! that are not containers (yet); the changes to write; and [`Shared`], the state the API reads
//! (model, health, configuration). It knows neither the API nor the worker that feeds it.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    path::PathBuf,
    sync::{Mutex, RwLock},
};

use capmon_core::{
    config::Config,
    posture::{Posture, PostureSource},
    report::{Capabilities, Syscalls},
};

use super::{
    container::{Batch, ContainerState, Stored},
    health::Health,
    identity::{Learned, Pending},
};

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
    /// cgroup ids in snapshots that no record or scan names yet, with when they were first
    /// seen and [`Model::snapshots`] then.
    unknown: HashMap<u64, (i64, u64)>,
    /// Ids deleted by retention, to delete from the store.
    pruned: Vec<String>,
    /// Snapshots applied so far.
    snapshots: u64,
    /// Containers seen exiting in this run, with [`Model::snapshots`] then: their kernel
    /// entries are forgotten only after two more snapshots (the first one read after the exit
    /// carries the last counts and lifecycle records; the one in flight at the exit may not).
    exit_snapshot: HashMap<String, u64>,
    /// What was learned about containers before their cgroup was resolved.
    pending: Pending,
    /// The oldest cgroup whose creation the kernel side recorded ([`Model::created`]).
    first_created: Option<u64>,
}

/// Why a container lookup failed ([`Model::find`]).
pub use capmon_core::lookup::FindError;

/// What the model knows of a cgroup id of a snapshot.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// A container's, by id.
    Container(String),
    /// Not a container, or gone: its records are ignored.
    Ignored,
    /// Nothing yet.
    New,
}

/// What one housekeeping pass found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// cgroups whose kernel entries can go.
    pub forget: BTreeSet<u64>,
    /// cgroups no longer tracked (pruned containers, exited non-containers).
    pub untracked: Vec<u64>,
    /// cgroups dropped because no scan found their path (see `Stage::Unattributed`).
    pub unattributed: u64,
    /// Of those, the ones older than the first creation recorded: created before the probes
    /// attached (see `Stage::BeforeStart`), not counted in `unattributed`.
    pub before_start: u64,
}

/// How long exited containers are kept, and which cgroups are gone.
pub struct SweepInput<'a> {
    /// Now (Unix seconds).
    pub now: i64,
    /// Retention of exited containers (seconds).
    pub retention: i64,
    /// cgroups a full scan found gone.
    pub exited: &'a HashSet<u64>,
    /// Whether the cgroup at a path (as stored) still exists.
    pub cgroup_exists: &'a dyn Fn(&str) -> bool,
    /// Whether creation records were ever lost (a full ring buffer, or the lifecycle stage):
    /// then an unnamed cgroup older than the first creation recorded may be one whose record
    /// was lost, and counts as unattributed.
    pub records_lost: bool,
}

impl capmon_core::lookup::Findable for ContainerState {
    fn id(&self) -> &str {
        &self.info.id
    }
    fn name(&self) -> Option<&str> {
        self.info.name.as_deref()
    }
    fn running(&self) -> bool {
        ContainerState::running(self)
    }
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
                m.by_cgroup.insert(c.info.cgroup_id, c.info.id.clone());
            }
            m.containers.insert(c.info.id.clone(), c);
        }
        m
    }

    /// Finds a container by full id, unique id prefix (the short id), or name
    /// ([`capmon_core::lookup::find`]; the running one wins over exited namesakes).
    pub fn find(&self, key: &str) -> Result<&ContainerState, FindError> {
        capmon_core::lookup::find(&self.containers, key)
    }

    /// Containers (running, exited).
    pub fn counts(&self) -> (usize, usize) {
        let running = self.containers.values().filter(|c| c.running()).count();
        (running, self.containers.len() - running)
    }

    /// Takes what changed since the last batch.
    pub fn batch(&mut self) -> Batch {
        let mut batch = Batch {
            deletes: std::mem::take(&mut self.pruned),
            ..Default::default()
        };
        for c in self.containers.values_mut().filter(|c| c.is_dirty()) {
            c.take_batch(&mut batch);
        }
        batch
    }

    /// What is known of the cgroup `id`.
    pub fn seen(&self, cgroup_id: u64) -> Seen {
        if self.not_containers.contains(&cgroup_id) || self.gone.contains_key(&cgroup_id) {
            return Seen::Ignored;
        }
        match self.by_cgroup.get(&cgroup_id) {
            Some(id) => Seen::Container(id.clone()),
            None => Seen::New,
        }
    }

    /// One more snapshot was applied.
    pub fn snapshot_applied(&mut self) {
        self.snapshots += 1;
    }

    /// Whether anything was recorded for the cgroup: a container's, one that is not a
    /// container, one no scan found yet, or one recently forgotten.
    pub fn knows(&self, cgroup_id: u64) -> bool {
        self.by_cgroup.contains_key(&cgroup_id)
            || self.not_containers.contains(&cgroup_id)
            || self.unknown.contains_key(&cgroup_id)
            || self.gone.contains_key(&cgroup_id)
    }

    /// The cgroup is not a container.
    pub fn not_a_container(&mut self, cgroup_id: u64) {
        self.unknown.remove(&cgroup_id);
        self.not_containers.insert(cgroup_id);
    }

    /// The kernel side recorded the creation of `cgroup_id`: the oldest such id tells the
    /// cgroups created before the probes attached from those whose record was lost (cgroup ids
    /// only grow: the kernel's `kernfs` ids are allocated cyclically with a generation above).
    pub fn created(&mut self, cgroup_id: u64) {
        self.first_created = Some(self.first_created.map_or(cgroup_id, |f| f.min(cgroup_id)));
    }

    /// No record or scan names the cgroup (yet): kept for a while, then dropped as
    /// unattributed.
    pub fn not_found_yet(&mut self, cgroup_id: u64, now: i64) {
        self.unknown
            .entry(cgroup_id)
            .or_insert((now, self.snapshots));
    }

    /// cgroups that are not containers (their counts are never reported).
    pub fn not_containers(&self) -> BTreeSet<u64> {
        self.not_containers.iter().copied().collect()
    }

    /// Whether the container `id` runs and its posture is still to be read (it was found while
    /// only its runtime ran in its cgroup).
    pub fn needs_posture(&self, id: &str) -> bool {
        self.lacks_posture(id) && self.containers.get(id).is_some_and(|c| c.running())
    }

    /// Whether the container `id` has no posture read from a process yet (running or not:
    /// the kernel side's record of its first exec can come after its first counts); the one
    /// its spec asks for gives way.
    pub fn lacks_posture(&self, id: &str) -> bool {
        self.containers.get(id).is_some_and(|c| {
            c.info
                .posture
                .as_ref()
                .is_none_or(|p| p.source == PostureSource::Spec)
        })
    }

    /// Takes what was learned about container `id` from outside the kernel: now when it is
    /// known, else when it is adopted.
    pub fn learn(&mut self, id: &str, learned: Learned) {
        match self.containers.get_mut(id) {
            Some(c) => c.learn(learned),
            None => self.pending.keep(id, learned),
        }
    }

    /// Containers whose names or spec wait for their cgroup.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether names, and a spec, wait for container `id`.
    pub fn pending_for(&self, id: &str) -> (bool, bool) {
        self.pending.peek(id).map_or((false, false), |l| {
            (
                l.names.name.is_some() || l.names.pod.is_some(),
                l.applied.is_some(),
            )
        })
    }

    /// Takes the posture the kernel side read at the container's first exec: it replaces one
    /// its spec asked for or one read from `/proc` (a container still running when it was
    /// found: `/proc` is the fallback, the first exec's credentials what it started with),
    /// keeping the label `/proc` read when the kernel's record has none. A `/proc` bounding
    /// set that differs is returned, for the log.
    pub fn take_kernel_posture(&mut self, id: &str, posture: Posture) -> Option<Vec<String>> {
        let c = self.containers.get_mut(id)?;
        let (posture, differs) = match c.info.posture.take() {
            Some(old) if old.source == PostureSource::Kernel => (old, None),
            Some(old) if old.source == PostureSource::Proc => {
                let differs = (old.bounding != posture.bounding).then(|| old.bounding.clone());
                let posture = match posture.lsm_label {
                    Some(_) => posture,
                    None => posture.with_label(old.lsm_label.as_deref()),
                };
                (posture, differs)
            }
            _ => (posture, None),
        };
        c.info.set_posture(posture);
        c.mark_changed();
        differs
    }

    /// Takes the posture read once the container's own process ran.
    pub fn set_posture(&mut self, id: &str, posture: Posture) {
        if let Some(c) = self.containers.get_mut(id) {
            c.info.set_posture(posture);
            c.mark_changed();
        }
    }

    /// A container found in `cgroup_id`: new, or seen in an earlier run (then it keeps its
    /// history and counts; a new cgroup means a restart).
    pub fn adopt(&mut self, cgroup_id: u64, found: ContainerState) {
        let id = found.info.id.clone();
        self.unknown.remove(&cgroup_id);
        self.by_cgroup.insert(cgroup_id, id.clone());
        if found.info.exited_at.is_some() {
            self.exit_snapshot.insert(id.clone(), self.snapshots);
        }
        match self.containers.get_mut(&id) {
            Some(old) => {
                let new = found.info;
                old.info.cgroup_id = new.cgroup_id;
                old.info.cgroup_path = new.cgroup_path;
                old.info.exited_at = None;
                old.info.granted = new.granted;
                old.info.posture = new.posture;
                old.mark_changed();
            }
            None => {
                self.containers.insert(id.clone(), found);
            }
        }
        if let Some(learned) = self.pending.take(&id)
            && let Some(c) = self.containers.get_mut(&id)
        {
            c.learn(learned);
        }
    }

    /// Folds a snapshot's facts into the container `id` (active again: a container of an
    /// earlier run that still runs continues its counts).
    pub fn absorb(&mut self, id: &str, caps: Capabilities, syscalls: Syscalls, now: i64) {
        if let Some(c) = self.containers.get_mut(id) {
            c.forgotten = false;
            c.absorb(caps, syscalls, now);
        }
    }

    /// Marks containers whose cgroup is gone as exited; finds the cgroups the kernel side may
    /// forget (exited containers whose last counts are written, exited non-containers, cgroups
    /// no scan found); prunes exited containers past retention.
    pub fn sweep(&mut self, input: &SweepInput<'_>) -> Swept {
        let t = input.now;
        let mut swept = Swept::default();
        let mut pruned = Vec::new();
        let snapshots = self.snapshots;
        for c in self.containers.values_mut() {
            let last_counts_in = self
                .exit_snapshot
                .get(&c.info.id)
                .is_none_or(|at| snapshots >= at + 2);
            if c.running()
                && (input.exited.contains(&c.info.cgroup_id)
                    || !(input.cgroup_exists)(&c.info.cgroup_path))
            {
                c.info.exited_at = Some(t);
                c.mark_changed();
                self.exit_snapshot.insert(c.info.id.clone(), snapshots);
                tracing::info!(id = %c.info.short_id, "container exited");
            } else if !c.running() && !c.forgotten && !c.is_dirty() && last_counts_in {
                // Exited, its last counts absorbed and written: final here; the kernel may
                // drop them.
                c.forgotten = true;
                self.exit_snapshot.remove(&c.info.id);
                swept.forget.insert(c.info.cgroup_id);
            }
            if c.info.exited_at.is_some_and(|e| t - e > input.retention) {
                pruned.push(c.info.id.clone());
            }
        }
        for id in &pruned {
            if let Some(c) = self.containers.remove(id) {
                self.exit_snapshot.remove(id);
                self.by_cgroup.remove(&c.info.cgroup_id);
                swept.untracked.push(c.info.cgroup_id);
                tracing::info!(id = %c.info.short_id, "container pruned after retention");
            }
        }
        self.pruned.extend(pruned);
        let others = self.sweep_others(input);
        swept.unattributed = others.unattributed;
        swept.before_start = others.before_start;
        swept.untracked.extend(others.untracked);
        swept.forget.extend(others.forget);
        for id in &swept.forget {
            self.by_cgroup.remove(id);
            self.not_containers.remove(id);
            self.gone.insert(*id, t);
        }
        // Snapshots in flight are long consumed after a minute.
        self.gone.retain(|_, when| t - *when < 60);
        swept
    }

    /// Exited cgroups that are not containers, and cgroups still unknown two snapshots and
    /// two seconds after their first counts: their kernel entries go. (A cgroup created
    /// while the maps are read has counts in that snapshot and its record of creation, with
    /// its path, in the next: the wait is counted in snapshots, whatever the poll interval.)
    fn sweep_others(&mut self, input: &SweepInput<'_>) -> Swept {
        let mut swept = Swept::default();
        for id in input.exited {
            if self.not_containers.remove(id) {
                swept.forget.insert(*id);
                swept.untracked.push(*id);
            }
        }
        let snapshots = self.snapshots;
        let stale: Vec<u64> = self
            .unknown
            .iter()
            .filter(|(_, (first, at))| input.now - *first >= 2 && snapshots >= at + 2)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.unknown.remove(&id);
            swept.forget.insert(id);
            if !input.records_lost && self.first_created.is_none_or(|f| id < f) {
                swept.before_start += 1;
            } else {
                swept.unattributed += 1;
            }
        }
        swept
    }
}

#[cfg(test)]
mod tests;
