//! The probe thread: the one owner of the kernel reader. It drains the ring buffer every
//! 50 ms, reads every map each poll interval and hands the snapshot over ([`Handoff`]: one
//! that the model has not taken yet is superseded by the next, its counts being cumulative,
//! and counted); between polls it forgets or trims cgroups when the worker asks. Every call
//! into the kernel reader is here.
//!
//! cgroups' lives (created, removed, first exec) are not cumulative: they ride with the
//! snapshot, and move into the next one when it supersedes it (bounded).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, atomic::Ordering, mpsc as std_mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use capmon_core::report::Observed;
use tokio::sync::oneshot;

use super::{handoff::Handoff, model::Shared};
use crate::kernel::{events::Lifecycle, map_reads, preemption::Preemption, reader::KernelReader};

/// What the kernel side counted, cumulative since the probes were attached, by cgroup id, and
/// the cgroups' lives since the last snapshot taken.
pub struct Snapshot {
    /// By cgroup id.
    pub observed: BTreeMap<u64, Observed>,
    /// cgroups created, removed, first execs, in order; all of them happened before the maps
    /// were read for `observed`.
    pub lifecycle: Vec<Lifecycle>,
}

/// Lifecycle records that wait for the model at most; beyond, the newest are dropped and
/// counted ([`super::health::Stage::Lifecycle`]).
const PENDING_CAP: usize = 262_144;

/// What the probe thread is asked to do besides polling.
pub enum ProbeRequest {
    /// Forget these cgroups in the kernel maps.
    Forget(BTreeSet<u64>),
    /// Drop the counts of these live cgroups that are not containers.
    Trim(BTreeSet<u64>),
    /// Detach and stop.
    Stop(oneshot::Sender<()>),
}

/// Starts the thread; it stops on [`ProbeRequest::Stop`] or when the requests' sender is gone.
pub fn spawn(
    mut recorder: KernelReader,
    shared: Arc<Shared>,
    handoff: Arc<Handoff>,
    requests: std_mpsc::Receiver<ProbeRequest>,
) -> std::io::Result<JoinHandle<()>> {
    recorder.keep_lifecycle();
    let mode = recorder.probes().mode();
    let thread = ProbeThread {
        recorder,
        shared,
        handoff,
        polls: 0,
        pending: Vec::new(),
        reader_dropped: 0,
    };
    std::thread::Builder::new()
        .name("capmon-probes".into())
        .spawn(move || {
            // Every map syscall of this thread that holds off kprobes is kept from being
            // preempted where the kprobe mode needs that (crate::kernel::map_reads).
            map_reads::raise_on_this_thread(mode, Preemption::of_running_kernel());
            thread.run(requests)
        })
}

struct ProbeThread {
    recorder: KernelReader,
    shared: Arc<Shared>,
    handoff: Arc<Handoff>,
    polls: u64,
    /// Lifecycle records not yet taken by the model.
    pending: Vec<Lifecycle>,
    /// The reader's own dropped count, as last added to the health.
    reader_dropped: u64,
}

impl ProbeThread {
    fn run(mut self, requests: std_mpsc::Receiver<ProbeRequest>) {
        let mut last_poll = Instant::now();
        loop {
            let interval = self
                .shared
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
                    if let Err(e) = self.recorder.forget(&gone) {
                        tracing::warn!("cannot clear exited cgroups from the kernel maps: {e}");
                    }
                    continue;
                }
                Ok(ProbeRequest::Trim(ids)) => {
                    if let Err(e) = self.recorder.trim(&ids) {
                        tracing::warn!("cannot trim the kernel maps: {e}");
                    }
                    continue;
                }
                Ok(ProbeRequest::Stop(done)) => {
                    // Detaches the probes, then says so.
                    drop(self);
                    let _ = done.send(());
                    return;
                }
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            }
            self.drain();
            if last_poll.elapsed() < interval {
                continue;
            }
            last_poll = Instant::now();
            self.poll();
        }
    }

    /// Takes the ring buffer's first sightings.
    fn drain(&mut self) {
        self.recorder.drain();
        let (checks, denials) = self.recorder.drained();
        let health = &self.shared.health;
        health.processed_checks.store(checks, Ordering::Relaxed);
        health.processed_denials.store(denials, Ordering::Relaxed);
        self.take_lifecycle();
    }

    /// Moves the reader's lifecycle records to the pending ones.
    fn take_lifecycle(&mut self) {
        let (records, dropped) = self.recorder.take_lifecycle();
        let room = PENDING_CAP.saturating_sub(self.pending.len());
        let lost = records.len().saturating_sub(room) as u64 + (dropped - self.reader_dropped);
        self.reader_dropped = dropped;
        self.pending.extend(records.into_iter().take(room));
        if lost > 0 {
            self.shared
                .health
                .lifecycle_dropped
                .fetch_add(lost, Ordering::Relaxed);
        }
    }

    /// Reads every map: the snapshot goes to the model, the loss counters and map fill to
    /// the daemon's health.
    fn poll(&mut self) {
        let observed = match self.recorder.observe_all() {
            Ok(observed) => observed,
            Err(e) => {
                tracing::warn!("reading the kernel maps failed: {e}");
                return;
            }
        };
        // Reading the maps drained the ring buffer first: every record taken now happened
        // before the counts were read.
        self.take_lifecycle();
        let health = &self.shared.health;
        if let Some(o) = observed.values().next() {
            health.set_kernel_lost(&o.counters, o.undecodable);
        }
        // Counting every map's keys costs a syscall per key: every tenth poll.
        self.polls += 1;
        if self.polls % 10 == 1
            && let Ok(fill) = self.recorder.probes().map_fill()
            && let Ok(mut f) = health.map_fill.lock()
        {
            *f = fill;
        }
        let attached = self.recorder.probes().attached() as u64;
        health.attached.store(attached, Ordering::Relaxed);
        let snapshot = Snapshot {
            observed,
            lifecycle: std::mem::take(&mut self.pending),
        };
        let put = self.handoff.put(snapshot, PENDING_CAP);
        if put.superseded {
            health.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if put.lifecycle_dropped > 0 {
            health
                .lifecycle_dropped
                .fetch_add(put.lifecycle_dropped, Ordering::Relaxed);
        }
    }
}
