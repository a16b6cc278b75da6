//! `/metrics`: the Prometheus exposition, built from the model and the daemon's health on
//! each scrape (series of pruned containers are gone with them). Three groups of metric
//! families: per-container series ([`ContainerFamilies`]), per-workload series for a fleet
//! ([`WorkloadFamilies`]: labels bounded by workloads x syscalls, never container ids) and
//! the daemon's own health ([`DaemonFamilies`]).

use std::sync::atomic::Ordering;

use capmon_core::posture::Check;
use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
    core::Collector,
};

use super::{
    container::ContainerState,
    health::{Health, Stage},
    model::Shared,
};

/// Identity label names of per-container metrics.
const ID_LABELS: [&str; 6] = [
    "container_id",
    "name",
    "runtime",
    "namespace",
    "pod",
    "container",
];

/// The identity labels followed by `more`.
fn with<'a>(id: &[&'a str; 6], more: &[&'a str]) -> Vec<&'a str> {
    let mut v = id.to_vec();
    v.extend_from_slice(more);
    v
}

fn counter(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    IntGaugeVec::new(Opts::new(name, help), labels)
}

fn register(reg: &Registry, families: Vec<Box<dyn Collector>>) -> prometheus::Result<()> {
    families.into_iter().try_for_each(|c| reg.register(c))
}

/// Per-container series.
struct ContainerFamilies {
    checks: IntCounterVec,
    unused: IntGaugeVec,
    granted: IntGaugeVec,
    denied: IntCounterVec,
    observed: IntGaugeVec,
    posture: IntGaugeVec,
    running: IntGaugeVec,
    would_deny: IntGaugeVec,
    applied_unused: IntGaugeVec,
}

impl ContainerFamilies {
    fn new() -> prometheus::Result<Self> {
        Ok(ContainerFamilies {
            checks: counter(
                "capmon_capability_checks_total",
                "Capability checks by capability and class (used, denied, probe, ignored).",
                &with(&ID_LABELS, &["capability", "class"]),
            )?,
            unused: gauge(
                "capmon_capability_unused",
                "1 for each capability the container was granted and never used.",
                &with(&ID_LABELS, &["capability"]),
            )?,
            granted: gauge(
                "capmon_capabilities_granted",
                "Number of capabilities granted (bounding set).",
                &ID_LABELS,
            )?,
            denied: counter(
                "capmon_syscalls_denied_total",
                "Syscalls refused by seccomp, by syscall and errno.",
                &with(&ID_LABELS, &["syscall", "errno"]),
            )?,
            observed: gauge(
                "capmon_syscalls_observed",
                "Distinct syscalls the container made.",
                &ID_LABELS,
            )?,
            posture: gauge(
                "capmon_container_posture",
                "1 when the Docker-checklist item fails for the container, 0 when it passes.",
                &with(&ID_LABELS, &["check"]),
            )?,
            running: gauge(
                "capmon_container_running",
                "1 while the container runs, 0 once it exited (until retention).",
                &ID_LABELS,
            )?,
            would_deny: gauge(
                "capmon_applied_profile_would_deny",
                "1 for each syscall the container made (or was refused) that the seccomp profile \
                 its runtime applied refuses.",
                &with(&ID_LABELS, &["syscall"]),
            )?,
            applied_unused: gauge(
                "capmon_applied_profile_unused_syscalls",
                "Syscalls the seccomp profile its runtime applied allows and the container never \
                 made.",
                &ID_LABELS,
            )?,
        })
    }

    fn register(&self, reg: &Registry) -> prometheus::Result<()> {
        register(
            reg,
            vec![
                Box::new(self.checks.clone()),
                Box::new(self.unused.clone()),
                Box::new(self.granted.clone()),
                Box::new(self.denied.clone()),
                Box::new(self.observed.clone()),
                Box::new(self.posture.clone()),
                Box::new(self.running.clone()),
                Box::new(self.would_deny.clone()),
                Box::new(self.applied_unused.clone()),
            ],
        )
    }

    /// The series of one container.
    fn add(&self, c: &ContainerState) {
        let info = &c.info;
        let id = [
            info.short_id.as_str(),
            info.name.as_deref().unwrap_or_default(),
            info.runtime.as_str(),
            info.namespace.as_deref().unwrap_or_default(),
            info.pod.as_deref().unwrap_or_default(),
            info.k8s_container.as_deref().unwrap_or_default(),
        ];
        for (key, check) in &c.checks {
            let cap = key.capability.name();
            self.checks
                .with_label_values(&with(&id, &[&cap, key.class.as_str()]))
                .inc_by(check.count);
        }
        for cap in &c.unused() {
            self.unused.with_label_values(&with(&id, &[cap])).set(1);
        }
        let granted = info.granted.len() as i64;
        self.granted.with_label_values(&id).set(granted);
        for (key, d) in &c.denials {
            self.denied
                .with_label_values(&with(&id, &[&key.syscall, &key.errno]))
                .inc_by(d.count);
        }
        let observed = c.syscalls.len() as i64;
        self.observed.with_label_values(&id).set(observed);
        for check in Check::ALL {
            let fails = info.findings().iter().any(|f| f.check == check);
            self.posture
                .with_label_values(&with(&id, &[check.as_str()]))
                .set(i64::from(fails));
        }
        let running = i64::from(c.running());
        self.running.with_label_values(&id).set(running);
        if let Some(d) = &c.applied_diff {
            for r in &d.would_deny {
                self.would_deny
                    .with_label_values(&with(&id, &[&r.syscall]))
                    .set(1);
            }
            let unused = d.allowed_unused.len() as i64;
            self.applied_unused.with_label_values(&id).set(unused);
        }
    }
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

/// Per-workload series (containers merged by `capmon_core::workload`'s rules).
struct WorkloadFamilies {
    syscall: Option<IntGaugeVec>,
    capability: IntGaugeVec,
    containers: IntGaugeVec,
    incomplete: IntGaugeVec,
}

impl WorkloadFamilies {
    fn new(syscall_series: bool) -> prometheus::Result<Self> {
        Ok(WorkloadFamilies {
            syscall: syscall_series
                .then(|| {
                    gauge(
                        "capmon_workload_syscall_observed",
                        "1 for each syscall any container of the workload made.",
                        &["workload", "kind", "syscall"],
                    )
                })
                .transpose()?,
            capability: gauge(
                "capmon_workload_capability_used",
                "Number of the workload's containers that used the capability.",
                &["workload", "kind", "capability"],
            )?,
            containers: gauge(
                "capmon_workload_containers",
                "The workload's containers on this node, by state (running, exited).",
                &["workload", "kind", "state"],
            )?,
            incomplete: gauge(
                "capmon_workload_incomplete_containers",
                "The workload's containers capmon did not see start (no profile while any).",
                &["workload", "kind"],
            )?,
        })
    }

    fn register(&self, reg: &Registry) -> prometheus::Result<()> {
        let mut all: Vec<Box<dyn Collector>> = vec![
            Box::new(self.capability.clone()),
            Box::new(self.containers.clone()),
            Box::new(self.incomplete.clone()),
        ];
        if let Some(s) = &self.syscall {
            all.push(Box::new(s.clone()));
        }
        register(reg, all)
    }

    fn add(&self, g: &super::workloads::Group<'_>) {
        let (name, kind) = (g.workload.name.as_str(), g.workload.kind.as_str());
        let s = g.summary();
        let running = s.containers.running as i64;
        self.containers
            .with_label_values(&[name, kind, "running"])
            .set(running);
        self.containers
            .with_label_values(&[name, kind, "exited"])
            .set(s.containers.total as i64 - running);
        self.incomplete
            .with_label_values(&[name, kind])
            .set(g.incomplete().len() as i64);
        let (caps, syscalls) = g.coverage();
        for c in caps {
            self.capability
                .with_label_values(&[name, kind, &c.name])
                .set(c.containers as i64);
        }
        if let Some(family) = &self.syscall {
            for c in syscalls {
                family.with_label_values(&[name, kind, &c.name]).set(1);
            }
        }
    }
}

/// The exposition in Prometheus' text format.
pub fn render(s: &Shared) -> prometheus::Result<String> {
    let reg = Registry::new();
    let containers = ContainerFamilies::new()?;
    containers.register(&reg)?;
    let syscall_series = s
        .config
        .read()
        .map(|c| c.workload_syscall_series)
        .unwrap_or(true);
    let workloads = WorkloadFamilies::new(syscall_series)?;
    workloads.register(&reg)?;
    let daemon = DaemonFamilies::new()?;
    daemon.register(&reg)?;
    reg.register(Box::new(s.health.store_write.clone()))?;
    let counts = {
        let m = s
            .model
            .lock()
            .map_err(|_| prometheus::Error::Msg("model lock poisoned".into()))?;
        for c in m.containers.values() {
            containers.add(c);
        }
        for g in super::workloads::groups(&m) {
            workloads.add(&g);
        }
        m.counts()
    };
    daemon.add(&s.health, counts);
    let mut out = Vec::new();
    TextEncoder::new().encode(&reg.gather(), &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, sync::Mutex, sync::RwLock};

    use capmon_core::{config::Config, posture};

    use super::*;
    use crate::daemon::{
        container::tests::{container, facts},
        model::Model,
    };

    /// A daemon with one container: chown used, a probe, a chmod denial; privileged.
    fn shared() -> Shared {
        let mut m = Model::default();
        let mut c = container("0123456789abcdef", 100);
        c.name = Some("web".into());
        c.k8s_container = Some("app".into());
        let spec = capmon_core::oci::Applied::parse(
            r#"{"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["read","write"],"action":"SCMP_ACT_ALLOW"}]}}}"#,
        )
        .expect("spec");
        c.applied = crate::daemon::identity::AppliedSpec::of(&spec).into();
        let status = include_str!("../../core/tests/fixtures/status-host-root.txt");
        c.set_posture(posture::from_status(1, status, None, 0x1ff_feff_ffff).expect("posture"));
        c.granted = vec!["CAP_CHOWN".into(), "CAP_NET_RAW".into()];
        m.adopt(c.cgroup_id, ContainerState::found(c));
        let (caps, syscalls) = facts(1);
        m.absorb("0123456789abcdef", caps, syscalls, 200);
        let health = Health::new("tp_btf", 6).expect("health");
        health.dropped.store(2, Ordering::Relaxed);
        Shared {
            model: Mutex::new(m),
            health,
            config: RwLock::new(Config::default()),
            db_path: PathBuf::from("/nonexistent/capmon.db"),
        }
    }

    fn value(text: &str, series: &str) -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
            .to_owned()
    }

    #[test]
    fn workload_series_and_the_setting_that_drops_the_syscall_ones() {
        let s = shared();
        let text = render(&s).expect("render");
        let (k, w) = (r#"kind="container""#, r#"workload="container:-:web""#);
        assert_eq!(
            value(
                &text,
                &format!(r#"capmon_workload_containers{{{k},state="running",{w}}}"#)
            ),
            "1"
        );
        assert_eq!(
            value(
                &text,
                &format!(r#"capmon_workload_capability_used{{capability="CAP_CHOWN",{k},{w}}}"#)
            ),
            "1"
        );
        assert_eq!(
            value(
                &text,
                &format!(r#"capmon_workload_syscall_observed{{{k},syscall="fchownat",{w}}}"#)
            ),
            "1"
        );
        if let Ok(mut c) = s.config.write() {
            c.workload_syscall_series = false;
        }
        let text = render(&s).expect("render");
        assert!(!text.contains("capmon_workload_syscall_observed"), "{text}");
        assert!(text.contains("capmon_workload_capability_used"));
    }

    #[test]
    fn one_container_labels_and_values() {
        let text = render(&shared()).expect("render");
        let id = r#"container="app",container_id="0123456789ab",name="web",namespace="",pod="",runtime="docker""#;
        let checks = format!(
            r#"capmon_capability_checks_total{{capability="CAP_CHOWN",class="used",{id}}}"#
        );
        assert_eq!(value(&text, &checks), "3", "two entries of one site add up");
        let probe = format!(
            r#"capmon_capability_checks_total{{capability="CAP_SYS_ADMIN",class="probe",{id}}}"#
        );
        assert_eq!(value(&text, &probe), "1");
        let unused = format!(r#"capmon_capability_unused{{capability="CAP_NET_RAW",{id}}}"#);
        assert_eq!(value(&text, &unused), "1");
        assert!(!text.contains(r#"capmon_capability_unused{capability="CAP_CHOWN""#));
        assert_eq!(
            value(&text, &format!("capmon_capabilities_granted{{{id}}}")),
            "2"
        );
        let denied = r#"capmon_syscalls_denied_total{container="app",container_id="0123456789ab",errno="EPERM",name="web",namespace="",pod="",runtime="docker",syscall="chmod"}"#;
        assert_eq!(value(&text, denied), "1");
        // The applied profile allows read and write: the chown and the refused chmod are
        // what it would deny; write is allowed and unused.
        for syscall in ["chmod", "fchownat"] {
            let series =
                format!(r#"capmon_applied_profile_would_deny{{{id},syscall="{syscall}"}}"#);
            assert_eq!(value(&text, &series), "1");
        }
        assert!(!text.contains(r#"capmon_applied_profile_would_deny{container="app",container_id="0123456789ab",name="web",namespace="",pod="",runtime="docker",syscall="read"}"#));
        assert_eq!(
            value(
                &text,
                &format!("capmon_applied_profile_unused_syscalls{{{id}}}")
            ),
            "1"
        );
        assert_eq!(
            value(&text, &format!("capmon_syscalls_observed{{{id}}}")),
            "2"
        );
        assert_eq!(
            value(&text, &format!("capmon_container_running{{{id}}}")),
            "1"
        );
        for check in Check::ALL {
            let series = format!(
                r#"capmon_container_posture{{check="{}",{id}}}"#,
                check.as_str()
            );
            assert_eq!(
                value(&text, &series),
                "1",
                "a host root shell fails {check:?}"
            );
        }
    }

    #[test]
    fn daemon_health_series() {
        let text = render(&shared()).expect("render");
        assert_eq!(
            value(&text, r#"capmon_probes_attached{mode="tp_btf"}"#),
            "6"
        );
        assert_eq!(
            value(&text, r#"capmon_containers_tracked{state="running"}"#),
            "1"
        );
        assert_eq!(
            value(&text, r#"capmon_containers_tracked{state="exited"}"#),
            "0"
        );
        assert_eq!(
            value(
                &text,
                r#"capmon_pipeline_dropped_total{stage="probe_to_model"}"#
            ),
            "2"
        );
        assert_eq!(
            value(
                &text,
                r#"capmon_pipeline_dropped_total{stage="unattributed"}"#
            ),
            "0"
        );
        for reason in crate::daemon::health::LOSS_REASONS {
            let series = format!(r#"capmon_kernel_events_lost_total{{reason="{reason}"}}"#);
            assert_eq!(value(&text, &series), "0");
        }
        assert_eq!(value(&text, "capmon_store_write_errors_total"), "0");
        assert_eq!(value(&text, "capmon_api_connections"), "0");
        for reason in crate::daemon::health::ApiRefusal::ALL {
            let series = format!(
                r#"capmon_api_refused_total{{reason="{}"}}"#,
                reason.as_str()
            );
            assert_eq!(value(&text, &series), "0");
        }
        assert_eq!(
            value(&text, "capmon_store_write_duration_seconds_count"),
            "0"
        );
        let version = format!(
            r#"capmon_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(value(&text, &version), "1");
    }
}
