//! The kernel reader: the loaded probes, their ring buffer of first sightings and a kernel
//! symbolizer, behind one owner. It observes any cgroup by id: the daemon's probe thread reads
//! every cgroup with it, `capmon record` its own cgroup, tests the cgroups a container runtime
//! creates.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
    sync::Arc,
};

use aya::maps::{MapData, RingBuf};
use capmon_core::report::Observed;
use monitor_common::{CapEvent, CapKey, DenyEvent, DenyKey};

use super::{
    events::{Event, Lifecycle, decode},
    kallsyms::Symbolizer,
    loader::{ProbeError, Probes, missing_caps},
};

/// Why the kernel reader cannot start.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Not root.
    #[error(
        "capmon must run as root: it loads eBPF programs, which needs CAP_BPF, CAP_PERFMON and \
         CAP_SYSLOG (run it with sudo)"
    )]
    NotRoot,
    /// Root, but without capabilities capmon needs.
    #[error(
        "capmon runs as root but lacks {0}: it needs CAP_BPF (maps and programs), CAP_PERFMON \
         (tracing programs, kernel stacks) and CAP_SYSLOG (kernel symbol addresses)"
    )]
    MissingCaps(String),
    /// No kernel BTF.
    #[error(
        "this kernel exposes no BTF (/sys/kernel/btf/vmlinux is missing): capmon needs a kernel \
         built with CONFIG_DEBUG_INFO_BTF=y; `capmon check` tells more"
    )]
    NoBtf,
    /// Kernel symbols cannot be read.
    #[error("cannot read /proc/kallsyms to name kernel call sites: {0}")]
    Kallsyms(#[source] std::io::Error),
    /// Probe trouble.
    #[error(transparent)]
    Probes(#[from] ProbeError),
}

/// What the probes need before anything is loaded: root, capmon's capabilities and kernel BTF.
pub fn preflight() -> Result<(), KernelError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(KernelError::NotRoot);
    }
    let missing = missing_caps();
    if !missing.is_empty() {
        return Err(KernelError::MissingCaps(missing.join(", ")));
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(KernelError::NoBtf);
    }
    Ok(())
}

/// The probes, their ring buffer and a kernel symbolizer: observes any cgroup by id.
pub struct KernelReader {
    probes: Probes,
    ring: RingBuf<MapData>,
    symbolizer: Symbolizer,
    /// First sightings, shared with the snapshots read from them (copied on the next write
    /// while one is still in use).
    cap_events: Arc<HashMap<CapKey, CapEvent>>,
    deny_events: Arc<HashMap<DenyKey, DenyEvent>>,
    undecodable: u64,
    drained: (u64, u64),
    /// Symbolized stacks by hash, shared the same way.
    frames: Arc<HashMap<u64, Arc<Vec<String>>>>,
    lifecycle: LifecycleBuffer,
}

/// Lifecycle records drained and not yet taken (none are kept until someone asks:
/// [`KernelReader::keep_lifecycle`]).
#[derive(Default)]
struct LifecycleBuffer {
    keep: bool,
    records: Vec<Lifecycle>,
    dropped: u64,
}

impl LifecycleBuffer {
    fn push(&mut self, l: Lifecycle) {
        if !self.keep {
            return;
        }
        if self.records.len() < LIFECYCLE_CAP {
            self.records.push(l);
        } else {
            self.dropped += 1;
        }
    }
}

/// Lifecycle records kept until taken ([`KernelReader::take_lifecycle`]); beyond, the oldest
/// are kept and the rest counted as dropped (a reader nobody takes them from, as `capmon
/// record`'s, stays bounded).
const LIFECYCLE_CAP: usize = 65_536;

impl KernelReader {
    /// Checks the preconditions, loads and attaches the probes of the mode
    /// `CAPMON_PROBE_MODE` asks for, else of the best mode this kernel attaches.
    pub fn start() -> Result<Self, KernelError> {
        Self::start_with(super::loader::requested_mode()?)
    }

    /// [`KernelReader::start`] with the mode `requested` (none: the best that attaches).
    pub fn start_with(
        requested: Option<super::probe_table::ProbeMode>,
    ) -> Result<Self, KernelError> {
        preflight()?;
        let symbolizer = Symbolizer::from_kallsyms().map_err(KernelError::Kallsyms)?;
        let mut probes = Probes::attach_mode(requested)?;
        let ring = probes.take_events()?;
        Ok(Self {
            probes,
            ring,
            symbolizer,
            cap_events: Arc::default(),
            deny_events: Arc::default(),
            undecodable: 0,
            drained: (0, 0),
            frames: Arc::default(),
            lifecycle: LifecycleBuffer::default(),
        })
    }

    /// The ring buffer's fd, to wait for readability.
    pub fn events_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd as _;
        self.ring.as_raw_fd()
    }

    /// Takes every record waiting in the ring buffer.
    pub fn drain(&mut self) {
        while let Some(item) = self.ring.next() {
            match decode(&item) {
                Ok(Event::Cap(e)) => {
                    self.drained.0 += 1;
                    if !self.cap_events.contains_key(&e.key) {
                        Arc::make_mut(&mut self.cap_events).insert(e.key, e);
                    }
                }
                Ok(Event::Deny(e)) => {
                    self.drained.1 += 1;
                    if !self.deny_events.contains_key(&e.key) {
                        Arc::make_mut(&mut self.deny_events).insert(e.key, e);
                    }
                }
                Ok(Event::Cgroup(e)) => self.lifecycle.push(Lifecycle::of_cgroup(&e)),
                Ok(Event::Exec(e)) => self.lifecycle.push(Lifecycle::FirstExec(e)),
                Err(err) => {
                    tracing::debug!("undecodable ring-buffer record: {err}");
                    self.undecodable += 1;
                }
            }
        }
    }

    /// Keeps the cgroups' lifecycle records from now on, for [`KernelReader::take_lifecycle`]
    /// (a reader that only observes its own cgroup, as `capmon record`'s, does not).
    pub fn keep_lifecycle(&mut self) {
        self.lifecycle.keep = true;
    }

    /// The cgroups' lives drained since the last call, in order, and how many were dropped in
    /// all because nobody took them.
    pub fn take_lifecycle(&mut self) -> (Vec<Lifecycle>, u64) {
        (
            std::mem::take(&mut self.lifecycle.records),
            self.lifecycle.dropped,
        )
    }

    /// Ring-buffer records taken so far: (capability-check first sightings, denials).
    pub fn drained(&self) -> (u64, u64) {
        self.drained
    }

    /// The probes.
    pub fn probes(&self) -> &Probes {
        &self.probes
    }

    /// Everything recorded so far, for every cgroup with activity (one pass over each map).
    pub fn observe_all(&mut self) -> Result<BTreeMap<u64, Observed>, KernelError> {
        self.collect(|_| true)
    }

    /// Everything recorded for one cgroup so far.
    pub fn observe(&mut self, cgroup_id: u64) -> Result<Observed, KernelError> {
        let mut one = self.collect(|id| id == cgroup_id)?;
        match one.remove(&cgroup_id) {
            Some(o) => Ok(o),
            None => Ok(Observed {
                counters: Arc::new(self.probes.counters()?),
                undecodable: self.undecodable,
                ..Default::default()
            }),
        }
    }

    /// What the maps and the ring buffer hold for the cgroups `keep` selects, by cgroup.
    fn collect(
        &mut self,
        keep: impl Fn(u64) -> bool + Copy,
    ) -> Result<BTreeMap<u64, Observed>, KernelError> {
        self.drain();
        let counters = self.probes.counters()?;
        let mut all: BTreeMap<u64, Observed> = BTreeMap::new();
        for (key, count) in self.probes.cap_checks(keep)? {
            all.entry(key.cgroup_id)
                .or_default()
                .cap_checks
                .push((key, count));
        }
        for (key, count) in self.probes.denials(keep)? {
            all.entry(key.cgroup_id)
                .or_default()
                .denials
                .push((key, count));
        }
        for (id, (used, runtime)) in self.probes.syscalls(keep)? {
            let o = all.entry(id).or_default();
            o.syscalls = used;
            o.runtime_syscalls = runtime;
        }
        // The evidence, the stacks and the counters are shared by every cgroup's Observed (their
        // keys name the cgroup): one copy per snapshot, not one per cgroup.
        if self.frames.len() > 50_000 {
            self.frames = Arc::default();
        }
        let stacks: BTreeSet<u64> = all
            .values()
            .flat_map(|o| o.cap_checks.iter().map(|(key, _)| key.stack))
            .collect();
        for stack in stacks {
            self.frames(stack);
        }
        let counters = Arc::new(counters);
        for o in all.values_mut() {
            o.counters = Arc::clone(&counters);
            o.undecodable = self.undecodable;
            o.cap_events = Arc::clone(&self.cap_events);
            o.deny_events = Arc::clone(&self.deny_events);
            o.stacks = Arc::clone(&self.frames);
        }
        Ok(all)
    }

    /// The symbolized frames of a stack (a stack hash always names the same frames, so each
    /// is symbolized once).
    fn frames(&mut self, stack: u64) -> Arc<Vec<String>> {
        if let Some(f) = self.frames.get(&stack) {
            return f.clone();
        }
        let f = Arc::new(
            self.probes
                .stack(stack)
                .into_iter()
                .map(|ip| self.symbolizer.symbol(ip))
                .collect::<Vec<String>>(),
        );
        if !f.is_empty() {
            Arc::make_mut(&mut self.frames).insert(stack, f.clone());
        }
        f
    }

    /// Drops what is kept for cgroups that are gone, in the kernel and here.
    pub fn forget(&mut self, gone: &BTreeSet<u64>) -> Result<(), KernelError> {
        self.probes.forget_cgroups(gone)?;
        self.drop_events(gone);
        Ok(())
    }

    fn drop_events(&mut self, ids: &BTreeSet<u64>) {
        if self.cap_events.keys().any(|k| ids.contains(&k.cgroup_id)) {
            Arc::make_mut(&mut self.cap_events).retain(|k, _| !ids.contains(&k.cgroup_id));
        }
        if self.deny_events.keys().any(|k| ids.contains(&k.cgroup_id)) {
            Arc::make_mut(&mut self.deny_events).retain(|k, _| !ids.contains(&k.cgroup_id));
        }
    }

    /// Drops the counts of cgroups nobody reports on (see [`Probes::drop_counts`]).
    pub fn trim(&mut self, ids: &BTreeSet<u64>) -> Result<(), KernelError> {
        self.probes.drop_counts(ids)?;
        self.drop_events(ids);
        Ok(())
    }
}
