//! A real fleet: a real Prometheus scrapes two capmon daemons on two kernels, this host's and
//! one in a kernel-matrix guest (Debian's 6.1 under qemu, its daemon reached through a qemu
//! port forward bound to 127.0.0.1, the guest's network restricted), each running replicas of
//! one Deployment's container (runc, Kubernetes names from CRI annotations). `capmon fleet`
//! merges them: coverage 2 of 2 nodes, the guest-only capability and syscall on 1 of 2, and
//! the merged advice runs both nodes' work, where one node's advice alone does not. Every
//! panel of the workloads dashboard has data from that Prometheus.
//!
//! `#[ignore]`d: needs root, runc and the guest node `cargo xtask vm` boots for it
//! (`CAPMON_FLEET_NODE=127.0.0.1:PORT`); elsewhere it says it is skipped.

mod common;

use std::{fs, process::Command, time::Duration};

use capmon::testbed::{
    cri::{PodContainer, Replica},
    fleet::{self, GUEST_OUTPUT, GUEST_WORK, HOST_OUTPUT, HOST_PODS, HOST_WORK, WORKLOAD},
};
use serde_json::Value;

const CAPMON: &str = env!("CARGO_BIN_EXE_capmon");

/// `capmon fleet --prometheus URL --since 10m ARGS`.
fn fleet(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(CAPMON)
        .args(["fleet", "--prometheus", url, "--since", "10m"])
        .args(args)
        .output()
        .expect("capmon fleet")
}

/// The `--cap-add` capabilities of docker advice, as `CAP_*` names.
fn cap_adds(docker: &str) -> Vec<String> {
    let words: Vec<&str> = docker.split_whitespace().collect();
    let mut caps: Vec<String> = words
        .windows(2)
        .filter(|w| w[0] == "--cap-add")
        .map(|w| format!("CAP_{}", w[1].trim_end_matches('\\')))
        .collect();
    caps.sort();
    caps
}

/// Runs `work` once as the workload's container under `caps` and the OCI seccomp profile
/// `seccomp`: its output, or `None` when it failed.
fn run_confined(work: &str, caps: &[String], seccomp: &Value) -> Option<String> {
    let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
    let who = PodContainer {
        namespace: "fleet-check",
        pod: "check-0",
        container: "check",
        image: fleet::IMAGE,
    };
    let out = Replica::start(
        &common::runtime(),
        &who,
        &["/bin/sh", "-c", work],
        &caps,
        Some(seccomp),
    )
    .expect("start the confined run")
    .wait()
    .expect("wait for it");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
#[ignore = "needs root, runc and the guest node of `cargo xtask vm` (run by `cargo xtask test`)"]
fn a_workload_on_two_kernels_merges_through_prometheus_and_its_advice_runs_on_both() {
    let Ok(node) = std::env::var("CAPMON_FLEET_NODE") else {
        common::skip(
            "no guest node (CAPMON_FLEET_NODE): `cargo xtask vm` boots one and runs this test \
             in its fleet row",
        );
        return;
    };
    common::require_root_and_runc();
    let guest = fleet::wait_for_workload(&node, 2, Duration::from_secs(30))
        .expect("the guest node lists its replicas");
    let dir = std::env::temp_dir().join(format!("capmon-fleet-{}", common::container_id()));
    fs::create_dir_all(&dir).expect("mkdir");
    let d = common::Daemon::start(CAPMON, &dir.join("state"), common::free_port(), &[]);
    let replicas = fleet::start_replicas(&common::runtime(), &HOST_PODS, HOST_WORK)
        .expect("start the host's replicas");
    let host =
        fleet::wait_for_workload(&format!("127.0.0.1:{}", d.port), 2, Duration::from_secs(30))
            .expect("the host lists its replicas");
    assert_eq!(host["kind"], "deployment", "{host:#}");
    assert_eq!(guest["kind"], "deployment", "{guest:#}");

    let guest_port: u16 = node
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("CAPMON_FLEET_NODE is 127.0.0.1:PORT");
    let prom = common::Prometheus::start(&dir, &[d.port, guest_port]);
    let url = format!("http://127.0.0.1:{}", prom.port);
    // Until Prometheus has scraped both nodes' workload series in full: workload, kind,
    // nodes, containers, syscalls, capabilities used.
    let expected = |cols: &[&str]| {
        cols.len() == 6
            && cols[1..4] == ["deployment", "2", "4"]
            && cols[5] == "CAP_CHOWN,CAP_MKNOD"
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        // Prometheus may still be starting (connection refused) or have scraped one node.
        let out = fleet(&url, &[]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text.lines().find(|l| l.starts_with(WORKLOAD)).unwrap_or("");
        if out.status.success() && expected(&line.split_whitespace().collect::<Vec<_>>()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{WORKLOAD} not on 2 nodes with 4 containers, CAP_CHOWN and CAP_MKNOD within 90 \
             s; capmon fleet said: {out:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    let out = fleet(&url, &["--workload", WORKLOAD]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for expected in [
        "CAP_CHOWN                used on 2/2 nodes by 4 containers",
        "CAP_MKNOD                used on 1/2 nodes by 2 containers",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
    let syscall = |name: &str, nodes: &str| {
        text.lines().any(|l| {
            l.trim_start().starts_with(&format!("{name} "))
                && l.ends_with(&format!("made on {nodes} nodes"))
        })
    };
    assert!(syscall("chown", "2/2"), "chown on 2/2 in\n{text}");
    assert!(syscall("mknodat", "1/2"), "mknodat on 1/2 in\n{text}");
    common::observed(
        "a syscall one kernel's replicas made, merged",
        syscall("mknodat", "1/2"),
    );

    // The merged advice runs both nodes' work; the host's advice alone does not run the
    // guest's.
    let text_of = |out: std::process::Output| {
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let caps = cap_adds(&text_of(fleet(
        &url,
        &["--workload", WORKLOAD, "--format", "docker"],
    )));
    assert_eq!(caps, ["CAP_CHOWN", "CAP_MKNOD"]);
    let seccomp: Value = serde_json::from_str(&text_of(fleet(
        &url,
        &["--workload", WORKLOAD, "--format", "oci"],
    )))
    .expect("OCI seccomp JSON");
    assert_eq!(
        run_confined(HOST_WORK, &caps, &seccomp).as_deref(),
        Some(HOST_OUTPUT)
    );
    assert_eq!(
        run_confined(GUEST_WORK, &caps, &seccomp).as_deref(),
        Some(GUEST_OUTPUT)
    );
    let path = format!(
        "/v1/workloads/{}/recommendation?format=",
        capmon::cli::client::segment(WORKLOAD)
    );
    let (status, docker) = common::http_get(d.port, &format!("{path}docker")).expect("advice");
    assert_eq!(status, 200, "{docker}");
    let host_caps = cap_adds(&docker);
    assert_eq!(host_caps, ["CAP_CHOWN"]);
    let (status, oci) = common::http_get(d.port, &format!("{path}oci")).expect("advice");
    assert_eq!(status, 200, "{oci}");
    let host_seccomp: Value = serde_json::from_str(&oci).expect("OCI seccomp JSON");
    assert_eq!(
        run_confined(HOST_WORK, &host_caps, &host_seccomp).as_deref(),
        Some(HOST_OUTPUT)
    );
    assert_eq!(run_confined(GUEST_WORK, &host_caps, &host_seccomp), None);

    // Every panel of the workloads dashboard has data from this Prometheus.
    let panels: Vec<_> = common::dashboard_queries()
        .into_iter()
        .filter(|(file, ..)| file == "capmon-workloads.json")
        .collect();
    assert!(panels.len() >= 6, "{panels:?}");
    let empty: Vec<&String> = panels
        .iter()
        .filter(|(_, title, expr)| {
            let q = expr.replace("$workload", ".*").replace("$node", ".*");
            let (status, v) = common::get_json(
                prom.port,
                &format!("/api/v1/query?query={}", capmon::cli::client::segment(&q)),
            );
            assert_eq!(status, 200, "{title}: {q}: {v}");
            v["data"]["result"].as_array().is_none_or(|r| r.is_empty())
        })
        .map(|p| &p.1)
        .collect();
    assert!(empty.is_empty(), "workload panels without data: {empty:?}");
    drop(replicas);
    drop(prom);
    drop(d);
    let _ = fs::remove_dir_all(&dir);
}
