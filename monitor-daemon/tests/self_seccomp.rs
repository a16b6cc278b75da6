//! capmon under its own seccomp profile. One list of syscalls (`deploy/capmon-syscalls.txt`,
//! recorded with `capmon record` from a daemon under load, plus commented extras) is the
//! source of the DaemonSet's seccomp profile (`deploy/kubernetes/capmon-seccomp.json`, x86_64
//! and aarch64) and of the systemd unit's `SystemCallFilter=`: a unit test checks that both
//! are generated from it (`CAPMON_BLESS=1` rewrites them). The privileged test runs the daemon
//! under that profile and its capability set, inside `capmon record`, through the load the list
//! was recorded with: containers starting and stopping, API and `/metrics` reads, SIGHUP,
//! SIGTERM, a restart on the same store; nothing may be denied. A process under the same
//! profile applied by runc gets `EPERM` for a syscall outside it, and the confined daemon
//! reports that denial.
//!
//! Recording the list again: `CAPMON_SELF_SECCOMP=record cargo test -p monitor-daemon
//! --features test-support --test self_seccomp -- --ignored --nocapture` runs the same load
//! unconfined and prints what the daemon called.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use capmon_core::{
    names::Arch,
    recommend::RUNC_AFTER_FILTER,
    seccomp::{ArchList, Profile},
};

mod common;

/// The architectures of the deployed profile: x86_64 and aarch64 nodes, no compat ABIs (capmon
/// is a 64-bit program; the unit's `SystemCallArchitectures=native` says the same).
const ARCHES: &str = "x86_64,aarch64";
const LIST: &str = "deploy/capmon-syscalls.txt";
const PROFILE: &str = "deploy/kubernetes/capmon-seccomp.json";
const UNIT: &str = "deploy/systemd/capmon.service";
const DAEMONSET: &str = "deploy/kubernetes/capmon-daemonset.yaml";
const BEGIN: &str = "# >>> generated from deploy/capmon-syscalls.txt";
const END: &str = "# <<< generated";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The list's syscall names (x86_64's, as recorded here): one per line, `#` starts a comment.
fn listed() -> Vec<String> {
    let text = fs::read_to_string(repo().join(LIST)).expect("the syscall list");
    let names: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "a name listed twice in {LIST}");
    names
}

/// The profile of the list for [`ARCHES`], plus `extra` (x86_64 names).
fn profile(extra: &[&str]) -> Profile {
    let names = listed();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Profile::generate_from_names(Arch::X86_64, &names, extra)
        .unwrap_or_else(|e| panic!("{LIST}: {e}"))
        .for_arches(
            Arch::X86_64,
            &ArchList::parse(ARCHES).expect("architectures"),
        )
}

/// The DaemonSet's profile: the daemon's syscalls and what runc makes between installing the
/// filter and executing capmon (`RUNC_AFTER_FILTER`, as in every profile capmon generates
/// for a container).
fn kubernetes_profile() -> String {
    profile(RUNC_AFTER_FILTER).to_json_pretty() + "\n"
}

/// The unit's generated lines: systemd installs the filter itself right before it executes
/// capmon, so the daemon's syscalls alone, each architecture's names (systemd resolves them
/// for the native one).
fn unit_lines() -> String {
    let p = profile(&[]);
    let names: BTreeSet<&str> = p.syscalls.iter().flat_map(|r| r.all_names()).collect();
    let mut out = format!(
        "{BEGIN} by `CAPMON_BLESS=1 cargo test -p monitor-daemon --test self_seccomp`:\n\
         # {} syscalls, the x86_64 and aarch64 names of the list; anything else fails with EPERM.\n\
         SystemCallArchitectures=native\nSystemCallErrorNumber=EPERM\n",
        names.len()
    );
    let mut line = String::new();
    for name in names {
        if !line.is_empty() && line.len() + 1 + name.len() > 96 {
            out.push_str(&format!("SystemCallFilter={line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(name);
    }
    out.push_str(&format!("SystemCallFilter={line}\n{END}\n"));
    out
}

/// `unit` with its generated block replaced by `lines`.
fn with_generated(unit: &str, lines: &str) -> String {
    let (head, rest) = unit
        .split_once(BEGIN)
        .unwrap_or_else(|| panic!("{UNIT}: no line starting with {BEGIN:?}"));
    let (_, tail) = rest
        .split_once(&format!("{END}\n"))
        .unwrap_or_else(|| panic!("{UNIT}: no line {END:?}"));
    format!("{head}{lines}{tail}")
}

#[test]
fn deployment_seccomp_files_are_generated_from_the_list() {
    let profile_path = repo().join(PROFILE);
    let unit_path = repo().join(UNIT);
    let unit = fs::read_to_string(&unit_path).expect("unit");
    let want_profile = kubernetes_profile();
    let want_unit = with_generated(&unit, &unit_lines());
    if std::env::var("CAPMON_BLESS").is_ok_and(|v| v == "1") {
        fs::write(&profile_path, &want_profile).expect("write the profile");
        fs::write(&unit_path, &want_unit).expect("write the unit");
    }
    let again = "out of date: `CAPMON_BLESS=1 cargo test -p monitor-daemon --test self_seccomp` \
                 writes it from deploy/capmon-syscalls.txt";
    assert!(
        fs::read_to_string(&profile_path).is_ok_and(|t| t == want_profile),
        "{PROFILE} {again}"
    );
    assert!(
        fs::read_to_string(&unit_path).is_ok_and(|t| t == want_unit),
        "{UNIT}'s syscall lines {again}"
    );
    // The profile parses and validates as capmon reads profiles, and allows no compat ABI.
    let parsed = Profile::from_json(&want_profile).expect("the profile parses");
    let arches: Vec<&str> = parsed
        .arch_map
        .iter()
        .flatten()
        .map(|m| m.architecture.as_str())
        .collect();
    assert_eq!(arches, ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"]);
    assert!(
        parsed.arch_map.iter().flatten().all(|m| m
            .sub_architectures
            .iter()
            .flatten()
            .next()
            .is_none())
    );
    assert_eq!(parsed.default_action, "SCMP_ACT_ERRNO");
    // The DaemonSet names the file, as kubelet finds it (relative to its seccomp folder).
    let ds = fs::read_to_string(repo().join(DAEMONSET)).expect("daemonset");
    let docs: Vec<serde_json::Value> = ds
        .split("\n---\n")
        .map(|d| serde_norway::from_str(d).expect("YAML"))
        .collect();
    let daemonset = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("DaemonSet");
    let seccomp = &daemonset["spec"]["template"]["spec"]["containers"][0]["securityContext"]["seccompProfile"];
    assert_eq!(
        *seccomp,
        serde_json::json!({"type": "Localhost", "localhostProfile": "capmon-seccomp.json"})
    );
    assert!(
        ds.contains("/var/lib/kubelet/seccomp/capmon-seccomp.json"),
        "the DaemonSet says where the file goes"
    );
}

#[cfg(feature = "test-support")]
mod confined {
    //! The daemon under the profile (needs `capmon-seccomp-exec`, a test-support program).

    use std::{
        collections::BTreeSet,
        fs,
        io::{Read, Write},
        os::unix::net::UnixListener,
        path::{Path, PathBuf},
        process::Output,
        time::{Duration, Instant},
    };

    use nix::{
        sys::signal::{Signal, kill},
        unistd::Pid,
    };
    use serde_json::{Value, json};

    use super::common::{record::SECCOMP_EXEC, *};
    use capmon_core::seccomp::{KernelVersion, Profile, Target};

    const CAPMON: &str = env!("CARGO_BIN_EXE_capmon");

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("capmon-self-{}-{name}", container_id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("scratch dir");
        d
    }

    /// The committed DaemonSet profile as a runtime applies it (OCI `linux.seccomp`: every
    /// listed architecture, one rule), for this host.
    fn applied_profile() -> Value {
        let text = fs::read_to_string(super::repo().join(super::PROFILE)).expect("profile");
        let target = Target {
            arch: capmon_core::names::Arch::host(),
            caps: capmon::kernel::loader::REQUIRED_CAPS
                .iter()
                .map(|c| c.to_string())
                .collect(),
            kernel: KernelVersion::running().expect("kernel version"),
        };
        let oci = Profile::from_json(&text)
            .expect("profile")
            .resolve_every_arch(&target);
        serde_json::from_str(&oci.to_json_pretty()).expect("json")
    }

    /// A Docker-compatible API on a unix socket that knows no container: `/events` answers
    /// with a stream kept open, everything else 404 (as Docker does for a container it does
    /// not run). The daemon's API client makes its calls as against a real engine.
    fn fake_docker(path: &Path) {
        let listener = UnixListener::bind(path).expect("bind the fake Docker socket");
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match conn.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    if head.starts_with(b"GET /events") {
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                        );
                        // Open until the daemon closes it.
                        let _ = conn.read(&mut [0u8; 64]);
                    } else {
                        let body = br#"{"message":"No such container"}"#;
                        let _ = write!(
                            conn,
                            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        let _ = conn.write_all(body);
                    }
                });
            }
        });
    }

    /// `kernel.perf_event_paranoid` as it was, restored when dropped: the kprobe mode under the
    /// deployment's capabilities needs 2 where Debian's kernels set 3 (deployment.rs tests the
    /// message that says so).
    struct Paranoid(String);

    impl Drop for Paranoid {
        fn drop(&mut self) {
            let _ = fs::write(PARANOID, &self.0);
        }
    }

    const PARANOID: &str = "/proc/sys/kernel/perf_event_paranoid";

    fn kprobes_allowed() -> Option<Paranoid> {
        let level = fs::read_to_string(PARANOID).ok()?;
        if expected_probe_mode() != "kprobe" || level.trim().parse::<i32>().ok()? < 3 {
            return None;
        }
        fs::write(PARANOID, "2").expect("sysctl kernel.perf_event_paranoid=2");
        Some(Paranoid(level))
    }

    /// The pid of the process `capmon record` (`parent`) runs: capmon itself once setpriv and
    /// capmon-seccomp-exec have executed it.
    fn daemon_pid(parent: u32) -> i32 {
        let children = fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .expect("children of capmon record");
        let pid: i32 = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("capmon record runs the daemon");
        let exe = fs::read_link(format!("/proc/{pid}/exe")).expect("exe");
        assert_eq!(exe, Path::new(CAPMON), "the recorded command is capmon");
        pid
    }

    /// Stops the daemon if the test fails before its SIGTERM (dropping [`Daemon`] kills only
    /// `capmon record`): SIGTERM, then SIGKILL after 10 s, and a moment for `capmon record`
    /// to write its report (what seccomp refused) into the scratch folder, kept on failure.
    struct KillOnDrop(i32);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let pid = Pid::from_raw(self.0);
            let _ = kill(pid, Signal::SIGTERM);
            let t = Instant::now();
            while kill(pid, None).is_ok() && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = kill(pid, Signal::SIGKILL);
            std::thread::sleep(Duration::from_secs(3));
        }
    }

    fn status_field(pid: i32, field: &str) -> String {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("status")
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
            .trim()
            .to_owned()
    }

    fn log_has(log: &Path, needle: &str) {
        let deadline = Instant::now() + bound(Duration::from_secs(30));
        loop {
            let text = fs::read_to_string(log).unwrap_or_default();
            if text.contains(needle) {
                return;
            }
            assert!(Instant::now() < deadline, "{needle:?} not in log:\n{text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `GET path` until `ok` holds: 30 s (the matrix's time factor in guests), as the
    /// machine may be busy with other work.
    fn wait(daemon: &Daemon, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let last = match daemon.poll_for(path, bound(Duration::from_secs(30)), ok) {
            Ok(seen) => return seen,
            Err(last) => last,
        };
        // Losses name a busy machine rather than the filter (the recording's denials say that).
        let losses: Vec<String> = http_get(daemon.port, "/metrics")
            .map(|(_, m)| {
                m.lines()
                    .filter(|l| {
                        l.starts_with("capmon_kernel_events_lost_total")
                            || l.starts_with("capmon_pipeline_dropped_total")
                    })
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        panic!("{what}: not seen at {path}: {last:#}\nlosses: {losses:#?}");
    }

    fn short(r: &Running) -> String {
        r.cgroup.file_name().expect("name").to_string_lossy()[..12].to_owned()
    }

    fn find<'a>(list: &'a Value, short: &str) -> Option<&'a Value> {
        list["containers"]
            .as_array()?
            .iter()
            .find(|c| c["short_id"] == short)
    }

    fn denied_names(c: &Value) -> Vec<(String, String)> {
        c["syscalls_denied"]
            .as_array()
            .map(|d| {
                d.iter()
                    .map(|d| {
                        (
                            d["name"].as_str().unwrap_or_default().to_owned(),
                            d["errno"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What one recorded daemon run called: (report of `capmon record`).
    struct Recorded {
        used: Vec<String>,
        denied: Value,
    }

    /// One run of the daemon inside `capmon record` (confined: under the deployment's
    /// capabilities and seccomp profile), through `load`, then SIGTERM. `load` gets the
    /// daemon and its pid.
    fn run_daemon(dir: &Path, confined: bool, load: impl FnOnce(&Daemon, i32)) -> Recorded {
        let out = dir.join(format!("record-{}", container_id()));
        let config = dir.join("capmon.toml");
        fs::write(&config, "retention_hours = 168\n").expect("config");
        let profile = dir.join("oci-profile.json");
        if confined {
            fs::write(
                &profile,
                serde_json::to_string_pretty(&applied_profile()).expect("json"),
            )
            .expect("profile");
        }
        let set = format!(
            "--bounding-set=-all,{}",
            capmon::kernel::loader::REQUIRED_CAPS
                .iter()
                .map(|c| format!(
                    "+{}",
                    c.to_string().trim_start_matches("CAP_").to_lowercase()
                ))
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut wrapper: Vec<&str> = vec![CAPMON, "record", "--output-dir"];
        wrapper.push(out.to_str().expect("utf8"));
        wrapper.push("--");
        if confined {
            wrapper.extend([
                "setpriv",
                set.as_str(),
                "--inh-caps=-all",
                SECCOMP_EXEC,
                profile.to_str().expect("utf8"),
                "--",
            ]);
        }
        let socket = dir.join("docker.sock");
        let daemon = Daemon::start_wrapped(
            &wrapper,
            CAPMON,
            &dir.join("state"),
            free_port(),
            &[
                "--config",
                config.to_str().expect("utf8"),
                "--docker-socket",
                socket.to_str().expect("utf8"),
                "--log-format",
                "json",
            ],
        );
        let pid = daemon_pid(daemon.child.id());
        let _kill = KillOnDrop(pid);
        if confined {
            // Filter mode, no new privileges, exactly the deployment's bounding set.
            assert_eq!(status_field(pid, "Seccomp:"), "2");
            assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
            let bounding = u64::from_str_radix(&status_field(pid, "CapBnd:"), 16).expect("hex");
            let want = capmon::kernel::loader::REQUIRED_CAPS
                .iter()
                .fold(0, |m, c| m | c.bitmask());
            assert_eq!(bounding, want, "CapBnd {bounding:x}, want {want:x}");
        }
        let (status, health) = get_json(daemon.port, "/healthz");
        assert_eq!(status, 200);
        let mode = expected_probe_mode();
        assert_eq!(health["probe_mode"], mode.as_str(), "{health}");
        assert_eq!(
            health["probes_attached"],
            programs_in_mode(&mode, &health),
            "{health}"
        );
        load(&daemon, pid);
        // SIGTERM: a clean exit within the unit's TimeoutStopSec (10 s; daemon.rs holds an
        // unloaded machine to 2 s); then capmon record ends with the daemon's exit code.
        let mut daemon = daemon;
        let t = Instant::now();
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
        let gone =
            || fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "));
        while !gone() && t.elapsed() < bound(Duration::from_secs(10)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = t.elapsed();
        let status = daemon.child.wait().expect("wait capmon record");
        let log = fs::read_to_string(&daemon.log).unwrap_or_default();
        assert!(status.success(), "{status}: {log}");
        assert!(took < bound(Duration::from_secs(10)), "exit took {took:?}");
        let report: Value = serde_json::from_str(
            &fs::read_to_string(out.join("report.json")).expect("report.json"),
        )
        .expect("report JSON");
        Recorded {
            used: strs(&report["syscalls"]["used"]),
            denied: report["syscalls"]["denied"].clone(),
        }
    }

    /// A one-shot container (Docker's capabilities, its cgroup shaped like Docker's).
    fn one_shot(args: &[&str], edit: impl FnOnce(&mut Value)) -> (String, Output) {
        let r = Running::start(
            args,
            &docker_caps(),
            &format!("/capmon-test/docker/{}", container_id()),
            edit,
        );
        let s = short(&r);
        (s, r.wait())
    }

    /// The load of the first run: containers that start and stop, one of them refused a
    /// syscall by its own seccomp profile and one by the daemon's profile, the API read the
    /// ways users and Prometheus read it, SIGHUP with a good and a bad file.
    fn first_load(daemon: &Daemon, pid: i32, config: &Path, confined: bool) -> String {
        let port = daemon.port;
        let deny_chmod = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["chmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
        // A: runs while the rest happens; chown used, chmod refused by its own profile.
        let a = Running::start(
            &[
                "/bin/sh",
                "-c",
                "touch /tmp/f && chown 1000 /tmp/f; chmod 600 /tmp/f; exec sleep 60",
            ],
            &docker_caps(),
            &format!("/capmon-test/docker/{}", container_id()),
            |spec| spec["linux"]["seccomp"] = deny_chmod,
        );
        a.wait_for_workload("sleep");
        let a_short = short(&a);
        // One-shots, each living milliseconds.
        let mut shots = Vec::new();
        for _ in 0..4 {
            let (s, out) = one_shot(
                &["/bin/sh", "-c", "touch /tmp/f && chown 1000 /tmp/f"],
                |_| {},
            );
            assert!(out.status.success(), "{out:?}");
            shots.push(s);
        }
        // D: a one-shot under the daemon's own profile (confined runs).
        let d_short = confined.then(|| refused_by_the_daemon_profile(daemon));
        // The API: the list, one container, its profile and advice, workloads, errors.
        wait(
            daemon,
            &format!("/v1/containers/{a_short}"),
            "A's chown, chmod denied",
            |c| {
                strs(&c["analysis"]["used"]) == ["CAP_CHOWN"]
                    && denied_names(&c["container"])
                        .iter()
                        .any(|(n, _)| n == "chmod")
            },
        );
        for s in &shots {
            wait(
                daemon,
                &format!("/v1/containers/{s}"),
                "a one-shot's chown",
                |c| {
                    strs(&c["analysis"]["used"]) == ["CAP_CHOWN"]
                        && c["container"]["running"] == false
                },
            );
        }
        let list = get_json(port, "/v1/containers").1;
        assert!(find(&list, &a_short).is_some(), "A listed");
        for path in [
            format!("/v1/containers/{a_short}"),
            format!("/v1/containers/{a_short}/seccomp"),
            format!("/v1/containers/{a_short}/seccomp?arch=all"),
            "/v1/workloads".to_owned(),
        ] {
            assert_eq!(get_json(port, &path).0, 200, "{path}");
        }
        let (status, flags) = http_get(
            port,
            &format!("/v1/containers/{a_short}/recommendation?format=docker"),
        )
        .expect("answer");
        assert_eq!(status, 200);
        assert!(flags.contains("--cap-drop ALL --cap-add CHOWN"), "{flags}");
        assert_eq!(get_json(port, "/v1/containers/0000000000000000dead").0, 404);
        for _ in 0..3 {
            let (status, metrics) = http_get(port, "/metrics").expect("metrics");
            assert_eq!(status, 200);
            let shown = |s: &str| {
                metrics.lines().any(|l| {
                    l.starts_with("capmon_syscalls_denied_total{")
                        && l.contains(s)
                        && l.contains("syscall=\"chmod\"")
                        && l.contains("errno=\"EPERM\"")
                })
            };
            assert!(shown(&a_short), "{metrics}");
            if let Some(d) = &d_short {
                assert!(shown(d), "{metrics}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        // SIGHUP: a changed file is taken, a bad one keeps the running configuration.
        fs::write(config, "retention_hours = 9\n").expect("config");
        kill(Pid::from_raw(pid), Signal::SIGHUP).expect("SIGHUP");
        log_has(&daemon.log, "configuration reloaded");
        fs::write(config, "retention_hours = \"soon\"\n").expect("config");
        kill(Pid::from_raw(pid), Signal::SIGHUP).expect("SIGHUP");
        log_has(&daemon.log, "keeping the current configuration");
        assert_eq!(get_json(port, "/healthz").0, 200);
        drop(a.stop());
        // Marked exited, and the batch written.
        wait(
            daemon,
            &format!("/v1/containers/{a_short}"),
            "A exited",
            |c| c["container"]["running"] == false,
        );
        std::thread::sleep(Duration::from_millis(500));
        a_short
    }

    /// D: a one-shot under the daemon's own profile, applied by runc as kubelet has it
    /// applied (with no-new-privileges, as `allowPrivilegeEscalation: false` gives): busybox
    /// starts, and its chmod, outside the profile, fails with EPERM; the (confined) daemon
    /// reports that denial, and only calls outside the profile. D's short id.
    fn refused_by_the_daemon_profile(daemon: &Daemon) -> String {
        let daemon_profile = applied_profile();
        for name in ["chmod", "fchmodat", "fchmodat2"] {
            assert!(
                !strs(&daemon_profile["syscalls"][0]["names"]).contains(&name.to_owned()),
                "{name} is in the daemon's profile"
            );
        }
        let (d_short, out) = one_shot(&["/bin/chmod", "600", "/bin/busybox"], |spec| {
            spec["linux"]["seccomp"] = daemon_profile;
            spec["process"]["noNewPrivileges"] = true.into();
        });
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(
            err.contains("chmod: /bin/busybox: Operation not permitted"),
            "{err}"
        );
        let d = wait(
            daemon,
            &format!("/v1/containers/{d_short}"),
            "D's denial",
            |c| !denied_names(&c["container"]).is_empty(),
        );
        // Refused: the chmod, and whatever else busybox calls that the daemon does not (its
        // start's getuid, getgid and readlink of /proc/self/exe with Debian's busybox), all
        // with EPERM; nothing the profile allows.
        let allowed = strs(&applied_profile()["syscalls"][0]["names"]);
        let denied = denied_names(&d["container"]);
        assert!(
            denied.contains(&("chmod".to_owned(), "EPERM".to_owned())),
            "{d:#}"
        );
        for (name, errno) in &denied {
            assert_eq!(errno, "EPERM", "{d:#}");
            assert!(
                !allowed.contains(name),
                "{name} is allowed yet refused: {d:#}"
            );
        }
        println!("refused in the one-shot under the daemon's profile: {denied:?}");
        d_short
    }

    /// Both runs (the second on the first's store), recorded: what the daemon called, and
    /// what was refused.
    fn both_runs(confined: bool) -> (BTreeSet<String>, Vec<Value>) {
        require_root_and_runc();
        let _paranoid = confined.then(kprobes_allowed).flatten();
        let dir = scratch(if confined { "confined" } else { "record" });
        fake_docker(&dir.join("docker.sock"));
        let config = dir.join("capmon.toml");
        let mut a_short = String::new();
        let first = run_daemon(&dir, confined, |d, pid| {
            a_short = first_load(d, pid, &config, confined);
        });
        // The restart: the store keeps A, exited, with its counts; one more container.
        let second = run_daemon(&dir, confined, |d, _| {
            let a = wait(d, &format!("/v1/containers/{a_short}"), "A kept", |c| {
                strs(&c["analysis"]["used"]) == ["CAP_CHOWN"]
            });
            assert_eq!(a["container"]["running"], false, "{a:#}");
            let (s, out) = one_shot(&["/bin/true"], |_| {});
            assert!(out.status.success(), "{out:?}");
            wait(
                d,
                &format!("/v1/containers/{s}"),
                "the restart's one-shot",
                |c| c["container"]["running"] == false,
            );
            assert_eq!(http_get(d.port, "/metrics").expect("metrics").0, 200);
        });
        let _ = fs::remove_dir_all(&dir);
        let used: BTreeSet<String> = first.used.into_iter().chain(second.used).collect();
        let denied: Vec<Value> = [first.denied, second.denied]
            .iter()
            .flat_map(|d| d.as_array().cloned().unwrap_or_default())
            .collect();
        (used, denied)
    }

    #[test]
    #[ignore = "needs root, runc and setpriv: run `cargo xtask test`"]
    fn daemon_under_its_own_seccomp_profile_works_and_refuses_the_rest() {
        let recording = std::env::var("CAPMON_SELF_SECCOMP").is_ok_and(|v| v == "record");
        let (used, denied) = both_runs(!recording);
        println!(
            "capmon run called ({} mode, {}): {}",
            expected_probe_mode(),
            if recording {
                "unconfined"
            } else {
                "under the profile, with setpriv and capmon-seccomp-exec before it"
            },
            used.iter().cloned().collect::<Vec<_>>().join(" ")
        );
        println!("refused by seccomp: {denied:?}");
        if recording {
            return;
        }
        // Nothing the daemon did in the whole load hit its filter.
        assert!(denied.is_empty(), "the profile refused: {denied:?}");
        let listed: BTreeSet<String> = super::listed().into_iter().collect();
        let unlisted: Vec<&String> = used
            .iter()
            .filter(|u| !listed.contains(*u) && !super::RUNC_AFTER_FILTER.contains(&u.as_str()))
            .collect();
        // setpriv's and capmon-seccomp-exec's own calls before the filter, at most.
        println!("called but not listed (before the filter): {unlisted:?}");
    }
}
