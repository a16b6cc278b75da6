//! capmon with real container engines: Docker Engine 20.10 and containerd 1.6 from Debian,
//! started by the tests themselves (see `common::engines`). One-shot containers that live
//! milliseconds, their names from Docker's event stream, compose labels, Kubernetes names
//! from CRI annotations in containerd's bundles, the profile each runtime applied, and the
//! docker advice applied with the real `docker run`.
//!
//! `#[ignore]`d: needs root, the engines and a kernel with BTF (`cargo xtask test` runs it).

mod common;

use std::{collections::BTreeSet, fs};

use common::{
    Daemon, container_id, docker_caps, dropped,
    engines::{
        CHOWN, Engines, cri_container, daemon, docker_run, id_by_name, pod_uid_of,
        remove_pod_cgroups, set, unique,
    },
    get_json, http_get,
};
use serde_json::{Value, json};

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
