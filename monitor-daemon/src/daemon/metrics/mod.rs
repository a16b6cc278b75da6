//! `/metrics`: the Prometheus exposition, built from the model and the daemon's health on
//! each scrape (an exited container's series leave it `metrics_exited_secs` after its exit,
//! while the API keeps the container until retention). Three groups of metric
//! families: per-container series and per-workload series for a fleet (labels bounded by
//! workloads x syscalls, never container ids), both written straight into the text
//! ([`series`], [`text`]: tens of thousands of series on a busy node), and the daemon's own
//! health ([`DaemonFamilies`], through the `prometheus` crate, with the store's histogram).

mod series;
mod text;

use std::sync::atomic::Ordering;

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
    core::Collector,
};

use self::text::Exposition;
use super::{
    container::ContainerState,
    health::{Health, Stage},
    model::Shared,
};

fn counter(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    IntGaugeVec::new(Opts::new(name, help), labels)
}

fn register(reg: &Registry, families: Vec<Box<dyn Collector>>) -> prometheus::Result<()> {
    families.into_iter().try_for_each(|c| reg.register(c))
}

/// The daemon's own series.
struct DaemonFamilies {
    build: IntGaugeVec,
    attached: IntGaugeVec,
    lost: IntCounterVec,
    dropped: IntCounterVec,
    entries: IntGaugeVec,
    capacity: IntGaugeVec,
    tracked: IntGaugeVec,
    processed: IntCounterVec,
    store_errors: IntCounter,
    api_connections: IntGauge,
    api_refused: IntCounterVec,
}

impl DaemonFamilies {
    fn new() -> prometheus::Result<Self> {
        Ok(DaemonFamilies {
            build: gauge("capmon_build_info", "capmon's version.", &["version"])?,
            attached: gauge(
                "capmon_probes_attached",
                "eBPF programs attached, by probe mode.",
                &["mode"],
            )?,
            lost: counter(
                "capmon_kernel_events_lost_total",
                "What the kernel side could not record, by reason.",
                &["reason"],
            )?,
            dropped: counter(
                "capmon_pipeline_dropped_total",
                "Work dropped between daemon stages (a dropped snapshot is superseded by the next).",
                &["stage"],
            )?,
            entries: gauge("capmon_map_entries", "Entries in an eBPF map.", &["map"])?,
            capacity: gauge("capmon_map_capacity", "Capacity of an eBPF map.", &["map"])?,
            tracked: gauge(
                "capmon_containers_tracked",
                "Containers known, by state.",
                &["state"],
            )?,
            processed: counter(
                "capmon_events_processed_total",
                "First sightings processed, by kind.",
                &["kind"],
            )?,
            store_errors: IntCounter::with_opts(Opts::new(
                "capmon_store_write_errors_total",
                "Failed store writes (batches are kept and retried).",
            ))?,
            api_connections: IntGauge::with_opts(Opts::new(
                "capmon_api_connections",
                "Connections to the HTTP API open now.",
            ))?,
            api_refused: counter(
                "capmon_api_refused_total",
                "Connections the API closed and requests it refused, by reason (its limits, the token).",
                &["reason"],
            )?,
        })
    }

    fn register(&self, reg: &Registry) -> prometheus::Result<()> {
        register(
            reg,
            vec![
                Box::new(self.build.clone()),
                Box::new(self.attached.clone()),
                Box::new(self.lost.clone()),
                Box::new(self.dropped.clone()),
                Box::new(self.entries.clone()),
                Box::new(self.capacity.clone()),
                Box::new(self.tracked.clone()),
                Box::new(self.processed.clone()),
                Box::new(self.store_errors.clone()),
                Box::new(self.api_connections.clone()),
                Box::new(self.api_refused.clone()),
            ],
        )
    }

    /// The daemon's series: `containers` (running, exited) from the model, the rest from its
    /// health.
    fn add(&self, h: &Health, (running, exited): (usize, usize)) {
        self.build
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let attached = h.attached.load(Ordering::Relaxed) as i64;
        self.attached.with_label_values(&[h.mode]).set(attached);
        for (reason, n) in h.kernel_lost() {
            self.lost.with_label_values(&[reason]).inc_by(n);
        }
        for stage in Stage::ALL {
            let n = h.dropped_at(stage);
            self.dropped.with_label_values(&[stage.as_str()]).inc_by(n);
        }
        for (map, n, cap) in h.map_fill() {
            self.entries.with_label_values(&[map]).set(n as i64);
            self.capacity.with_label_values(&[map]).set(cap as i64);
        }
        self.tracked
            .with_label_values(&["running"])
            .set(running as i64);
        self.tracked
            .with_label_values(&["exited"])
            .set(exited as i64);
        let checks = h.processed_checks.load(Ordering::Relaxed);
        self.processed
            .with_label_values(&["cap_check"])
            .inc_by(checks);
        let denials = h.processed_denials.load(Ordering::Relaxed);
        self.processed
            .with_label_values(&["syscall_denied"])
            .inc_by(denials);
        self.store_errors
            .inc_by(h.store_errors.load(Ordering::Relaxed));
        self.api_connections
            .set(h.api.open.load(Ordering::Relaxed) as i64);
        for (reason, n) in h.api.refusals() {
            self.api_refused
                .with_label_values(&[reason.as_str()])
                .inc_by(n);
        }
    }
}

/// Which containers `/metrics` shows: the running ones and those exited within
/// `exited_secs` (a workload is shown, with all its containers counted, while one of them
/// is).
struct Window {
    now: i64,
    exited_secs: i64,
}

impl Window {
    fn has(&self, c: &ContainerState) -> bool {
        c.info
            .exited_at
            .is_none_or(|at| self.now.saturating_sub(at) <= self.exited_secs)
    }
}

/// The exposition in Prometheus' text format.
pub fn render(s: &Shared) -> prometheus::Result<String> {
    let (syscall_series, exited_secs) = match s.config.read() {
        Ok(c) => (c.workload_syscall_series, c.metrics_exited_secs),
        Err(_) => {
            let c = capmon_core::config::Config::default();
            (c.workload_syscall_series, c.metrics_exited_secs)
        }
    };
    let shown = Window {
        now: super::worker::now(),
        exited_secs: i64::try_from(exited_secs).unwrap_or(i64::MAX),
    };
    // The last text's length, and some: the next one is about as long.
    static LAST: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut text = Exposition::with_capacity(LAST.load(Ordering::Relaxed) * 9 / 8);
    let counts = {
        let m = s
            .model
            .lock()
            .map_err(|_| prometheus::Error::Msg("model lock poisoned".into()))?;
        series::containers(&mut text, m.containers.values().filter(|c| shown.has(c)));
        let mut groups = super::workloads::groups(&m);
        groups.retain(|g| g.members.iter().any(|c| shown.has(c)));
        series::workloads(&mut text, &groups, syscall_series);
        m.counts()
    };
    let reg = Registry::new();
    let daemon = DaemonFamilies::new()?;
    daemon.register(&reg)?;
    reg.register(Box::new(s.health.store_write.clone()))?;
    daemon.add(&s.health, counts);
    let mut out = Vec::new();
    TextEncoder::new().encode(&reg.gather(), &mut out)?;
    text.push_families(&String::from_utf8_lossy(&out));
    let text = text.finish();
    LAST.store(text.len(), Ordering::Relaxed);
    Ok(text)
}

#[cfg(test)]
mod tests;
