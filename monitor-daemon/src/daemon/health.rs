//! The daemon's own health, as the probe thread, the worker and the store thread last saw it:
//! probes attached, kernel losses, work dropped between stages, map fill, store writes. Read
//! by `/healthz` and `/metrics`; the one list of pipeline stages and of kernel loss reasons.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// A pipeline stage that can drop work (label `stage` of `capmon_pipeline_dropped_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Snapshots superseded by the next one before the model took them ([`super::handoff`]).
    ProbeToModel,
    /// cgroups whose records were dropped because neither the kernel side's record of their
    /// creation nor a scan gave their path (a creation record lost to a full ring buffer or to
    /// [`Stage::Lifecycle`], for a cgroup gone before the next scan).
    Unattributed,
    /// cgroups' creation, removal and first-exec records dropped between the probe thread and
    /// the model (the model's queue stayed full for longer than the records could wait).
    Lifecycle,
    /// cgroups created before the probes attached (so with no record of their creation) and
    /// gone before the first scan: what they did in between is dropped, as nothing can name
    /// them. Not a loss of the pipeline's (cgroup ids only grow, so these are told apart from
    /// [`Stage::Unattributed`] by being older than the first creation recorded).
    BeforeStart,
}

impl Stage {
    /// Every stage.
    pub const ALL: [Stage; 4] = [
        Stage::ProbeToModel,
        Stage::Unattributed,
        Stage::Lifecycle,
        Stage::BeforeStart,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::ProbeToModel => "probe_to_model",
            Stage::Unattributed => "unattributed",
            Stage::Lifecycle => "lifecycle",
            Stage::BeforeStart => "before_start",
        }
    }
}

/// Why the API closed a connection or refused a request (label `reason` of
/// `capmon_api_refused_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiRefusal {
    /// A connection beyond `api_max_connections`, closed as soon as accepted.
    ConnectionLimit,
    /// A connection whose request headers did not arrive within `api_header_timeout_secs`
    /// (also an idle keep-alive connection).
    HeaderTimeout,
    /// A connection on which no byte moved for `api_idle_timeout_secs`.
    IdleTimeout,
    /// A request head larger than `api_max_header_bytes` (431).
    HeaderTooLarge,
    /// A request body larger than `api_max_body_bytes` (413).
    BodyTooLarge,
    /// A request without the bearer token, or with another (401).
    Unauthorized,
}

impl ApiRefusal {
    /// Every reason.
    pub const ALL: [ApiRefusal; 6] = [
        ApiRefusal::ConnectionLimit,
        ApiRefusal::HeaderTimeout,
        ApiRefusal::IdleTimeout,
        ApiRefusal::HeaderTooLarge,
        ApiRefusal::BodyTooLarge,
        ApiRefusal::Unauthorized,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ApiRefusal::ConnectionLimit => "connection_limit",
            ApiRefusal::HeaderTimeout => "header_timeout",
            ApiRefusal::IdleTimeout => "idle_timeout",
            ApiRefusal::HeaderTooLarge => "header_too_large",
            ApiRefusal::BodyTooLarge => "body_too_large",
            ApiRefusal::Unauthorized => "unauthorized",
        }
    }
}

/// The API server's connections, shared between the server and `/metrics`.
#[derive(Debug, Default)]
pub struct ApiStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Refusals, in the order of [`ApiRefusal::ALL`].
    refused: [AtomicU64; ApiRefusal::ALL.len()],
}

impl ApiStats {
    /// Counts one refusal.
    pub fn refused(&self, why: ApiRefusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals so far, by reason.
    pub fn refusals(&self) -> [(ApiRefusal, u64); ApiRefusal::ALL.len()] {
        ApiRefusal::ALL.map(|r| (r, self.refused[r as usize].load(Ordering::Relaxed)))
    }
}

/// Ring-buffer records the reader could not decode (a loss reason of its own).
pub use monitor_common::counter::UNDECODABLE;

/// Loss reasons, exported from the start (0 until something is lost): the kernel side's
/// counters and [`UNDECODABLE`], one list shared with the kernel side and `capmon record`.
pub use monitor_common::counter::LOSS_REASONS;

/// Daemon health, shared with `/healthz` and `/metrics`.
pub struct Health {
    /// Probe mode name.
    pub mode: &'static str,
    /// Why that mode (and what failed before it).
    pub mode_reason: String,
    /// Which hook counts low mmaps' `CAP_SYS_RAWIO` checks here (`kernel::inlined`).
    pub low_mmap: String,
    /// Attached programs.
    pub attached: AtomicU64,
    /// Optional programs of the mode that could not attach, with why.
    pub skipped: Vec<(&'static str, String)>,
    /// Kernel loss counters by reason, as last read.
    kernel_lost: Mutex<BTreeMap<String, u64>>,
    /// Snapshots superseded before the model took them.
    pub dropped: AtomicU64,
    /// cgroups dropped unattributed (see [`Stage::Unattributed`]).
    pub unattributed: AtomicU64,
    /// Lifecycle records dropped (see [`Stage::Lifecycle`]).
    pub lifecycle_dropped: AtomicU64,
    /// cgroups dropped that were gone before capmon could name them (see
    /// [`Stage::BeforeStart`]).
    pub before_start: AtomicU64,
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
    /// The API server's connections.
    pub api: Arc<ApiStats>,
}

/// Name of the store-write histogram.
pub const STORE_WRITE_HISTOGRAM: &str = "capmon_store_write_duration_seconds";

impl Health {
    /// Health of a daemon whose probes run in `mode` with `attached` programs.
    pub fn new(mode: &'static str, attached: u64) -> Result<Health, prometheus::Error> {
        let store_write = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                STORE_WRITE_HISTOGRAM,
                "Time to write one batch to the store.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )?;
        Ok(Health {
            mode,
            mode_reason: String::new(),
            low_mmap: String::new(),
            attached: AtomicU64::new(attached),
            skipped: Vec::new(),
            kernel_lost: Mutex::new(BTreeMap::new()),
            dropped: AtomicU64::new(0),
            unattributed: AtomicU64::new(0),
            lifecycle_dropped: AtomicU64::new(0),
            before_start: AtomicU64::new(0),
            map_fill: Mutex::new(Vec::new()),
            processed_checks: AtomicU64::new(0),
            processed_denials: AtomicU64::new(0),
            store_write,
            store_errors: AtomicU64::new(0),
            api: Arc::default(),
        })
    }

    /// Work dropped at `stage`.
    pub fn dropped_at(&self, stage: Stage) -> u64 {
        match stage {
            Stage::ProbeToModel => self.dropped.load(Ordering::Relaxed),
            Stage::Unattributed => self.unattributed.load(Ordering::Relaxed),
            Stage::Lifecycle => self.lifecycle_dropped.load(Ordering::Relaxed),
            Stage::BeforeStart => self.before_start.load(Ordering::Relaxed),
        }
    }

    /// Takes the kernel side's loss counters and the reader's undecodable records.
    pub fn set_kernel_lost(&self, counters: &BTreeMap<&'static str, u64>, undecodable: u64) {
        let mut lost: BTreeMap<String, u64> = counters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        lost.insert(UNDECODABLE.into(), undecodable);
        if let Ok(mut l) = self.kernel_lost.lock() {
            *l = lost;
        }
    }

    /// What was lost for each of [`LOSS_REASONS`], as last read.
    pub fn kernel_lost(&self) -> [(&'static str, u64); LOSS_REASONS.len()] {
        let lost = self
            .kernel_lost
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        LOSS_REASONS.map(|reason| (reason, lost.get(reason).copied().unwrap_or(0)))
    }

    /// Map fill as last read.
    pub fn map_fill(&self) -> Vec<(&'static str, u64, u64)> {
        self.map_fill.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_loss_reason_is_reported_and_unknown_ones_are_not() {
        let h = Health::new("tp_btf", 6).expect("health");
        assert!(h.kernel_lost().iter().all(|(_, n)| *n == 0));
        let counters = BTreeMap::from([
            ("ringbuf_full", 3),
            ("not_a_reason", 9),
            ("program_skipped", 4),
        ]);
        h.set_kernel_lost(&counters, 2);
        let lost = h.kernel_lost();
        assert_eq!(lost[0], ("ringbuf_full", 3));
        assert_eq!(lost[lost.len() - 2], ("undecodable", 2));
        assert_eq!(lost.last(), Some(&("program_skipped", 4)));
        assert_eq!(lost.iter().map(|(_, n)| n).sum::<u64>(), 9);
    }
}
