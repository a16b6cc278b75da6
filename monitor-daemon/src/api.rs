//! The HTTP API (JSON) and `/metrics`.
//!
//! | path | answer |
//! | --- | --- |
//! | `GET /healthz` | `{"status":"ok", ...}` |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /v1/containers` | every container's summary |
//! | `GET /v1/containers/{id}` | one container (full id, short id or name): report, analysis, posture |
//! | `GET /v1/containers/{id}/seccomp` | its generated Docker-format profile |
//! | `GET /v1/containers/{id}/recommendation?format=...` | its recommendation in one format |
//!
//! Errors are JSON `{"error": "..."}` with 404 (unknown container or path), 400 (bad format),
//! 409 (no profile can be written for it).

use std::sync::{Arc, atomic::Ordering};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use serde::Deserialize;
use serde_json::json;

use capmon_core::recommend::Format;

use crate::daemon::{FindError, STAGES, Shared};

/// The API's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/containers", get(list))
        .route("/v1/containers/{id}", get(one))
        .route("/v1/containers/{id}/seccomp", get(seccomp))
        .route("/v1/containers/{id}/recommendation", get(recommendation))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such path".into()) })
        .with_state(shared)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn not_found(e: FindError) -> Response {
    let status = match e {
        FindError::NotFound(_) => StatusCode::NOT_FOUND,
        FindError::Ambiguous(..) => StatusCode::BAD_REQUEST,
    };
    error(status, e.to_string())
}

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    let (running, exited) = s.model.lock().map(|m| m.counts()).unwrap_or_default();
    Json(json!({
        "status": "ok",
        "probe_mode": s.health.mode,
        "probes_attached": s.health.attached.load(Ordering::Relaxed),
        "containers": {"running": running, "exited": exited},
        "store": s.db_path.display().to_string(),
    }))
    .into_response()
}

async fn list(State(s): State<Arc<Shared>>) -> Response {
    let Ok(m) = s.model.lock() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "model lock poisoned".into(),
        );
    };
    let all: Vec<_> = m.containers.values().map(|c| c.summary()).collect();
    Json(json!({ "containers": all })).into_response()
}

async fn one(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Ok(m) = s.model.lock() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "model lock poisoned".into(),
        );
    };
    match m.find(&id) {
        Ok(c) => {
            let report = c.report();
            Json(json!({
                "container": c.summary(),
                "cgroup_path": c.row.cgroup_path,
                "pod_uid": c.row.pod_uid,
                "qos": c.row.qos,
                "complete": c.row.complete,
                "posture": c.row.posture,
                "capabilities": report.capabilities,
                "syscalls": report.syscalls,
                "analysis": report.analysis,
                "docker_default": report.docker_default,
                "seccomp_profile_error": report.seccomp_profile_error,
            }))
            .into_response()
        }
        Err(e) => not_found(e),
    }
}

async fn seccomp(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    render(&s, &id, Some(Format::Seccomp.name().to_owned()))
}

#[derive(Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

async fn recommendation(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<FormatQuery>,
) -> Response {
    render(&s, &id, q.format)
}

fn render(s: &Shared, id: &str, format: Option<String>) -> Response {
    let Some(format) = format else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("missing ?format=: use one of {}", Format::NAMES.join(", ")),
        );
    };
    let format: Format = match format.parse() {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("{e}")),
    };
    let Ok(m) = s.model.lock() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "model lock poisoned".into(),
        );
    };
    let c = match m.find(id) {
        Ok(c) => c,
        Err(e) => return not_found(e),
    };
    let report = c.report();
    let name = c.display_name().to_owned();
    drop(m);
    match report.advice(&name).render(format) {
        Ok(text) => {
            let ctype = match format {
                Format::Seccomp | Format::Oci => "application/json",
                Format::Compose | Format::Kubernetes | Format::Spo => "application/yaml",
                Format::Docker | Format::Apparmor => "text/plain; charset=utf-8",
            };
            ([(header::CONTENT_TYPE, ctype)], text).into_response()
        }
        Err(e) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

/// Identity label names of per-container metrics.
const ID_LABELS: [&str; 5] = ["container_id", "name", "runtime", "namespace", "pod"];

/// Posture checks exported as `capmon_container_posture{check}`.
const CHECKS: [&str; 6] = [
    "privileged",
    "cap_sys_admin",
    "seccomp_disabled",
    "lsm_unconfined",
    "runs_as_root",
    "no_new_privileges_off",
];

/// Kernel loss reasons exported from the start (0 until something is lost).
const LOSS_REASONS: [&str; 9] = [
    "ringbuf_full",
    "cap_map_full",
    "syscall_map_full",
    "denial_map_full",
    "stack_failed",
    "pending_overflow",
    "task_storage_failed",
    "kretprobe_unmatched",
    "undecodable",
];

fn with<'a>(id: &'a [&'a str; 5], more: &[&'a str]) -> Vec<&'a str> {
    let mut v = id.to_vec();
    v.extend_from_slice(more);
    v
}

/// Builds the exposition from the model on each scrape: series of pruned containers are gone
/// with them.
pub fn render_metrics(s: &Shared) -> Result<String, prometheus::Error> {
    let reg = Registry::new();
    let checks = IntCounterVec::new(
        Opts::new(
            "capmon_capability_checks_total",
            "Capability checks by capability and class (used, denied, probe, ignored).",
        ),
        &with(&ID_LABELS, &["capability", "class"]),
    )?;
    let unused = IntGaugeVec::new(
        Opts::new(
            "capmon_capability_unused",
            "1 for each capability the container was granted and never used.",
        ),
        &with(&ID_LABELS, &["capability"]),
    )?;
    let granted = IntGaugeVec::new(
        Opts::new(
            "capmon_capabilities_granted",
            "Number of capabilities granted (bounding set).",
        ),
        &ID_LABELS,
    )?;
    let denied = IntCounterVec::new(
        Opts::new(
            "capmon_syscalls_denied_total",
            "Syscalls refused by seccomp, by syscall and errno.",
        ),
        &with(&ID_LABELS, &["syscall", "errno"]),
    )?;
    let observed = IntGaugeVec::new(
        Opts::new(
            "capmon_syscalls_observed",
            "Distinct syscalls the container made.",
        ),
        &ID_LABELS,
    )?;
    let posture = IntGaugeVec::new(
        Opts::new(
            "capmon_container_posture",
            "1 when the Docker-checklist item fails for the container, 0 when it passes.",
        ),
        &with(&ID_LABELS, &["check"]),
    )?;
    let running = IntGaugeVec::new(
        Opts::new(
            "capmon_container_running",
            "1 while the container runs, 0 once it exited (until retention).",
        ),
        &ID_LABELS,
    )?;
    let build = IntGaugeVec::new(
        Opts::new("capmon_build_info", "capmon's version."),
        &["version"],
    )?;
    let attached = IntGaugeVec::new(
        Opts::new(
            "capmon_probes_attached",
            "eBPF programs attached, by probe mode.",
        ),
        &["mode"],
    )?;
    let lost = IntCounterVec::new(
        Opts::new(
            "capmon_kernel_events_lost_total",
            "What the kernel side could not record, by reason.",
        ),
        &["reason"],
    )?;
    let dropped = IntCounterVec::new(
        Opts::new(
            "capmon_pipeline_dropped_total",
            "Work dropped between daemon stages (a dropped snapshot is superseded by the next).",
        ),
        &["stage"],
    )?;
    let entries = IntGaugeVec::new(
        Opts::new("capmon_map_entries", "Entries in an eBPF map."),
        &["map"],
    )?;
    let capacity = IntGaugeVec::new(
        Opts::new("capmon_map_capacity", "Capacity of an eBPF map."),
        &["map"],
    )?;
    let tracked = IntGaugeVec::new(
        Opts::new("capmon_containers_tracked", "Containers known, by state."),
        &["state"],
    )?;
    let processed = IntCounterVec::new(
        Opts::new(
            "capmon_events_processed_total",
            "First sightings processed, by kind.",
        ),
        &["kind"],
    )?;
    let store_errors = prometheus::IntCounter::with_opts(Opts::new(
        "capmon_store_write_errors_total",
        "Failed store writes (batches are kept and retried).",
    ))?;
    for c in [
        Box::new(checks.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(unused.clone()),
        Box::new(granted.clone()),
        Box::new(denied.clone()),
        Box::new(observed.clone()),
        Box::new(posture.clone()),
        Box::new(running.clone()),
        Box::new(build.clone()),
        Box::new(attached.clone()),
        Box::new(lost.clone()),
        Box::new(dropped.clone()),
        Box::new(entries.clone()),
        Box::new(capacity.clone()),
        Box::new(tracked.clone()),
        Box::new(processed.clone()),
        Box::new(store_errors.clone()),
        Box::new(s.health.store_write.clone()),
    ] {
        reg.register(c)?;
    }
    {
        let m = s
            .model
            .lock()
            .map_err(|_| prometheus::Error::Msg("model lock poisoned".into()))?;
        for c in m.containers.values() {
            let name = c.row.name.clone().unwrap_or_default();
            let ns = c.row.namespace.clone().unwrap_or_default();
            let pod = c.row.pod.clone().unwrap_or_default();
            let id = [
                c.row.short_id.as_str(),
                name.as_str(),
                c.row.runtime.as_str(),
                ns.as_str(),
                pod.as_str(),
            ];
            for check in c.checks.values() {
                checks
                    .with_label_values(&with(&id, &[&check.capability, &check.class]))
                    .inc_by(check.count);
            }
            for cap in &c.unused() {
                unused.with_label_values(&with(&id, &[cap])).set(1);
            }
            granted
                .with_label_values(&id)
                .set(c.row.granted.len() as i64);
            for d in c.denials.values() {
                denied
                    .with_label_values(&with(&id, &[&d.syscall, &d.errno]))
                    .inc_by(d.count);
            }
            observed.with_label_values(&id).set(c.syscalls.len() as i64);
            for check in CHECKS {
                let fails = c.findings.iter().any(|(f, _)| f == check);
                posture
                    .with_label_values(&with(&id, &[check]))
                    .set(i64::from(fails));
            }
            running.with_label_values(&id).set(i64::from(c.running()));
        }
        let (r, e) = m.counts();
        tracked.with_label_values(&["running"]).set(r as i64);
        tracked.with_label_values(&["exited"]).set(e as i64);
    }
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    attached
        .with_label_values(&[s.health.mode])
        .set(s.health.attached.load(Ordering::Relaxed) as i64);
    let kernel = s
        .health
        .kernel_lost
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    for reason in LOSS_REASONS {
        lost.with_label_values(&[reason])
            .inc_by(kernel.get(reason).copied().unwrap_or(0));
    }
    for stage in STAGES {
        let n = match stage {
            "unattributed" => &s.health.unattributed,
            _ => &s.health.dropped,
        };
        dropped
            .with_label_values(&[stage])
            .inc_by(n.load(Ordering::Relaxed));
    }
    for (map, n, cap) in s
        .health
        .map_fill
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default()
    {
        entries.with_label_values(&[map]).set(n as i64);
        capacity.with_label_values(&[map]).set(cap as i64);
    }
    processed
        .with_label_values(&["cap_check"])
        .inc_by(s.health.processed_checks.load(Ordering::Relaxed));
    processed
        .with_label_values(&["syscall_denied"])
        .inc_by(s.health.processed_denials.load(Ordering::Relaxed));
    store_errors.inc_by(s.health.store_errors.load(Ordering::Relaxed));
    let mut out = Vec::new();
    TextEncoder::new().encode(&reg.gather(), &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    match render_metrics(&s) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
