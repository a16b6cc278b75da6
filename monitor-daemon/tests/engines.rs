//! capmon with real container engines: Docker Engine 20.10 and containerd 1.6 from Debian,
//! started by the tests themselves (see `common::engines`). One-shot containers that live
//! milliseconds, their names from Docker's event stream, compose labels, Kubernetes names
//! from CRI annotations in containerd's bundles, the profile each runtime applied, and the
//! docker advice applied with the real `docker run`.
//!
//! `#[ignore]`d: needs root, the engines and a kernel with BTF (`cargo xtask test` runs it).

mod common;

use std::{collections::BTreeSet, fs, process::Command};

use common::{
    Daemon, container_id, docker_caps, dropped,
    engines::{CTR, CTR_IMAGE, DOCKER_SOCK, Engines, docker_run, id_by_name},
    free_port, get_json, http_get,
};
use serde_json::{Value, json};

const CAPMON: &str = env!("CARGO_BIN_EXE_capmon");
/// A workload that needs `CAP_CHOWN` and nothing else, with an output to compare.
const CHOWN: &[&str] = &[
    "sh",
    "-c",
    "touch /tmp/f && chown 1:2 /tmp/f && stat -c %u:%g /tmp/f",
];

/// The daemon, following the Docker Engine's events.
fn daemon(tag: &str) -> Daemon {
    let state = std::env::temp_dir().join(format!("capmon-engines-{tag}-{}", container_id()));
    Daemon::start(
        CAPMON,
        &state,
        free_port(),
        &["--docker-socket", DOCKER_SOCK],
    )
}

/// A unique container name for this run.
fn unique(prefix: &str) -> String {
    format!("capmon-{prefix}-{}", &container_id()[..12])
}

/// The capabilities in `v` (a JSON array of names), as a set.
fn set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// Waits until every container in `names` is listed, has exited and has its granted set.
fn wait_exited(d: &Daemon, names: &[String]) -> Value {
    d.wait_for("/v1/containers", "every one-shot listed and exited", |v| {
        names.iter().all(|n| {
            v["containers"].as_array().is_some_and(|all| {
                all.iter().any(|c| {
                    c["name"] == n.as_str() && c["running"] == false && c["granted"].is_array()
                })
            })
        })
    })
}

fn listed<'a>(all: &'a Value, name: &str) -> &'a Value {
    all["containers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("{name} is not listed: {all:#}"))
}

fn assert_nothing_unattributed(d: &Daemon) {
    assert_eq!(dropped(d.port, "unattributed"), Some(0.0), "unattributed");
    assert_eq!(
        dropped(d.port, "lifecycle"),
        Some(0.0),
        "lifecycle records lost"
    );
}

#[test]
#[ignore = "needs root, Docker Engine and a kernel with BTF: run by `cargo xtask test`"]
fn twenty_docker_one_shots_are_listed_with_name_image_and_exact_sets() {
    let engines = Engines::start();
    let d = daemon("oneshots");
    let names: Vec<String> = (0..20).map(|i| unique(&format!("oneshot{i}"))).collect();
    let run = |name: &String| {
        let out = docker_run(&["--name", name], CHOWN);
        assert!(out.status.success(), "{name}: {out:?}\n{}", engines.logs());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1:2\n");
    };
    // Ten back to back, then ten at once.
    names[..10].iter().for_each(run);
    std::thread::scope(|s| {
        for name in &names[10..] {
            s.spawn(move || run(name));
        }
    });
    let all = wait_exited(&d, &names);
    let docker: BTreeSet<String> = docker_caps().into_iter().collect();
    for name in &names {
        let c = listed(&all, name);
        assert_eq!(c["runtime"], "docker", "{c:#}");
        assert_eq!(c["image"], common::engines::IMAGE, "{c:#}");
        assert_eq!(set(&c["granted"]), docker, "Docker's 14: {c:#}");
        assert_eq!(c["used"], json!(["CAP_CHOWN"]), "{c:#}");
        assert_eq!(c["denied"], json!([]), "{c:#}");
        assert!(c["exited_at"].is_i64(), "{c:#}");
    }
    // The container was gone before /proc could be read: its posture is the kernel's.
    let id = id_by_name(&all, &names[0]).expect("id");
    let (_, detail) = get_json(d.port, &format!("/v1/containers/{id}"));
    assert_eq!(detail["posture"]["source"], "kernel", "{detail:#}");
    assert_eq!(detail["complete"], true, "{detail:#}");
    assert_nothing_unattributed(&d);
}

#[test]
#[ignore = "needs root, Docker Engine and a kernel with BTF: run by `cargo xtask test`"]
fn a_compose_labelled_container_shows_its_project_and_service() {
    let engines = Engines::start();
    let d = daemon("compose");
    let name = unique("compose");
    let out = docker_run(
        &[
            "--name",
            &name,
            "--label",
            "com.docker.compose.project=shop",
            "--label",
            "com.docker.compose.service=web",
        ],
        &["true"],
    );
    assert!(out.status.success(), "{out:?}\n{}", engines.logs());
    let all = wait_exited(&d, std::slice::from_ref(&name));
    let c = listed(&all, &name);
    assert_eq!(
        (&c["compose_project"], &c["compose_service"]),
        (&json!("shop"), &json!("web")),
        "{c:#}"
    );
}

#[test]
#[ignore = "needs root, Docker Engine and a kernel with BTF: run by `cargo xtask test`"]
fn docker_advice_for_a_one_shot_works_in_docker_run_and_fails_without_its_capability() {
    let engines = Engines::start();
    let d = daemon("advice");
    let recorded = unique("recorded");
    let out = docker_run(&["--name", &recorded], CHOWN);
    assert!(out.status.success(), "{out:?}\n{}", engines.logs());
    let all = wait_exited(&d, std::slice::from_ref(&recorded));
    let id = id_by_name(&all, &recorded).expect("id").to_owned();
    let (status, advice) = http_get(
        d.port,
        &format!("/v1/containers/{id}/recommendation?format=docker"),
    )
    .expect("advice");
    assert_eq!(status, 200, "{advice}");
    let (status, profile) = http_get(d.port, &format!("/v1/containers/{id}/seccomp")).expect("p");
    assert_eq!(status, 200, "{profile}");
    let dir = std::env::temp_dir().join(format!("capmon-advice-{}", container_id()));
    fs::create_dir_all(&dir).expect("mkdir");
    let file = format!("seccomp-{recorded}.json");
    fs::write(dir.join(&file), &profile).expect("write the profile");
    // The advice's flags, with the profile where the advice says to save it.
    let line = advice
        .lines()
        .find(|l| l.starts_with("--cap-drop"))
        .unwrap_or_else(|| panic!("no flags in the advice:\n{advice}"));
    let flags: Vec<String> = line
        .split_whitespace()
        .map(|f| {
            f.replace(
                &format!("seccomp={file}"),
                &format!("seccomp={}", dir.join(&file).display()),
            )
        })
        .collect();
    assert_eq!(
        flags,
        [
            "--cap-drop",
            "ALL",
            "--cap-add",
            "CHOWN",
            "--security-opt",
            "no-new-privileges",
            "--security-opt",
            &format!("seccomp={}", dir.join(&file).display()),
        ],
        "{advice}"
    );
    let applied = unique("applied");
    let mut args: Vec<&str> = vec!["--name", &applied];
    args.extend(flags.iter().map(String::as_str));
    let out = docker_run(&args, CHOWN);
    assert!(out.status.success(), "the advice applied: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1:2\n", "same output");
    // Without CAP_CHOWN the workload fails, and capmon names the capability it was refused.
    let without = unique("without");
    let mut args: Vec<&str> = vec!["--name", &without];
    args.extend(
        flags
            .iter()
            .map(String::as_str)
            .filter(|f| *f != "CHOWN" && *f != "--cap-add"),
    );
    let out = docker_run(&args, CHOWN);
    assert!(!out.status.success(), "runs without CAP_CHOWN: {out:?}");
    let all = wait_exited(&d, &[applied.clone(), without.clone()]);
    let c = listed(&all, &applied);
    assert_eq!(
        (&c["granted"], &c["used"], &c["denied"]),
        (&json!(["CAP_CHOWN"]), &json!(["CAP_CHOWN"]), &json!([])),
        "{c:#}"
    );
    assert_eq!(
        c["syscalls_denied"],
        json!([]),
        "the profile refused nothing: {c:#}"
    );
    let c = listed(&all, &without);
    assert_eq!(c["denied"], json!(["CAP_CHOWN"]), "{c:#}");
    let _ = fs::remove_dir_all(&dir);
}

/// `ctr -n k8s.io run --rm` with the annotations containerd's CRI plugin writes, in a
/// kubepods cgroup; returns the container id.
fn cri_container(pod_uid: &str, pod: &str, container: &str, kind: &str) -> String {
    cri_container_in("shop", pod_uid, pod, container, kind)
}

/// [`cri_container`] in namespace `ns`.
fn cri_container_in(ns: &str, pod_uid: &str, pod: &str, container: &str, kind: &str) -> String {
    let id = container_id();
    let cgroup = format!("/kubepods/besteffort/pod{pod_uid}/{id}");
    let annotations = [
        ("io.kubernetes.cri.sandbox-name", pod),
        ("io.kubernetes.cri.sandbox-namespace", ns),
        ("io.kubernetes.cri.container-name", container),
        ("io.kubernetes.cri.container-type", kind),
        ("io.kubernetes.cri.sandbox-id", &id[..12]),
        ("io.kubernetes.cri.image-name", "registry.example/web:1.2"),
    ];
    let mut cmd = Command::new(CTR);
    cmd.args(["-n", "k8s.io", "run", "--rm", "--cgroup", &cgroup]);
    for (k, v) in annotations {
        cmd.args(["--annotation", &format!("{k}={v}")]);
    }
    let out = cmd
        .args([CTR_IMAGE, &id])
        .args(CHOWN)
        .output()
        .expect("ctr run");
    assert!(out.status.success(), "ctr run: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1:2\n");
    id
}

/// A pod UID made from 32 hex digits of `hex`.
fn pod_uid_of(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// [`CHOWN`] under the least privilege capmon advises for it: only `CAP_CHOWN`,
/// no-new-privileges, and the seccomp profile in `profile`.
fn chown_confined(profile: &std::path::Path) -> std::process::Output {
    let opt = format!("seccomp={}", profile.display());
    docker_run(
        &[
            "--cap-drop",
            "ALL",
            "--cap-add",
            "CHOWN",
            "--security-opt",
            "no-new-privileges",
            "--security-opt",
            &opt,
        ],
        CHOWN,
    )
}

/// Removes the pod's cgroup folders that runc leaves behind (every hierarchy).
fn remove_pod_cgroups(pod_uid: &str) {
    let base = std::path::Path::new("/sys/fs/cgroup");
    let mut roots = vec![base.to_owned()];
    roots.extend(
        fs::read_dir(base)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    for root in roots {
        let _ = fs::remove_dir(root.join(format!("kubepods/besteffort/pod{pod_uid}")));
    }
}

#[test]
#[ignore = "needs root, containerd and a kernel with BTF: run by `cargo xtask test`"]
fn containerd_cri_annotations_give_kubernetes_names_and_mark_the_sandbox() {
    let _engines = Engines::start();
    let d = daemon("cri");
    let hex = container_id();
    let pod_uid = pod_uid_of(&hex);
    let pod = format!("web-7d9f8b6c5-{}", &hex[32..37]);
    let sandbox = cri_container(&pod_uid, &pod, "POD", "sandbox");
    let app = cri_container(&pod_uid, &pod, "app", "container");
    let all = d.wait_for("/v1/containers", "both CRI containers", |v| {
        [&sandbox, &app].iter().all(|id| {
            v["containers"].as_array().is_some_and(|a| {
                a.iter().any(|c| {
                    c["id"] == id.as_str() && c["running"] == false && c["granted"].is_array()
                })
            })
        })
    });
    let find = |id: &str| {
        all["containers"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == id))
            .cloned()
            .expect("listed")
    };
    let c = find(&app);
    assert_eq!(c["runtime"], "cri", "{c:#}");
    assert_eq!(
        (
            &c["namespace"],
            &c["pod"],
            &c["k8s_container"],
            &c["sandbox"]
        ),
        (&json!("shop"), &json!(pod), &json!("app"), &json!(false)),
        "{c:#}"
    );
    assert_eq!(c["image"], "registry.example/web:1.2", "{c:#}");
    assert_eq!(c["used"], json!(["CAP_CHOWN"]), "{c:#}");
    let s = find(&sandbox);
    assert_eq!(s["sandbox"], true, "the sandbox is marked: {s:#}");
    // The metrics carry the Kubernetes names.
    let (_, metrics) = http_get(d.port, "/metrics").expect("metrics");
    let labels = format!(
        "container=\"app\",container_id=\"{}\",name=\"\",namespace=\"shop\",pod=\"{pod}\",runtime=\"cri\"",
        &app[..12]
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("capmon_capabilities_granted{") && l.contains(&labels)),
        "no granted series with {labels}:\n{metrics}"
    );
    assert_nothing_unattributed(&d);
    remove_pod_cgroups(&pod_uid);
}

/// Docker's default profile without the chmod family.
fn profile_without_chmod() -> Value {
    let text = include_str!("../core/data/docker-default-seccomp.json");
    let mut p: Value = serde_json::from_str(text).expect("fixture");
    for rule in p["syscalls"].as_array_mut().expect("rules") {
        if let Some(names) = rule["names"].as_array_mut() {
            names.retain(|n| {
                !matches!(
                    n.as_str(),
                    Some("chmod" | "fchmod" | "fchmodat" | "fchmodat2")
                )
            });
        }
    }
    p
}

#[test]
#[ignore = "needs root, Docker Engine and a kernel with BTF: run by `cargo xtask test`"]
fn the_applied_profile_is_compared_with_what_the_container_did() {
    let engines = Engines::start();
    let d = daemon("applied");
    let chmod = ["sh", "-c", "touch /tmp/f; chmod 600 /tmp/f; echo $?"];
    let default = unique("default");
    let out = docker_run(&["--name", &default], &chmod);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0\n",
        "{out:?}\n{}",
        engines.logs()
    );
    let dir = std::env::temp_dir().join(format!("capmon-applied-{}", container_id()));
    fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("nochmod.json");
    fs::write(&file, profile_without_chmod().to_string()).expect("write the profile");
    let custom = unique("custom");
    let opt = format!("seccomp={}", file.display());
    let out = docker_run(&["--name", &custom, "--security-opt", &opt], &chmod);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1\n",
        "chmod refused: {out:?}"
    );
    let all = wait_exited(&d, &[default.clone(), custom.clone()]);
    let applied = |name: &str| {
        let id = id_by_name(&all, name).expect("id");
        let (_, detail) = get_json(d.port, &format!("/v1/containers/{id}"));
        detail["applied"]["seccomp"].clone()
    };
    // Under Docker's default profile: nothing it made would be refused; chmod was allowed
    // and used, so it is not among the allowed but unused.
    let a = applied(&default);
    assert_eq!(a["default_action"], "SCMP_ACT_ERRNO", "{a:#}");
    assert_eq!(a["would_deny"], json!([]), "{a:#}");
    let unused = set(&a["allowed_unused"]);
    assert!(!unused.contains("chmod"), "used, so not unused: {a:#}");
    assert!(unused.contains("accept4"), "allowed, never made: {a:#}");
    // Docker allows mount only with CAP_SYS_ADMIN, which this container lacks.
    assert!(
        !unused.contains("mount"),
        "not allowed to this container: {a:#}"
    );
    // Under the custom profile: chmod is what it would refuse (and did).
    let a = applied(&custom);
    assert_eq!(
        a["would_deny"],
        json!([{"syscall": "chmod", "verdict": "denied", "action": "SCMP_ACT_ERRNO", "errno": 1}]),
        "{a:#}"
    );
    let (_, metrics) = http_get(d.port, "/metrics").expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("capmon_applied_profile_would_deny{")
                && l.contains(&format!("name=\"{custom}\""))
                && l.contains("syscall=\"chmod\"")
                && l.ends_with(" 1")),
        "no would-deny series for {custom}:\n{metrics}"
    );
    let _ = fs::remove_dir_all(&dir);
}

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
