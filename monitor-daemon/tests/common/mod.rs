//! Helpers shared by the privileged container tests: OCI bundles with busybox, running them
//! with real runc in a chosen cgroup, and reading what capmon saw.

#![allow(dead_code)]

pub mod engines;
/// Needs the test-support programs (`capmon-seccomp-exec`).
#[cfg(feature = "test-support")]
pub mod record;

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use std::{
    fs,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use capmon::kernel::reader::KernelReader;
use capmon_core::report::{self, RecordReport};
use serde_json::Value;

pub use capmon_core::seccomp::DOCKER_DEFAULT_CAPS;

/// The line a test prints when it skips itself; `cargo xtask vm` reports such a test as
/// skipped, with the reason (xtask/src/vm/libtest.rs).
pub const SKIP_MARKER: &str = "capmon-test: skipped: ";

/// Skips the calling test, which returns right after: prints `reason` where the kernel
/// matrix's report finds it. For a prerequisite this machine lacks, never for a wrong result.
pub fn skip(reason: &str) {
    println!("{SKIP_MARKER}{reason}");
}

/// The prefix of an observation line: what the kernel matrix's support table shows per kernel
/// and mode comes from these (`xtask/src/vm/libtest.rs` reads them).
pub const OBSERVED_MARKER: &str = "capmon-test: observed: ";

/// Reports whether `what` was seen in this run, for the kernel matrix's support table.
pub fn observed(what: &str, seen: bool) {
    println!(
        "{OBSERVED_MARKER}{what}: {}",
        if seen { "seen" } else { "not seen" }
    );
}

/// The probe mode capmon must pick: the one `CAPMON_PROBE_MODE` forces (the kernel matrix runs
/// the tier once per mode in its guests), else `tp_btf`, the mode of 6.14+ kernels such as the
/// build machines'.
pub fn expected_probe_mode() -> String {
    match std::env::var("CAPMON_PROBE_MODE") {
        Ok(m) if !m.is_empty() && m != "auto" => m,
        _ => "tp_btf".to_owned(),
    }
}

/// How many programs the daemon whose `/healthz` answered `health` attaches in `mode`: the
/// probe table's programs of that mode but the optional ones it says it skipped (with why).
pub fn programs_in_mode(mode: &str, health: &Value) -> u64 {
    let mode = capmon::kernel::probe_table::ProbeMode::parse(mode).expect("a probe mode");
    let skipped: Vec<&str> = health["probes_skipped"]
        .as_array()
        .expect("probes_skipped in /healthz")
        .iter()
        .map(|s| s["program"].as_str().expect("program"))
        .collect();
    // Only optional programs may be left out, and each says why.
    for program in &skipped {
        let probe = mode
            .programs()
            .find(|p| p.program == *program)
            .unwrap_or_else(|| panic!("{program} skipped but not of mode {}", mode.name()));
        assert!(!probe.required, "required {program} skipped: {health}");
    }
    (mode.programs().count() - skipped.len()) as u64
}

/// How many of `n` repetitions a test makes: all of them, or the fraction that
/// `CAPMON_TEST_SCALE` (0 < f <= 1) gives, at least 8. The kernel matrix sets it for its qemu
/// TCG guests, where a container starts 20 to 50 times slower than on the host.
pub fn scaled(n: usize) -> usize {
    let f = std::env::var("CAPMON_TEST_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|f| *f > 0.0 && *f <= 1.0)
        .unwrap_or(1.0);
    ((n as f64 * f).round() as usize).max(8).min(n)
}

/// `d`, or `d` times `CAPMON_TEST_TIME_FACTOR` where the kernel matrix sets it: a bound on
/// how long something may take (a daemon's clean exit) that a qemu TCG guest, many times
/// slower than a real machine, needs stretched.
pub fn bound(d: Duration) -> Duration {
    let factor = std::env::var("CAPMON_TEST_TIME_FACTOR")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|f| *f >= 1)
        .unwrap_or(1);
    d * factor
}

/// The OCI runtime the container tests use: `runc`, or the one `CAPMON_TEST_RUNTIME` names
/// (the kernel matrix runs the container tests with `crun` too: crun refuses the build
/// machines' hybrid cgroups, not the guests' pure cgroup2).
pub fn runtime() -> String {
    std::env::var("CAPMON_TEST_RUNTIME")
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "runc".to_owned())
}

pub fn require_root_and_runc() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root: run `cargo xtask test` as root"
    );
    let rt = runtime();
    assert!(
        Command::new(&rt)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "{rt} is not installed: `cargo xtask setup` installs it (Debian package {rt})"
    );
}

/// Every capability this machine can grant (its bounding set: here, all but a few such as
/// CAP_SYS_RESOURCE, which the VM withholds).
pub fn all_caps() -> Vec<String> {
    let bounding = caps::read(None, caps::CapSet::Bounding).expect("read the bounding set");
    assert!(
        bounding.contains(&caps::Capability::CAP_SYS_ADMIN),
        "this test needs CAP_SYS_ADMIN in the bounding set"
    );
    let mut caps: Vec<String> = bounding.into_iter().map(|c| c.to_string()).collect();
    caps.sort();
    caps
}

/// A unique 64-hex container id.
pub fn container_id() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let seed = format!(
        "{}-{}-{:?}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
    );
    let mut out = String::new();
    let mut h = monitor_common::FNV_OFFSET;
    while out.len() < 64 {
        for b in seed.bytes().chain(out.bytes()) {
            h = monitor_common::fnv1a_step(h, u64::from(b));
        }
        out.push_str(&format!("{h:016x}"));
    }
    out.truncate(64);
    out
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

pub fn docker_caps() -> Vec<String> {
    DOCKER_DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
}

/// Checks AppArmor rules with the real parser (Debian package apparmor; parses offline, no
/// AppArmor needed in the kernel): `rules` wrapped in a profile must compile.
pub fn assert_apparmor_parses(name: &str, rules: &str) {
    let dir = std::env::temp_dir().join(format!("capmon-aa-{}", container_id()));
    fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("profile");
    fs::write(&path, format!("profile capmon-{name} {{\n{rules}}}\n")).expect("write profile");
    let out = Command::new("apparmor_parser")
        .args(["--skip-kernel-load", "--skip-cache", "--skip-read-cache"])
        .arg(&path)
        .output()
        .expect("apparmor_parser is not installed: `cargo xtask setup` installs it (Debian package apparmor)");
    assert!(
        out.status.success(),
        "apparmor_parser rejects the rules for {name}:\n{rules}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = fs::remove_dir_all(&dir);
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET path` over plain HTTP/1.0: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

pub fn get_json(port: u16, path: &str) -> (u16, Value) {
    let (status, body) = http_get(port, path).unwrap_or_else(|| panic!("GET {path}: no answer"));
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
    (status, v)
}

/// The `capmon_pipeline_dropped_total` sample of `stage` in the daemon's `/metrics`.
pub fn dropped(port: u16, stage: &str) -> Option<f64> {
    let (_, text) = http_get(port, "/metrics")?;
    let prefix = format!("capmon_pipeline_dropped_total{{stage=\"{stage}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether capability checks are seen through the `cap_capable` tracepoint, which sees the
/// checks of `cap_capable` copies that a kernel build inlined into callers (the fexit and
/// kprobe modes do not: `cap_vm_enough_memory`'s no-audit `CAP_SYS_ADMIN` probe stays unseen
/// there, as the README says). Follows `CAPMON_PROBE_MODE` as capmon does.
pub fn tracepoint_mode() -> bool {
    let forced = std::env::var("CAPMON_PROBE_MODE").unwrap_or_default();
    let has = aya::Btf::from_sys_fs()
        .is_ok_and(|b| capmon::kernel::probe_table::has_tracepoint(&b, "cap_capable"));
    has && matches!(forced.as_str(), "" | "auto" | "tp_btf")
}

/// Every panel query of the Grafana dashboards, as (file, panel title, PromQL), from
/// `target/dashboard-queries.json` (`cargo xtask test` writes it from `dashboards/*.json`).
pub fn dashboard_queries() -> Vec<(String, String, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-queries.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: `cargo xtask test` writes it from dashboards/*.json before this tier",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("queries JSON")
}

/// A real Prometheus (Debian package) scraping capmon daemons on loopback every second.
pub struct Prometheus {
    child: Child,
    pub port: u16,
}

impl Prometheus {
    /// Starts it with its config and data under `dir`, scraping `127.0.0.1:<target>`.
    pub fn start(dir: &Path, targets: &[u16]) -> Prometheus {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("'127.0.0.1:{t}'")).collect();
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: capmon\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .expect("prometheus.yml");
        let check = Command::new("promtool")
            .args(["check", "config"])
            .arg(&config)
            .output()
            .expect("promtool (Debian package prometheus; `cargo xtask setup` installs it)");
        assert!(check.status.success(), "{check:?}");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus)");
        Prometheus { child, port }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `capmon run`.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub state: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(capmon: &str, state: &Path, port: u16, extra: &[&str]) -> Daemon {
        Daemon::start_wrapped(&[], capmon, state, port, extra)
    }

    /// Like [`Daemon::start`], under a wrapper command (`setpriv ...`).
    pub fn start_wrapped(
        wrapper: &[&str],
        capmon: &str,
        state: &Path,
        port: u16,
        extra: &[&str],
    ) -> Daemon {
        let log = state.with_extension(format!("log-{}", container_id()));
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(capmon);
                c
            }
            None => Command::new(capmon),
        };
        cmd.args(["run", "--state-dir"])
            .arg(state)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--batch-interval-ms", "200"]);
        // Quick polls unless the test sets its own interval.
        if !extra.contains(&"--poll-interval-ms") {
            cmd.args(["--poll-interval-ms", "200"]);
        }
        // No Docker Engine unless the test says where it is (the engine tests do).
        if !extra.contains(&"--docker-socket") {
            cmd.args(["--docker-socket", "/nonexistent/docker.sock"]);
        }
        let child = cmd
            .args(extra)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start capmon run");
        let d = Daemon {
            child,
            port,
            state: state.to_owned(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http_get(port, "/healthz").is_some_and(|(s, _)| s == 200) {
                return d;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "capmon run did not answer /healthz within 20 s: {}",
            fs::read_to_string(&d.log).unwrap_or_default()
        );
    }

    /// Polls `GET path` until `ok` holds (10 s).
    pub fn wait_for(&self, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Some((200, body)) = http_get(self.port, path) {
                last = serde_json::from_str(&body).unwrap_or_default();
                if ok(&last) {
                    return last;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{what}: not seen within 10 s at {path}: {last:#}");
    }

    /// Whether the daemon still runs.
    pub fn child_alive(&self) -> bool {
        // No signal: only checks that the pid exists.
        let exists = kill(Pid::from_raw(self.child.id() as i32), None).is_ok();
        exists
            && fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
                .is_ok_and(|s| !s.contains(") Z "))
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait: (exit status, time it took).
    pub fn terminate(mut self) -> (std::process::ExitStatus, Duration) {
        let t = Instant::now();
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let status = self.child.wait().expect("wait capmon");
        (status, t.elapsed())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
