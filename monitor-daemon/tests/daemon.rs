//! Privileged tier: `capmon run` as users run it, with real runc containers: the HTTP API, the
//! store across a `kill -9`, the CLI clients, metrics, bad input, churn and SIGHUP (the
//! deployment files' capabilities: deployment.rs).
//! `#[ignore]`d: needs root and runc (`cargo xtask test` runs them).

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use std::{
    fs,
    path::PathBuf,
    process::{Command, Output},
    time::Duration,
};

use serde_json::{Value, json};

mod common;

use common::*;

const CAPMON: &str = env!("CARGO_BIN_EXE_capmon");

fn start(state: &std::path::Path, port: u16) -> Daemon {
    Daemon::start(CAPMON, state, port, &[])
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("capmon-daemon-{}-{name}", container_id()));
    let _ = fs::remove_dir_all(&d);
    d
}

/// A profile that refuses the chmod family with EPERM and allows everything else (OCI form).
fn deny_chmod() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["chmod", "fchmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    })
}

fn find<'a>(list: &'a Value, short: &str) -> Option<&'a Value> {
    list["containers"]
        .as_array()?
        .iter()
        .find(|c| c["short_id"] == short)
}

fn cli(args: &[&str]) -> Output {
    Command::new(CAPMON).args(args).output().expect("capmon")
}

#[test]
#[ignore = "needs root and runc: run `cargo xtask test`"]
fn daemon_api_store_restart_and_clients() {
    require_root_and_runc();
    let state = scratch("api");
    let port = free_port();
    let daemon = start(&state, port);
    let (status, health) = get_json(port, "/healthz");
    assert_eq!(status, 200);
    let mode = common::expected_probe_mode();
    assert_eq!(health["probe_mode"], mode.as_str());
    assert_eq!(
        health["probes_attached"],
        common::programs_in_mode(&mode, &health)
    );

    // A: Docker's capabilities, chown used, chmod refused by seccomp.
    let a = Running::start(
        &[
            "/bin/sh",
            "-c",
            "touch /tmp/f && chown 1000 /tmp/f; chmod 600 /tmp/f; exec sleep 60",
        ],
        &docker_caps(),
        &format!("/capmon-test/docker/{}", container_id()),
        |spec| spec["linux"]["seccomp"] = deny_chmod(),
    );
    a.wait_for_workload("sleep");
    let a_short = &a.cgroup.file_name().expect("name").to_string_lossy()[..12].to_owned();
    // B: every capability (privileged), idle.
    let b = Running::start(
        &["/bin/sleep", "60"],
        &all_caps(),
        &format!("/capmon-test/docker/{}", container_id()),
        |_| {},
    );
    b.wait_for_workload("sleep");
    let b_short = &b.cgroup.file_name().expect("name").to_string_lossy()[..12].to_owned();

    // B's posture is read on a later poll than the one that lists it: wait for it too (on a
    // slow machine, such as the kernel matrix's TCG guests, A's checks can come first).
    let list = daemon.wait_for(
        "/v1/containers",
        "A's chown and chmod denial, B's posture",
        |v| {
            find(v, a_short).is_some_and(|c| {
                strs(&c["used"]).contains(&"CAP_CHOWN".to_owned())
                    && c["syscalls_denied"]
                        .as_array()
                        .is_some_and(|d| d.iter().any(|d| d["name"] == "chmod"))
            }) && find(v, b_short).is_some_and(|c| !strs(&c["granted"]).is_empty())
        },
    );
    let ca = find(&list, a_short).expect("A");
    assert_eq!(ca["runtime"], "docker");
    assert_eq!(ca["running"], true);
    assert!(
        strs(&ca["unused"]).contains(&"CAP_NET_RAW".to_owned()),
        "{ca:#}"
    );
    let cb = find(&list, b_short).expect("B");
    assert!(
        strs(&cb["posture"]).contains(&"privileged".to_owned()),
        "{cb:#}"
    );

    // One container, by short id; its profile; recommendations; errors.
    let (status, one) = get_json(port, &format!("/v1/containers/{a_short}"));
    assert_eq!(status, 200);
    assert_eq!(strs(&one["analysis"]["recommended"]), vec!["CAP_CHOWN"]);
    let (status, profile) = get_json(port, &format!("/v1/containers/{a_short}/seccomp"));
    assert_eq!(status, 200);
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    let names = strs(&profile["syscalls"][0]["names"]);
    assert!(names.contains(&"chown".to_owned()), "{names:?}");
    let (status, flags) = http_get(
        port,
        &format!("/v1/containers/{a_short}/recommendation?format=docker"),
    )
    .expect("answer");
    assert_eq!(status, 200);
    assert!(flags.contains("--cap-drop ALL --cap-add CHOWN"), "{flags}");
    let (status, err) = get_json(
        port,
        &format!("/v1/containers/{a_short}/recommendation?format=yaml"),
    );
    assert_eq!(status, 400);
    assert!(
        err["error"]
            .as_str()
            .expect("error")
            .contains("unknown format \"yaml\""),
        "{err}"
    );
    let (status, err) = get_json(port, "/v1/containers/0000000000000000dead");
    assert_eq!(status, 404);
    assert!(
        err["error"]
            .as_str()
            .expect("error")
            .contains("no container"),
        "{err}"
    );
    // B was already running when... no: B started after capmon, so its profile exists too.
    let (status, _) = get_json(
        port,
        &format!("/v1/containers/{b_short}/recommendation?format=oci"),
    );
    assert_eq!(status, 200);

    // Metrics.
    let (status, metrics) = http_get(port, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    let line = |needle: &[&str]| {
        metrics
            .lines()
            .find(|l| needle.iter().all(|n| l.contains(n)))
            .unwrap_or_else(|| panic!("no metric line with {needle:?} in\n{metrics}"))
            .to_owned()
    };
    line(&[
        "capmon_capability_checks_total{",
        a_short,
        "capability=\"CAP_CHOWN\"",
        "class=\"used\"",
    ]);
    line(&[
        "capmon_syscalls_denied_total{",
        a_short,
        "syscall=\"chmod\"",
        "errno=\"EPERM\"",
    ]);
    assert!(line(&["capmon_container_posture{", b_short, "check=\"privileged\""]).ends_with(" 1"));
    assert!(line(&["capmon_container_posture{", a_short, "check=\"privileged\""]).ends_with(" 0"));
    line(&[
        "capmon_capability_unused{",
        a_short,
        "capability=\"CAP_NET_RAW\"",
    ]);
    line(&[&format!(
        "capmon_probes_attached{{mode=\"{mode}\"}} {}",
        common::programs_in_mode(&mode, &health)
    )]);
    line(&["capmon_containers_tracked{state=\"running\"}"]);

    // The CLI clients.
    let addr = format!("127.0.0.1:{port}");
    let out = cli(&["report", "--addr", &addr]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(a_short) && l.contains("running")),
        "{table}"
    );
    let out = cli(&["report", "--addr", &addr, a_short]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("recommended:    CAP_CHOWN (observed)"),
        "{out:?}"
    );
    let out = cli(&["profile", "--addr", &addr, "--format", "compose", a_short]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cap_add:\n    - CHOWN"),
        "{out:?}"
    );
    let out = cli(&[
        "profile",
        "--addr",
        &addr,
        "--format",
        "docker",
        "nosuchcontainer",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no container with id, short id or name \"nosuchcontainer\""),
        "{out:?}"
    );
    let out = cli(&["report", "--addr", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach capmon at 127.0.0.1:1"),
        "{out:?}"
    );

    // kill -9 after more than one batch interval: nothing seen before it is lost.
    let before = get_json(port, &format!("/v1/containers/{a_short}")).1;
    std::thread::sleep(Duration::from_millis(600));
    daemon.kill9();
    drop(a.stop());
    drop(b.stop());
    let daemon = start(&state, port);
    let (_, after) = get_json(port, &format!("/v1/containers/{a_short}"));
    let count = |v: &Value, cap: &str, class: &str| -> u64 {
        v["capabilities"]["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["capability"] == cap && c["class"] == class)
            .map(|c| c["count"].as_u64().unwrap_or(0))
            .sum()
    };
    assert!(count(&before, "CAP_CHOWN", "used") >= 1);
    assert_eq!(
        count(&after, "CAP_CHOWN", "used"),
        count(&before, "CAP_CHOWN", "used"),
        "after restart: {after:#}"
    );
    assert_eq!(after["syscalls"]["denied"], before["syscalls"]["denied"]);
    assert_eq!(after["syscalls"]["used"], before["syscalls"]["used"]);
    assert_eq!(
        after["container"]["granted"],
        before["container"]["granted"]
    );
    // The containers were stopped while no daemon ran: marked exited, kept.
    daemon.wait_for(&format!("/v1/containers/{a_short}"), "A exited", |v| {
        v["container"]["running"] == false
    });

    // SIGTERM: clean exit within two seconds (on a real machine).
    let (status, took) = daemon.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        took < common::bound(Duration::from_secs(2)),
        "took {took:?}"
    );
}

#[test]
#[ignore = "needs root: run `cargo xtask test`"]
fn bad_config_port_in_use_and_bad_databases_are_clear_errors() {
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    let run = |args: &[&str]| {
        let mut cmd = Command::new(CAPMON);
        cmd.arg("run").args(args);
        let out = cmd.output().expect("capmon run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A port in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let state = scratch("busy");
    let (code, err) = run(&[
        "--listen",
        &addr,
        "--state-dir",
        state.to_str().expect("utf8"),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    // Bad config values, from a file, the environment and flags.
    let dir = scratch("config");
    fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("capmon.toml");
    fs::write(
        &file,
        "listen = \"127.0.0.1:9477\"\npoll_intervall_ms = 5\n",
    )
    .expect("write");
    let (code, err) = run(&["--config", file.to_str().expect("utf8")]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("unknown field `poll_intervall_ms`") && err.contains("capmon.toml"),
        "{err}"
    );
    let (code, err) = run(&["--poll-interval-ms", "0"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("poll_interval_ms = 0"), "{err}");
    let (code, err) = run(&["--listen", "localhost"]);
    assert_eq!(code, Some(2), "clap refuses it: {err}");
    assert!(err.contains("--listen"), "{err}");
    // A file that is not a database is refused and left untouched.
    let corrupt = scratch("corrupt");
    fs::create_dir_all(&corrupt).expect("dir");
    let junk = b"not a database\n".repeat(300);
    fs::write(corrupt.join("capmon.db"), &junk).expect("junk");
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let (code, err) = run(&[
        "--listen",
        &listen,
        "--state-dir",
        corrupt.to_str().expect("utf8"),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("capmon.db") && err.contains("not a database"),
        "{err}"
    );
    assert_eq!(fs::read(corrupt.join("capmon.db")).expect("read"), junk);
    // A state directory in use by another capmon.
    let shared = scratch("inuse");
    let first = start(&shared, free_port());
    let (code, err) = run(&[
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--state-dir",
        shared.to_str().expect("utf8"),
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("in use by another capmon"), "{err}");
    let (status, _) = first.terminate();
    assert!(status.success());
}

#[test]
#[ignore = "needs root and runc: run `cargo xtask test`"]
fn container_churn_leaks_no_memory_series_or_map_entries() {
    require_root_and_runc();
    let state = scratch("churn");
    let port = free_port();
    // Retention 0: exited containers are pruned about a second after they exit.
    let daemon = Daemon::start(CAPMON, &state, port, &["--retention-hours", "0"]);
    let pid = daemon.child.id();
    // This test's containers: what else runs on the machine is not this test's business.
    let ours = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let churn = |n: usize| {
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..n / 4 {
                        let id = container_id();
                        ours.lock().expect("ids").insert(id.clone());
                        let c = Running::start(
                            &["/bin/sh", "-c", "cat /etc/hostname > /dev/null"],
                            &docker_caps(),
                            &format!("/capmon-test/docker/{id}"),
                            |_| {},
                        );
                        let out = c.wait();
                        assert!(out.status.success(), "{out:?}");
                    }
                });
            }
        });
    };
    churn(40);
    let settle = |what: &str| {
        daemon.wait_for("/v1/containers", what, |v| {
            v["containers"].as_array().is_some_and(|a| {
                let ours = ours.lock().expect("ids");
                !a.iter()
                    .any(|c| c["id"].as_str().is_some_and(|id| ours.contains(id)))
            })
        });
    };
    settle("warm-up containers pruned");
    let warm = rss_kib(pid);
    let t = std::time::Instant::now();
    churn(200);
    let took = t.elapsed();
    settle("all churned containers pruned");
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(pid);
    assert!(daemon.child_alive(), "capmon run died during churn");
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    let left: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("capmon_container_running{"))
        .filter(|l| {
            let ours = ours.lock().expect("ids");
            ours.iter().any(|id| l.contains(&id[..12]))
        })
        .collect();
    assert!(
        left.is_empty(),
        "series of pruned containers remain: {left:#?}"
    );
    let entries = |metrics: &str, map: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("capmon_map_entries{{map=\"{map}\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(u64::MAX)
    };
    // Exited containers' entries are dropped once written; the host's own cgroups (this
    // test's, where runc ran 240 times) are trimmed every 10 s. 200 containers' worth would be
    // thousands of check keys and 200 syscall sets.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, m) = http_get(port, "/metrics").expect("metrics");
        if entries(&m, "SYSCALLS") < 20 && entries(&m, "CAP_CHECKS") < 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kernel maps not emptied:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "churn: 200 containers in {took:?}; daemon RSS {warm} KiB after warm-up, {after} KiB after"
    );
    assert!(
        after < warm + 8 * 1024,
        "RSS grew from {warm} KiB to {after} KiB over 200 containers"
    );
    let (status, _) = daemon.terminate();
    assert!(status.success());
}

#[test]
#[ignore = "needs root: run `cargo xtask test`"]
fn sighup_reloads_the_config_file_and_keeps_running_on_a_bad_one() {
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    let dir = scratch("hup");
    fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("capmon.toml");
    fs::write(&file, "retention_hours = 5\n").expect("write");
    let port = free_port();
    let daemon = Daemon::start(
        CAPMON,
        &dir.join("state"),
        port,
        &["--config", file.to_str().expect("utf8")],
    );
    let hup = |d: &Daemon| {
        let _ = kill(Pid::from_raw(d.child.id() as i32), Signal::SIGHUP);
    };
    let log_has = |d: &Daemon, needle: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let log = fs::read_to_string(&d.log).unwrap_or_default();
            if log.contains(needle) {
                return log;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{needle:?} not in log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    fs::write(&file, "retention_hours = 9\n").expect("write");
    hup(&daemon);
    log_has(&daemon, "retention_hours=9");
    // The flag given at start still wins over the file.
    assert!(
        log_has(&daemon, "configuration reloaded").contains("poll_interval_ms=200"),
        "flags must still override the file"
    );
    fs::write(&file, "retention_hours = \"soon\"\n").expect("write");
    hup(&daemon);
    log_has(&daemon, "keeping the current configuration");
    assert_eq!(get_json(port, "/healthz").0, 200);
    let (status, _) = daemon.terminate();
    assert!(status.success());
}
