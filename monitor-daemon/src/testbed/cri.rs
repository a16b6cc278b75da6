//! Kubernetes-shaped containers without Kubernetes: a runc container in a kubepods cgroup,
//! with the annotations containerd's CRI plugin writes, and a copy of its runtime spec where
//! containerd keeps a `k8s.io` task's bundle, so that capmon names it as it names a pod's
//! container (its bundle watcher reads that path). Used by the fleet test on the host and by
//! `capmon-fleet-node` in a kernel-matrix guest.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Where containerd keeps the bundles of its `k8s.io` namespace's tasks.
pub const CONTAINERD_K8S_TASKS: &str = "/run/containerd/io.containerd.runtime.v2.task/k8s.io";

/// Which pod and container a replica is.
#[derive(Debug, Clone)]
pub struct PodContainer<'a> {
    pub namespace: &'a str,
    /// The pod's name (a Deployment's: `NAME-<replicaset hash>-<pod hash>`).
    pub pod: &'a str,
    pub container: &'a str,
    pub image: &'a str,
}

/// One running replica; stopped and cleaned up when dropped.
pub struct Replica {
    pub id: String,
    runtime: String,
    child: Option<Child>,
    bundle: PathBuf,
    task: PathBuf,
    cgroup: String,
}

/// A 64-hex id that no other replica of this process has.
pub fn unique_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{}-{}-{:?}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
    );
    let mut out = String::new();
    for round in 0u8..4 {
        let mut h = monitor_common::fnv1a_step(0xcbf2_9ce4_8422_2325, u64::from(round));
        for b in seed.bytes() {
            h = monitor_common::fnv1a_step(h, u64::from(b));
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

/// A pod UID (`8-4-4-4-12` hex digits) from 32 hex digits of `hex`.
pub fn pod_uid_of(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `spec` (from `runtime spec`) running `args` as root with exactly `caps`, in `cgroups_path`,
/// with busybox's root file system, in the host's network namespace.
pub fn edit_spec(spec: &mut Value, args: &[&str], caps: &[&str], cgroups_path: &str) {
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = json!(args);
    for set in ["bounding", "effective", "permitted"] {
        spec["process"]["capabilities"][set] = json!(caps);
    }
    spec["process"]["capabilities"]["ambient"] = json!([]);
    spec["process"]["capabilities"]["inheritable"] = json!([]);
    spec["linux"]["cgroupsPath"] = cgroups_path.into();
    spec["root"]["readonly"] = false.into();
    if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network");
    }
}

impl Replica {
    /// Starts `args` with `caps` (and the seccomp profile `seccomp`, OCI form, if given) as the
    /// container `who` with `runtime` (runc or crun); returns once the runtime is started
    /// (the container itself may still be starting). What it made is removed on failure.
    pub fn start(
        runtime: &str,
        who: &PodContainer<'_>,
        args: &[&str],
        caps: &[&str],
        seccomp: Option<&Value>,
    ) -> anyhow::Result<Replica> {
        let id = unique_id();
        let pod_uid = pod_uid_of(&id[32..]);
        let cgroup = format!("/kubepods/besteffort/pod{pod_uid}/{id}");
        let bundle = std::env::temp_dir().join(format!("capmon-cri-{id}"));
        let task = Path::new(CONTAINERD_K8S_TASKS).join(&id);
        // Dropped on any error below: removes what was made so far.
        let mut replica = Replica {
            id: id.clone(),
            runtime: runtime.to_owned(),
            child: None,
            bundle: bundle.clone(),
            task: task.clone(),
            cgroup: cgroup.clone(),
        };
        super::rootfs::busybox(&bundle.join("rootfs"))?;
        let out = Command::new(runtime)
            .args(["spec", "--bundle"])
            .arg(&bundle)
            .output()
            .with_context(|| format!("{runtime} spec"))?;
        if !out.status.success() {
            bail!("{runtime} spec: {out:?}");
        }
        let path = bundle.join("config.json");
        let mut spec: Value = serde_json::from_str(&fs::read_to_string(&path)?)?;
        edit_spec(&mut spec, args, caps, &cgroup);
        if let Some(s) = seccomp {
            spec["linux"]["seccomp"] = s.clone();
        }
        spec["annotations"] = json!({
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": who.container,
            "io.kubernetes.cri.sandbox-name": who.pod,
            "io.kubernetes.cri.sandbox-namespace": who.namespace,
            "io.kubernetes.cri.sandbox-id": &id[..12],
            "io.kubernetes.cri.image-name": who.image,
        });
        let text = serde_json::to_string_pretty(&spec)?;
        fs::write(&path, &text)?;
        // containerd writes the task's bundle before the container's cgroup exists.
        fs::create_dir_all(&task).with_context(|| format!("mkdir {}", task.display()))?;
        fs::write(task.join("config.json"), &text)?;
        let child = Command::new(runtime)
            .arg("run")
            .arg("--bundle")
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("{runtime} run"))?;
        replica.child = Some(child);
        Ok(replica)
    }

    /// Waits for the container to end by itself: its exit status and output.
    pub fn wait(mut self) -> anyhow::Result<std::process::Output> {
        let child = self.child.take().context("already waited for")?;
        Ok(child.wait_with_output()?)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The container may still be starting: kill it until its runtime returns, for ten
            // seconds at most, then the runtime itself.
            for _ in 0..20 {
                let _ = Command::new(&self.runtime)
                    .args(["kill", &self.id, "KILL"])
                    .output();
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new(&self.runtime)
            .args(["delete", "--force", &self.id])
            .output();
        let _ = fs::remove_dir_all(&self.bundle);
        let _ = fs::remove_dir_all(&self.task);
        if let Some(pod) = Path::new(&self.cgroup).parent() {
            remove_cgroup_dirs(pod);
        }
    }
}

/// Removes the empty cgroup folder `path` (as in `/kubepods/besteffort/pod<uid>`), which
/// runtimes leave behind, from every hierarchy (cgroup2 and, on hybrid hosts, each v1 one).
pub fn remove_cgroup_dirs(path: &Path) {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let base = Path::new("/sys/fs/cgroup");
    let mut roots = vec![base.to_owned()];
    roots.extend(
        fs::read_dir(base)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    for root in roots {
        let _ = fs::remove_dir(root.join(rel));
    }
}
