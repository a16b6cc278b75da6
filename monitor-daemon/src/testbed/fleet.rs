//! The fleet test's scenario, shared by its two nodes: the host (tests/fleet.rs) and a
//! kernel-matrix guest (`capmon-fleet-node`, booted by `cargo xtask vm`). Both run replicas of
//! one Deployment's container; the guest's replicas also make a device node, so the workload's
//! union across nodes has a capability and a syscall that only one node saw.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;

use super::cri::{PodContainer, Replica};
// Docker's default capabilities, as a Deployment's container gets them from containerd.
use capmon_core::seccomp::DOCKER_DEFAULT_CAPS;

/// The Deployment's namespace, name and container: capmon's workload `k8s:fleet:shop:web`.
pub const NAMESPACE: &str = "fleet";
pub const CONTAINER: &str = "web";
pub const WORKLOAD: &str = "k8s:fleet:shop:web";
pub const IMAGE: &str = "registry.example/shop-web:1.0";

/// The host's two pods and the guest's two (one ReplicaSet: same hash, pod suffixes differ).
pub const HOST_PODS: [&str; 2] = ["shop-6d4cf56db6-h2x7k", "shop-6d4cf56db6-h9q4z"];
pub const GUEST_PODS: [&str; 2] = ["shop-6d4cf56db6-g4m2p", "shop-6d4cf56db6-g8t5w"];

/// What the host's replicas do (then wait to be stopped): needs `CAP_CHOWN`.
pub const HOST_WORK: &str = "touch /tmp/f && chown 1:2 /tmp/f && stat -c %u:%g /tmp/f";
/// What the guest's replicas do: the host's work and a device node (`CAP_MKNOD`, `mknodat`).
pub const GUEST_WORK: &str = "touch /tmp/f && chown 1:2 /tmp/f && stat -c %u:%g /tmp/f && \
                              mknod /tmp/null c 1 3 && ls -l /tmp/null | cut -c1";
/// Their outputs.
pub const HOST_OUTPUT: &str = "1:2\n";
pub const GUEST_OUTPUT: &str = "1:2\nc\n";

/// The port the guest's daemon listens on (forwarded from the host's loopback by qemu).
pub const GUEST_PORT: u16 = 9477;

/// `sh -c` arguments: `work`, then sleep until stopped.
pub fn long_running(work: &str) -> [String; 3] {
    [
        "/bin/sh".into(),
        "-c".into(),
        format!("{work} && exec sleep 3600"),
    ]
}

/// Starts one replica of the workload per pod in `pods`, doing `work`.
pub fn start_replicas(runtime: &str, pods: &[&str], work: &str) -> anyhow::Result<Vec<Replica>> {
    let args = long_running(work);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    pods.iter()
        .map(|pod| {
            let who = PodContainer {
                namespace: NAMESPACE,
                pod,
                container: CONTAINER,
                image: IMAGE,
            };
            Replica::start(runtime, &who, &args, DOCKER_DEFAULT_CAPS, None)
        })
        .collect()
}

/// `GET path` on `addr` (HTTP/1.0, no keep-alive): status and body.
pub fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no HTTP status from {addr}: {text:.80}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_owned()))
}

/// The workload as `addr`'s `/v1/workloads` lists it, once it has `containers` members.
pub fn wait_for_workload(addr: &str, containers: u64, bound: Duration) -> anyhow::Result<Value> {
    let deadline = Instant::now() + bound;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok((200, body)) = http_get(addr, "/v1/workloads") {
            let v: Value = serde_json::from_str(&body).context("/v1/workloads JSON")?;
            let found = v["workloads"].as_array().and_then(|a| {
                a.iter()
                    .find(|w| w["name"] == WORKLOAD && w["containers"]["total"] == containers)
            });
            if let Some(w) = found {
                return Ok(w.clone());
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!("{WORKLOAD} with {containers} containers not listed by {addr} within {bound:?}: {last}")
}

/// `capmon run` listening on `listen`, its state in `state`, its log in `log`.
pub fn start_daemon(
    capmon: &Path,
    listen: &str,
    state: &Path,
    log: &Path,
) -> anyhow::Result<Child> {
    let log = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    Command::new(capmon)
        .args(["run", "--listen", listen, "--state-dir"])
        .arg(state)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {}", capmon.display()))
}
