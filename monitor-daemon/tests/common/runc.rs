//! Real runc (or `CAPMON_TEST_RUNTIME`) containers for the tests: unique ids, OCI bundles with
//! busybox in a chosen cgroup, bounded runs, and containers kept running.

#[allow(unused_imports)]
use super::*;

/// A unique 64-hex container id.
pub fn container_id() -> String {
    capmon::testbed::cri::unique_id()
}

/// An OCI bundle whose rootfs holds busybox and its applets.
pub fn bundle(args: &[&str], caps: &[String], cgroups_path: &str) -> PathBuf {
    bundle_with(args, caps, cgroups_path, |_| {})
}

/// Like [`bundle`], with a last edit of the runtime spec.
pub fn bundle_with(
    args: &[&str],
    caps: &[String],
    cgroups_path: &str,
    edit: impl FnOnce(&mut Value),
) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("capmon-bundle-{}", container_id()));
    capmon::testbed::rootfs::busybox(&dir.join("rootfs")).expect("the busybox rootfs");
    let out = Command::new(runtime())
        .args(["spec", "--bundle"])
        .arg(&dir)
        .output()
        .expect("runtime spec");
    assert!(out.status.success(), "{} spec: {out:?}", runtime());
    let path = dir.join("config.json");
    let mut spec: Value =
        serde_json::from_str(&fs::read_to_string(&path).expect("config.json")).expect("json");
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(args);
    for set in ["bounding", "effective", "permitted"] {
        spec["process"]["capabilities"][set] = serde_json::json!(caps);
    }
    spec["process"]["capabilities"]["ambient"] = serde_json::json!([]);
    spec["process"]["capabilities"]["inheritable"] = serde_json::json!([]);
    spec["linux"]["cgroupsPath"] = cgroups_path.into();
    spec["root"]["readonly"] = false.into();
    // The host's network namespace, so that 127.0.0.1 is reachable without configuring lo.
    let namespaces: Vec<Value> = spec["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter(|n| n["type"] != "network")
        .cloned()
        .collect();
    spec["linux"]["namespaces"] = namespaces.into();
    edit(&mut spec);
    fs::write(&path, serde_json::to_string_pretty(&spec).expect("json"))
        .expect("write config.json");
    dir
}

/// Creates a container's cgroup directory. Another test thread's clean-up may remove a shared
/// empty parent (`/capmon-test/docker`) between the steps of `create_dir_all` (seen with four
/// threads of one-shots on a slow machine): then try again.
fn create_cgroup(path: &Path) {
    for _ in 0..50 {
        match fs::create_dir_all(path) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("create the container's cgroup {}: {e}", path.display()),
        }
    }
    panic!(
        "create the container's cgroup {}: a parent kept disappearing",
        path.display()
    );
}

pub struct Run {
    pub output: Output,
    pub observed: capmon_core::report::Observed,
    pub report: RecordReport,
    pub cgroup_id: u64,
}

/// Runs a container to completion in a pre-created cgroup2 directory and reports on it.
pub fn run(recorder: &mut KernelReader, args: &[&str], caps: &[String], cgroups_path: &str) -> Run {
    run_with(recorder, args, caps, cgroups_path, |_| {})
}

/// Like [`run`], with a last edit of the runtime spec.
pub fn run_with(
    recorder: &mut KernelReader,
    args: &[&str],
    caps: &[String],
    cgroups_path: &str,
    edit: impl FnOnce(&mut Value),
) -> Run {
    let mount = capmon::containers::cgroup::find_cgroup2_mount().expect("cgroup2 mount");
    let cg = mount.join(cgroups_path.trim_start_matches('/'));
    create_cgroup(&cg);
    let cgroup_id = capmon::containers::cgroup::cgroup_id(&cg).expect("cgroup id");
    let dir = bundle_with(args, caps, cgroups_path, edit);
    let name = dir
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let output = run_bounded(&name, &dir, &cg);
    let _ = Command::new(runtime())
        .args(["delete", "--force", &name])
        .output();
    let observed = recorder.observe(cgroup_id).expect("observe");
    let report = report::build(
        &report::BuildContext::new(caps.to_vec()),
        args.iter().map(|s| s.to_string()).collect(),
        output.status.code().unwrap_or(-1),
        None,
        &observed,
    );
    // runc removes the leaf; remove what is left of the path.
    let mut p: &Path = &cg;
    while p != mount {
        let _ = fs::remove_dir(p);
        p = p.parent().expect("parent");
    }
    let _ = fs::remove_dir_all(&dir);
    Run {
        output,
        observed,
        report,
        cgroup_id,
    }
}

/// How long one container of the tests may run: theirs take well under a second, or a few
/// seconds under qemu TCG.
const RUN_BOUND: Duration = Duration::from_secs(120);

/// `runc run` of the bundle `dir` as container `name` in cgroup `cg`, to completion. One that
/// is still running after [`RUN_BOUND`] is a failure: the test panics with what every process
/// of the container and runc was doing (state, wait channel, kernel stack), after killing them,
/// so that a hang names its cause and leaves nothing running for the tests after it.
fn run_bounded(name: &str, dir: &Path, cg: &Path) -> Output {
    let mut child = Command::new(runtime())
        .arg("run")
        .arg("--bundle")
        .arg(dir)
        .arg(name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runc run");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait runc") {
            break status;
        }
        if start.elapsed() >= RUN_BOUND {
            let report = hang_report(child.id(), cg);
            let _ = Command::new(runtime())
                .args(["kill", "--all", name, "KILL"])
                .output();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} run {name} still running after {} s; what its processes were doing:\n{report}",
                runtime(),
                RUN_BOUND.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Each process of the runtime (`runtime_pid` and its children) and of the cgroup `cg`: pid,
/// command line, state, wait channel and kernel stack.
fn hang_report(runtime_pid: u32, cg: &Path) -> String {
    let mut pids: Vec<u32> = vec![runtime_pid];
    let children = format!("/proc/{runtime_pid}/task/{runtime_pid}/children");
    pids.extend(
        fs::read_to_string(children)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok()),
    );
    pids.extend(
        fs::read_to_string(cg.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|p| p.trim().parse::<u32>().ok()),
    );
    pids.sort_unstable();
    pids.dedup();
    let mut out = String::new();
    for pid in pids {
        let read = |f: &str| fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap_or_default();
        let state = read("status")
            .lines()
            .find(|l| l.starts_with("State:"))
            .unwrap_or_default()
            .to_owned();
        out.push_str(&format!(
            "pid {pid}: {} [{state}] wchan {}\n{}",
            read("cmdline").replace('\0', " ").trim(),
            read("wchan"),
            read("stack")
        ));
    }
    out
}

pub fn classes_of<'a>(r: &'a RecordReport, cap: &str) -> Vec<&'a str> {
    let mut v: Vec<&str> = r
        .capabilities
        .checks
        .iter()
        .filter(|c| c.capability == cap)
        .map(|c| c.class.as_str())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// A container started in the background (`runc run` in the foreground of a child process).
pub struct Running {
    pub child: std::process::Child,
    pub name: String,
    pub bundle: PathBuf,
    pub cgroup: PathBuf,
    pub mount: PathBuf,
    pub cgroup_id: u64,
}

impl Running {
    pub fn start(
        args: &[&str],
        caps: &[String],
        cgroups_path: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Running {
        let mount = capmon::containers::cgroup::find_cgroup2_mount().expect("cgroup2 mount");
        let cgroup = mount.join(cgroups_path.trim_start_matches('/'));
        create_cgroup(&cgroup);
        let cgroup_id = capmon::containers::cgroup::cgroup_id(&cgroup).expect("cgroup id");
        let bundle = bundle_with(args, caps, cgroups_path, edit);
        let name = bundle
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let child = Command::new(runtime())
            .arg("run")
            .arg("--bundle")
            .arg(&bundle)
            .arg(&name)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("runc run");
        Running {
            child,
            name,
            bundle,
            cgroup,
            mount,
            cgroup_id,
        }
    }

    /// The first pid of the container once its workload runs (after runc's exec).
    pub fn wait_for_workload(&self, comm: &str) -> i32 {
        for _ in 0..200 {
            let procs = fs::read_to_string(self.cgroup.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                if fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm) {
                    return pid;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("no {comm} process appeared in {}", self.cgroup.display());
    }

    /// Kills the container's processes and cleans up.
    pub fn stop(self) -> Output {
        let _ = Command::new(runtime())
            .args(["kill", "--all", &self.name, "KILL"])
            .output();
        self.wait()
    }

    pub fn wait(self) -> Output {
        let out = self.child.wait_with_output().expect("wait runc");
        let _ = Command::new(runtime())
            .args(["delete", "--force", &self.name])
            .output();
        let mut p: &Path = &self.cgroup;
        while p != self.mount {
            let _ = fs::remove_dir(p);
            p = p.parent().expect("parent");
        }
        let _ = fs::remove_dir_all(&self.bundle);
        out
    }
}
