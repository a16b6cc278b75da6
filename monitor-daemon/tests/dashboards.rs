//! Privileged tier: every panel query of every Grafana dashboard returns data from a real
//! Prometheus (Debian package) scraping a real `capmon run` while real runc containers work.
//! The queries come from `target/dashboard-queries.json`, which `cargo xtask test` writes from
//! `dashboards/*.json` before this tier.

use std::{
    fs,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

mod common;

use common::*;

const CAPMON: &str = env!("CARGO_BIN_EXE_capmon");

#[test]
#[ignore = "needs root, runc and prometheus: run `cargo xtask test`"]
fn every_dashboard_panel_returns_data_from_a_real_prometheus() {
    require_root_and_runc();
    // The workloads dashboard needs containers with names, from real engines: its queries
    // run in the engine tests' fleet test.
    let queries: Vec<_> = dashboard_queries()
        .into_iter()
        .filter(|(file, ..)| file != "capmon-workloads.json")
        .collect();
    assert!(queries.len() >= 10, "{queries:?}");
    let dir = std::env::temp_dir().join(format!("capmon-e2e-{}", container_id()));
    fs::create_dir_all(&dir).expect("dir");
    let port = free_port();
    let daemon = Daemon::start(CAPMON, &dir.join("state"), port, &[]);

    // A: Docker's capabilities but NET_RAW, refused chmod, busy; B: every capability.
    let caps: Vec<String> = docker_caps()
        .into_iter()
        .filter(|c| c != "CAP_NET_RAW")
        .collect();
    let a = Running::start(
        &[
            "/bin/sh",
            "-c",
            "touch /tmp/f; while true; do chown 1000 /tmp/f; chmod 600 /tmp/f; \
             ping -c1 127.0.0.1 >/dev/null 2>&1; sleep 0.3; done",
        ],
        &caps,
        &format!("/capmon-test/docker/{}", container_id()),
        |spec| {
            spec["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
            });
        },
    );
    a.wait_for_workload("sleep");
    let b = Running::start(
        &["/bin/sleep", "120"],
        &all_caps(),
        &format!("/capmon-test/docker/{}", container_id()),
        |_| {},
    );
    b.wait_for_workload("sleep");

    let prom = Prometheus::start(&dir, &[port]);
    let prom_port = prom.port;
    let query = |q: &str| -> Value {
        let expr = q.replace("$node", ".*").replace("$container", ".*");
        let (status, v) = get_json(
            prom_port,
            &format!(
                "/api/v1/query?query={}",
                capmon::cli::client::segment(&expr)
            ),
        );
        assert_eq!(status, 200, "{expr}: {v}");
        v
    };
    // Wait for enough samples for rate() over [1m] (two scrapes at least).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut failing: Vec<String>;
    loop {
        std::thread::sleep(Duration::from_secs(2));
        failing = queries
            .iter()
            .filter(|(_, _, expr)| {
                query(expr)["data"]["result"]
                    .as_array()
                    .is_none_or(|r| r.is_empty())
            })
            .map(|(file, panel, expr)| format!("{file} / {panel}: {expr}"))
            .collect();
        if failing.is_empty() || Instant::now() > deadline {
            break;
        }
    }
    drop(a.stop());
    drop(b.stop());
    drop(daemon);
    assert!(
        failing.is_empty(),
        "panels without data after 60 s:\n{}",
        failing.join("\n")
    );
    let _ = fs::remove_dir_all(&dir);
}
