//! Workloads with real engines: replicas (containerd with CRI annotations) and restarts
//! (Docker compose labels) merged into one profile per workload with coverage, across daemon
//! restarts, run under real Docker; and `capmon fleet` against a real Prometheus scraping the
//! daemon.
//!
//! `#[ignore]`d: needs root, the engines and a kernel with BTF (`cargo xtask test` runs it).

mod common;

use std::{fs, process::Command};

use common::{
    Daemon, container_id, docker_caps,
    engines::{
        CHOWN, DOCKER_SOCK, Engines, chown_confined, cri_container_in, daemon, docker_run,
        pod_uid_of, remove_pod_cgroups, set,
    },
    free_port, get_json, http_get,
};
use serde_json::json;

const CAPMON: &str = env!("CARGO_BIN_EXE_capmon");

#[test]
#[ignore = "needs root, Docker Engine, containerd and a kernel with BTF: run by `cargo xtask test`"]
fn replicas_and_restarts_merge_into_workloads_across_daemon_restarts() {
    let _engines = Engines::start();
    let state = std::env::temp_dir().join(format!("capmon-engines-wl-{}", container_id()));
    let port = free_port();
    let start = || Daemon::start(CAPMON, &state, port, &["--docker-socket", DOCKER_SOCK]);
    let d = start();
    let hex = container_id();
    let pod_uid = pod_uid_of(&hex);
    // Two pods of one Deployment (two ReplicaSets: a rollout), each with its app container.
    let ns = format!("wl{}", &hex[32..38]);
    let pods = ["web-7d9f8b6c5-x2x4z", "web-6b8c9d7f4-k2p5w"];
    let mut ids: Vec<String> = pods
        .iter()
        .map(|pod| cri_container_in(&ns, &pod_uid, pod, "app", "container"))
        .collect();
    // A compose service run twice (a restart).
    let project = format!("shop{}", &hex[40..44]);
    let compose = |n: usize| {
        let name = format!("{project}-web-{n}");
        let out = docker_run(
            &[
                "--name",
                &name,
                "--label",
                &format!("com.docker.compose.project={project}"),
                "--label",
                "com.docker.compose.service=web",
            ],
            CHOWN,
        );
        assert!(out.status.success(), "{out:?}");
        name
    };
    let names = vec![compose(1), compose(2)];
    let deployment = format!("k8s:{ns}:web:app");
    let service = format!("compose:{project}:web");
    let wait_members = |d: &Daemon, name: &str, n: u64| {
        d.wait_for("/v1/workloads", "the workloads", |v| {
            v["workloads"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|w| w["name"] == name && w["containers"]["total"] == n)
            })
        })
    };
    wait_members(&d, &deployment, 2);
    let all = wait_members(&d, &service, 2);
    let w = all["workloads"]
        .as_array()
        .and_then(|a| a.iter().find(|w| w["name"] == deployment.as_str()))
        .expect("listed");
    assert_eq!(w["kind"], "deployment", "{w:#}");
    assert_eq!(w["used"], json!(["CAP_CHOWN"]), "{w:#}");
    assert_eq!(set(&w["granted"]), docker_caps().into_iter().collect());
    // Coverage: both replicas used CAP_CHOWN.
    let (status, one) = get_json(d.port, &format!("/v1/workloads/{deployment}"));
    assert_eq!(status, 200, "{one:#}");
    assert_eq!(
        one["coverage"]["capabilities"],
        json!([{"name": "CAP_CHOWN", "containers": 2, "of": 2}]),
        "{one:#}"
    );
    assert_eq!(one["incomplete"], json!([]));
    // The merged advice, applied to a replica with the real Docker Engine, runs it.
    let (status, profile) =
        http_get(d.port, &format!("/v1/workloads/{service}/seccomp")).expect("p");
    assert_eq!(status, 200, "{profile}");
    let (status, advice) = http_get(
        d.port,
        &format!("/v1/workloads/{service}/recommendation?format=docker"),
    )
    .expect("advice");
    assert_eq!(status, 200, "{advice}");
    assert!(
        advice.contains("--cap-drop ALL --cap-add CHOWN"),
        "{advice}"
    );
    let dir = std::env::temp_dir().join(format!("capmon-wl-{}", container_id()));
    fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("profile.json");
    fs::write(&file, &profile).expect("write");
    let out = chown_confined(&file);
    assert!(
        out.status.success(),
        "the merged profile runs a replica: {out:?}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1:2\n");
    // The command line.
    let out = Command::new(CAPMON)
        .args([
            "report",
            "--workloads",
            "--addr",
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .expect("capmon report --workloads");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(&deployment), "{text}");
    let out = Command::new(CAPMON)
        .args([
            "profile",
            "--format",
            "docker",
            "--addr",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--workload", &service])
        .output()
        .expect("capmon profile --workload");
    assert_eq!(String::from_utf8_lossy(&out.stdout), advice);
    // Membership survives a daemon restart: a third replica adds to the same workload.
    let (status, _) = d.terminate();
    assert!(status.success());
    let d = start();
    ids.push(cri_container_in(
        &ns,
        &pod_uid,
        "web-6b8c9d7f4-q9n2m",
        "app",
        "container",
    ));
    wait_members(&d, &deployment, 3);
    wait_members(&d, &service, 2);
    let _ = (names, ids);
    remove_pod_cgroups(&pod_uid);
    let _ = fs::remove_dir_all(&dir);
    drop(d);
    let _ = fs::remove_dir_all(&state);
}

#[test]
#[ignore = "needs root, containerd, Docker Engine, prometheus and a kernel with BTF: run by `cargo xtask test`"]
fn capmon_fleet_merges_a_workload_from_a_real_prometheus() {
    let _engines = Engines::start();
    let dir = std::env::temp_dir().join(format!("capmon-fleet-{}", container_id()));
    fs::create_dir_all(&dir).expect("mkdir");
    let d = daemon("fleet");
    let hex = container_id();
    let pod_uid = pod_uid_of(&hex);
    let ns = format!("fl{}", &hex[32..38]);
    for pod in ["api-7d9f8b6c5-x2x4z", "api-7d9f8b6c5-q9n2m"] {
        cri_container_in(&ns, &pod_uid, pod, "app", "container");
    }
    let workload = format!("k8s:{ns}:api:app");
    d.wait_for("/v1/workloads", "the workload", |v| {
        v["workloads"].as_array().is_some_and(|a| {
            a.iter()
                .any(|w| w["name"] == workload.as_str() && w["containers"]["total"] == 2)
        })
    });
    let prom = common::Prometheus::start(&dir, &[d.port]);
    let url = format!("http://127.0.0.1:{}", prom.port);
    let fleet = |args: &[&str]| {
        Command::new(CAPMON)
            .args(["fleet", "--prometheus", &url, "--since", "10m"])
            .args(args)
            .output()
            .expect("capmon fleet")
    };
    // Until Prometheus has scraped the workload series.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let table = loop {
        let out = fleet(&[]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains(&workload) || std::time::Instant::now() > deadline {
            assert!(out.status.success(), "{out:?}");
            break text;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    };
    let line = table
        .lines()
        .find(|l| l.starts_with(&workload))
        .unwrap_or_else(|| panic!("{workload} not in\n{table}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols[1..],
        ["deployment", "1", "2", cols[4], "CAP_CHOWN"],
        "{line}"
    );
    let out = fleet(&["--workload", &workload]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CAP_CHOWN                used on 1/1 nodes by 2 containers"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("chown ") && l.ends_with("made on 1/1 nodes")),
        "{text}"
    );
    // The merged profile from Prometheus runs a replica's workload under real Docker.
    let out = fleet(&["--workload", &workload, "--format", "seccomp"]);
    assert!(out.status.success(), "{out:?}");
    let file = dir.join("fleet.json");
    fs::write(&file, &out.stdout).expect("write");
    let run = chown_confined(&file);
    assert!(
        run.status.success(),
        "the fleet's profile runs the workload: {run:?}"
    );
    // Every workload's SeccompProfile, as files; errors name what is wrong.
    let out = fleet(&["--output-dir", dir.to_str().expect("utf8")]);
    assert!(out.status.success(), "{out:?}");
    let spo = dir.join(format!(
        "{}-seccompprofile.yaml",
        capmon::daemon::workloads::file_name(&workload)
    ));
    assert!(spo.exists(), "{}", spo.display());
    let out = fleet(&["--workload", "no-such-workload"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no workload named"),
        "{out:?}"
    );
    let out = Command::new(CAPMON)
        .args(["fleet", "--prometheus", "https://example.invalid"])
        .output()
        .expect("capmon fleet");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("https is not supported"),
        "{out:?}"
    );
    // Every panel of the workloads dashboard has data from this Prometheus.
    let panels: Vec<_> = common::dashboard_queries()
        .into_iter()
        .filter(|(file, ..)| file == "capmon-workloads.json")
        .collect();
    assert!(panels.len() >= 6, "{panels:?}");
    let empty = |(_, title, expr): &(String, String, String)| {
        let q = expr.replace("$workload", ".*").replace("$node", ".*");
        let (status, v) = get_json(
            prom.port,
            &format!("/api/v1/query?query={}", capmon::cli::client::segment(&q)),
        );
        assert_eq!(status, 200, "{title}: {q}: {v}");
        v["data"]["result"].as_array().is_none_or(|r| r.is_empty())
    };
    let failing: Vec<&String> = panels.iter().filter(|p| empty(p)).map(|p| &p.1).collect();
    assert!(
        failing.is_empty(),
        "workload panels without data: {failing:?}"
    );
    remove_pod_cgroups(&pod_uid);
    drop(prom);
    drop(d);
    let _ = fs::remove_dir_all(&dir);
}
