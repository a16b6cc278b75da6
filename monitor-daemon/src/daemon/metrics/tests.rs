//! Tests of the exposition: labels and values of each group of families.

use std::{path::PathBuf, sync::Mutex, sync::RwLock};

use capmon_core::{config::Config, posture};

use super::*;
use crate::daemon::container::ContainerState;
use crate::daemon::{
    container::tests::{container, facts},
    model::Model,
};
use capmon_core::posture::Check;

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
    let status = include_str!("../../../core/tests/fixtures/status-host-root.txt");
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
    let checks =
        format!(r#"capmon_capability_checks_total{{capability="CAP_CHOWN",class="used",{id}}}"#);
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
        let series = format!(r#"capmon_applied_profile_would_deny{{{id},syscall="{syscall}"}}"#);
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

#[test]
fn exited_containers_leave_after_the_window_and_their_workload_with_them() {
    let s = shared();
    let exit_ago = |secs: i64| {
        let mut m = s.model.lock().expect("model");
        for c in m.containers.values_mut() {
            c.info.exited_at = Some(crate::daemon::worker::now() - secs);
        }
    };
    let id = r#"container="app",container_id="0123456789ab",name="web",namespace="",pod="",runtime="docker""#;
    let running = format!("capmon_container_running{{{id}}}");
    exit_ago(30);
    let text = render(&s).expect("render");
    assert_eq!(value(&text, &running), "0", "exited 30 s ago: still shown");
    assert!(text.contains("capmon_workload_containers{"));
    exit_ago(200);
    let text = render(&s).expect("render");
    assert!(!text.contains(&running), "exited 200 s ago, window 120 s");
    assert!(!text.contains(r#"container_id="0123456789ab""#));
    assert!(!text.contains("capmon_workload_containers{"));
    // The daemon's own count still has it (the API keeps it until retention).
    assert!(
        text.contains(r#"capmon_containers_tracked{state="exited"} 1"#),
        "{text}"
    );
    s.config.write().expect("config").metrics_exited_secs = 300;
    let text = render(&s).expect("render");
    assert_eq!(value(&text, &running), "0", "window 300 s");
}
