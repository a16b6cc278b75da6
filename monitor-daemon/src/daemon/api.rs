//! The HTTP API (JSON) and `/metrics`: routes and handlers that read the model. The JSON
//! shapes (names of runtimes, QoS classes, posture checks) are made here.
//!
//! | path | answer |
//! | --- | --- |
//! | `GET /healthz` | `{"status":"ok", ...}` |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /v1/containers` | every container's summary |
//! | `GET /v1/containers/{id}` | one container (full id, short id or name): report, analysis, posture |
//! | `GET /v1/containers/{id}/seccomp[?arch=LIST]` | its generated Docker-format profile |
//! | `GET /v1/containers/{id}/recommendation?format=...[&arch=LIST]` | its recommendation in one format |
//! | `GET /v1/workloads` | every workload's summary (containers merged) |
//! | `GET /v1/workloads/{name}` | one workload: summary, members, coverage, analysis |
//! | `GET /v1/workloads/{name}/seccomp[?arch=LIST]` | its merged profile (all members complete) |
//! | `GET /v1/workloads/{name}/recommendation?format=...[&arch=LIST]` | its merged recommendation |
//!
//! `arch` (`x86_64,aarch64`, `all`, ...; default: the architecture the daemon records on)
//! names the architectures the seccomp profile is written for (formats seccomp, oci, spo).
//! Errors are JSON `{"error": "..."}` with 404 (unknown container or path), 400 (bad format
//! or architecture), 409 (no profile can be written for it).

use std::sync::{Arc, atomic::Ordering};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use capmon_core::{
    classify::CapClass,
    recommend::Format,
    report::{Denial, RecordReport},
    seccomp::ArchList,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    container::ContainerState,
    metrics,
    model::{FindError, Shared},
    workloads,
};

/// The API's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(scrape))
        .route("/v1/containers", get(list))
        .route("/v1/containers/{id}", get(one))
        .route("/v1/containers/{id}/seccomp", get(seccomp))
        .route("/v1/containers/{id}/recommendation", get(recommendation))
        .route("/v1/workloads", get(workload_list))
        .route("/v1/workloads/{name}", get(workload_one))
        .route("/v1/workloads/{name}/seccomp", get(workload_seccomp))
        .route(
            "/v1/workloads/{name}/recommendation",
            get(workload_recommendation),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such path".into()) })
        .with_state(shared)
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
    pub runtime: &'static str,
    /// Kubernetes namespace.
    pub namespace: Option<String>,
    /// Kubernetes pod.
    pub pod: Option<String>,
    /// Kubernetes container name.
    pub k8s_container: Option<String>,
    /// A pod's sandbox (pause) container.
    pub sandbox: bool,
    /// Compose project.
    pub compose_project: Option<String>,
    /// Compose service.
    pub compose_service: Option<String>,
    /// Running or exited.
    pub running: bool,
    /// First seen (Unix seconds).
    pub first_seen: i64,
    /// Last activity.
    pub last_seen: i64,
    /// Exit time.
    pub exited_at: Option<i64>,
    /// Whether its granted set was read (from its first program's credentials or a process
    /// of it): without it, `granted` and `unused` are unknown, not empty.
    pub posture_read: bool,
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
    pub posture: Vec<&'static str>,
}

impl Summary {
    /// The listing entry of a container.
    pub fn of(c: &ContainerState) -> Summary {
        let info = &c.info;
        Summary {
            id: info.id.clone(),
            short_id: info.short_id.clone(),
            name: info.name.clone(),
            image: info.image.clone(),
            runtime: info.runtime.as_str(),
            namespace: info.namespace.clone(),
            pod: info.pod.clone(),
            k8s_container: info.k8s_container.clone(),
            sandbox: info.sandbox,
            compose_project: info.compose_project.clone(),
            compose_service: info.compose_service.clone(),
            running: c.running(),
            first_seen: info.first_seen,
            last_seen: info.last_seen,
            exited_at: info.exited_at,
            posture_read: info.posture.is_some(),
            granted: info.granted.clone(),
            used: c.names_in_class(CapClass::Used),
            denied: c.names_in_class(CapClass::Denied),
            unused: c.unused(),
            syscalls_used: c.syscalls.len(),
            syscalls_denied: c.denied(),
            posture: info.findings().iter().map(|f| f.check.as_str()).collect(),
        }
    }
}

/// What the runtime applied, and the container's syscalls against its seccomp profile.
fn applied(c: &ContainerState) -> serde_json::Value {
    let Some(a) = &c.info.applied else {
        return serde_json::Value::Null;
    };
    json!({
        "capabilities": a.capabilities,
        "no_new_privileges": a.no_new_privileges,
        "uid": a.uid,
        "gid": a.gid,
        "apparmor_profile": a.apparmor_profile,
        "selinux_label": a.selinux_label,
        "seccomp": c.applied_diff,
    })
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

/// The answer when the model's lock is poisoned.
fn poisoned() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "model lock poisoned".into(),
    )
}

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    let (running, exited) = s.model.lock().map(|m| m.counts()).unwrap_or_default();
    Json(json!({
        "status": "ok",
        "probe_mode": s.health.mode,
        "probe_mode_reason": s.health.mode_reason,
        "low_mmap_checks": s.health.low_mmap,
        "probes_attached": s.health.attached.load(Ordering::Relaxed),
        "probes_skipped": s.health.skipped.iter()
            .map(|(program, why)| json!({"program": program, "why": why}))
            .collect::<Vec<_>>(),
        "containers": {"running": running, "exited": exited},
        "store": s.db_path.display().to_string(),
    }))
    .into_response()
}

async fn list(State(s): State<Arc<Shared>>) -> Response {
    let Ok(m) = s.model.lock() else {
        return poisoned();
    };
    let all: Vec<Summary> = m.containers.values().map(Summary::of).collect();
    Json(json!({ "containers": all })).into_response()
}

async fn one(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Ok(m) = s.model.lock() else {
        return poisoned();
    };
    let c = match m.find(&id) {
        Ok(c) => c,
        Err(e) => return not_found(e),
    };
    let report = c.report();
    Json(json!({
        "container": Summary::of(c),
        "cgroup_path": c.info.cgroup_path,
        "pod_uid": c.info.pod_uid,
        "qos": c.info.qos.map(|q| q.as_str()),
        "complete": c.info.complete,
        "posture": c.info.posture,
        "applied": applied(c),
        "capabilities": report.capabilities,
        "syscalls": report.syscalls,
        "analysis": report.analysis,
        "docker_default": report.docker_default,
        "seccomp_profile_error": report.seccomp_profile_error,
    }))
    .into_response()
}

async fn seccomp(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<FormatQuery>,
) -> Response {
    let q = FormatQuery {
        format: Some(Format::Seccomp.name().to_owned()),
        ..q
    };
    render(&s, &id, q)
}

#[derive(Deserialize)]
struct FormatQuery {
    format: Option<String>,
    /// Architectures of the seccomp profile (`x86_64,aarch64`, `all`).
    arch: Option<String>,
}

impl FormatQuery {
    /// The format and the architectures asked for, or why they cannot be had (a 400).
    fn parsed(self) -> Result<(Format, Option<ArchList>), String> {
        let format = format_of(self.format)?;
        let arches = self
            .arch
            .map(|a| {
                a.parse::<ArchList>()
                    .map_err(|e| format!("bad ?arch=: {e}"))
            })
            .transpose()?;
        Ok((format, arches))
    }
}

async fn recommendation(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<FormatQuery>,
) -> Response {
    render(&s, &id, q)
}

/// The format asked for, or why there is none (a 400).
fn format_of(format: Option<String>) -> Result<Format, String> {
    let Some(format) = format else {
        return Err(format!(
            "missing ?format=: use one of {}",
            Format::NAMES.join(", ")
        ));
    };
    format.parse().map_err(|e| format!("{e}"))
}

fn render(s: &Shared, id: &str, q: FormatQuery) -> Response {
    let (format, arches) = match q.parsed() {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Ok(m) = s.model.lock() else {
        return poisoned();
    };
    let c = match m.find(id) {
        Ok(c) => c,
        Err(e) => return not_found(e),
    };
    let report = c.report();
    let name = c.info.display_name().to_owned();
    drop(m);
    rendered(&report, &name, format, arches)
}

/// `report`'s advice for `name` in `format`, its seccomp profile for `arches` (default: the
/// architecture it was recorded on), or 409 when it cannot be written.
fn rendered(
    report: &RecordReport,
    name: &str,
    format: Format,
    arches: Option<ArchList>,
) -> Response {
    let arches = arches.unwrap_or_else(|| ArchList::native(report.arch));
    match report.advice(name).render_for(format, &arches) {
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

async fn workload_list(State(s): State<Arc<Shared>>) -> Response {
    let Ok(m) = s.model.lock() else {
        return poisoned();
    };
    let all: Vec<workloads::Summary> = workloads::groups(&m).iter().map(|g| g.summary()).collect();
    Json(json!({ "workloads": all })).into_response()
}

fn no_workload(name: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("no workload named {name:?}"))
}

async fn workload_one(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let Ok(m) = s.model.lock() else {
        return poisoned();
    };
    let Some(g) = workloads::find(&m, &name) else {
        return no_workload(&name);
    };
    let (capabilities, syscalls) = g.coverage();
    let members: Vec<serde_json::Value> = g
        .members
        .iter()
        .map(|c| {
            json!({
                "id": c.info.id,
                "short_id": c.info.short_id,
                "name": c.info.name,
                "running": c.running(),
                "complete": c.info.complete,
            })
        })
        .collect();
    let report = g.report();
    Json(json!({
        "workload": g.summary(),
        "members": members,
        "coverage": {"capabilities": capabilities, "syscalls": syscalls},
        "incomplete": g.incomplete(),
        "analysis": report.analysis,
    }))
    .into_response()
}

async fn workload_seccomp(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(q): Query<FormatQuery>,
) -> Response {
    let q = FormatQuery {
        format: Some(Format::Seccomp.name().to_owned()),
        ..q
    };
    render_workload(&s, &name, q)
}

async fn workload_recommendation(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(q): Query<FormatQuery>,
) -> Response {
    render_workload(&s, &name, q)
}

/// A workload's merged advice; 409 naming the members whose history is incomplete.
fn render_workload(s: &Shared, name: &str, q: FormatQuery) -> Response {
    let (format, arches) = match q.parsed() {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Ok(m) = s.model.lock() else {
        return poisoned();
    };
    let Some(g) = workloads::find(&m, name) else {
        return no_workload(name);
    };
    let incomplete = g.incomplete();
    if !incomplete.is_empty() {
        return error(
            StatusCode::CONFLICT,
            format!(
                "no profile for workload {name:?}: capmon did not see {} of its {} containers \
                 start, so their syscall histories are incomplete: {}",
                incomplete.len(),
                g.members.len(),
                incomplete.join(", ")
            ),
        );
    }
    let report = g.report();
    drop(m);
    rendered(&report, &workloads::file_name(name), format, arches)
}

async fn scrape(State(s): State<Arc<Shared>>) -> Response {
    match metrics::render(&s) {
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

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use capmon_core::{
        names::Arch,
        report::{self, BuildContext, Observed},
    };
    use serde_json::Value;

    use super::*;

    fn query(format: Option<&str>, arch: Option<&str>) -> FormatQuery {
        FormatQuery {
            format: format.map(str::to_owned),
            arch: arch.map(str::to_owned),
        }
    }

    async fn body(response: Response) -> (StatusCode, String) {
        let status = response.status();
        let bytes = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[test]
    fn a_bad_arch_is_named() {
        let err = query(Some("seccomp"), Some("x86_64,sparc"))
            .parsed()
            .expect_err("sparc");
        assert!(
            err.starts_with("bad ?arch=: unknown architecture \"sparc\" in \"x86_64,sparc\""),
            "{err}"
        );
        let (format, arches) = query(Some("oci"), Some("all")).parsed().expect("all");
        assert_eq!((format, arches), (Format::Oci, Some(ArchList::all())));
        assert_eq!(query(Some("spo"), None).parsed(), Ok((Format::Spo, None)));
    }

    #[tokio::test]
    async fn profiles_are_written_for_the_architectures_asked_for() {
        let mut ctx = BuildContext::new(Vec::new());
        ctx.arch = Arch::X86_64;
        // read, write, open on x86_64.
        let observed = Observed {
            syscalls: vec![0, 1, 2],
            ..Default::default()
        };
        let r = report::build(&ctx, vec!["app".into()], 0, None, &observed);
        let (status, native) = body(rendered(&r, "app", Format::Seccomp, None)).await;
        assert_eq!(status, StatusCode::OK, "{native}");
        let native: Value = serde_json::from_str(&native).expect("json");
        assert_eq!(native["architectures"], json!(["SCMP_ARCH_X86_64"]));
        let (status, all) = body(rendered(&r, "app", Format::Oci, Some(ArchList::all()))).await;
        assert_eq!(status, StatusCode::OK, "{all}");
        let all: Value = serde_json::from_str(&all).expect("json");
        assert_eq!(
            all["architectures"].as_array().map(Vec::len),
            Some(5),
            "{all}"
        );
        let names = &all["syscalls"][0]["names"];
        assert!(
            names.as_array().expect("names").contains(&json!("openat")),
            "{names}"
        );
    }
}
