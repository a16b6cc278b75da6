//! The library's real engines (`capmon::testbed`), one test at a time per test binary (each
//! test starts and stops them), with test-style failures; the daemon following Docker's
//! events, and the engine workloads the engine and workload tests share.

use std::{
    collections::BTreeSet,
    process::{Command, Output},
    sync::{Mutex, MutexGuard},
};

use serde_json::Value;

use super::{Daemon, container_id, free_port};

const CAPMON: &str = env!("CARGO_BIN_EXE_capmon");

#[allow(unused_imports)]
pub use capmon::testbed::engines::{CTR, CTR_IMAGE, DOCKER_SOCK, IMAGE};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Running engines, stopped (the ones the test started) when dropped.
pub struct Engines {
    inner: capmon::testbed::engines::Engines,
    _guard: MutexGuard<'static, ()>,
}

impl Engines {
    pub fn start() -> Engines {
        let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let inner = capmon::testbed::engines::Engines::start()
            .unwrap_or_else(|e| panic!("start the container engines: {e:#}"));
        Engines {
            inner,
            _guard: guard,
        }
    }

    pub fn logs(&self) -> String {
        self.inner.logs()
    }
}

/// `docker run --rm --network none ARGS... IMAGE CMD...`: its output.
pub fn docker_run(args: &[&str], cmd: &[&str]) -> Output {
    capmon::testbed::engines::docker_run(args, cmd).expect("run docker")
}

/// The full id of the container named `name` in `containers` (capmon's `/v1/containers`).
pub fn id_by_name<'a>(containers: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    containers["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["id"].as_str())
}

/// A workload that needs `CAP_CHOWN` and nothing else, with an output to compare.
pub const CHOWN: &[&str] = &[
    "sh",
    "-c",
    "touch /tmp/f && chown 1:2 /tmp/f && stat -c %u:%g /tmp/f",
];

/// The daemon, following the Docker Engine's events.
pub fn daemon(tag: &str) -> Daemon {
    let state = std::env::temp_dir().join(format!("capmon-engines-{tag}-{}", container_id()));
    Daemon::start(
        CAPMON,
        &state,
        free_port(),
        &["--docker-socket", DOCKER_SOCK],
    )
}

/// A unique container name for this run.
pub fn unique(prefix: &str) -> String {
    format!("capmon-{prefix}-{}", &container_id()[..12])
}

/// The capabilities in `v` (a JSON array of names), as a set.
pub fn set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// `ctr -n k8s.io run --rm` with the annotations containerd's CRI plugin writes, in a
/// kubepods cgroup; returns the container id.
pub fn cri_container(pod_uid: &str, pod: &str, container: &str, kind: &str) -> String {
    cri_container_in("shop", pod_uid, pod, container, kind)
}

/// [`cri_container`] in namespace `ns`.
pub fn cri_container_in(ns: &str, pod_uid: &str, pod: &str, container: &str, kind: &str) -> String {
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

#[allow(unused_imports)]
pub use capmon::testbed::cri::pod_uid_of;

/// [`CHOWN`] under the least privilege capmon advises for it: only `CAP_CHOWN`,
/// no-new-privileges, and the seccomp profile in `profile`.
pub fn chown_confined(profile: &std::path::Path) -> std::process::Output {
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
pub fn remove_pod_cgroups(pod_uid: &str) {
    capmon::testbed::cri::remove_cgroup_dirs(std::path::Path::new(&format!(
        "/kubepods/besteffort/pod{pod_uid}"
    )));
}
