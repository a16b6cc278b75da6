//! Every subcommand into a reader that has gone away (`capmon report | head -1` after `head`
//! exited): capmon ends quietly, killed by `SIGPIPE` as `cat` or `ls` are (a shell shows 141),
//! never with a panic or an error message; and a listing of containers whose short ids collide
//! names each by its shortest unique prefix, which `capmon report` then finds, while the shared
//! prefix says which containers it matches.
//!
//! The subcommands that need no daemon run everywhere; those that read a daemon (`report`,
//! `profile`, `fleet` through a real Prometheus) or record (`record`) are `#[ignore]`d: they
//! need root and runc (`cargo xtask test` runs them).

mod common;

use std::{
    fs,
    os::unix::process::ExitStatusExt as _,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{Daemon, Running, container_id, docker_caps, free_port};

const CAPMON: &str = env!("CARGO_BIN_EXE_capmon");

/// `capmon ARGS` with its stdout a pipe whose reader is gone before it writes a byte.
fn into_a_closed_reader(args: &[&str]) -> Output {
    closed_reader_with_pid(args).0
}

/// Like [`into_a_closed_reader`], with capmon's pid.
fn closed_reader_with_pid(args: &[&str]) -> (Output, u32) {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    let child = Command::new(CAPMON)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .spawn()
        .expect("run capmon");
    let pid = child.id();
    (child.wait_with_output().expect("wait for capmon"), pid)
}

/// As coreutils end: killed by SIGPIPE, nothing said.
fn assert_ended_quietly(args: &[&str], out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked")
            && !stderr.contains("internal error")
            && !stderr.contains("Broken pipe"),
        "capmon {args:?} said on stderr: {stderr}"
    );
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "capmon {args:?} did not end by SIGPIPE: {:?}; stderr: {stderr}",
        out.status
    );
}

#[test]
fn subcommands_without_a_daemon_end_quietly_on_a_closed_stdout() {
    let report = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/corpus/replay_report/report.json"
    );
    let commands: [&[&str]; 7] = [
        &["--help"],
        &["report", "--help"],
        &["completions", "bash"],
        &["completions", "zsh"],
        &["man"],
        &["replay", "--profile", "docker-default", report],
        &["replay", "--profile", "docker-default", "--json", report],
    ];
    for args in commands {
        // The same command into a reader that stays: it works and prints something (so the
        // closed reader below really was written to).
        let whole = Command::new(CAPMON).args(args).output().expect("capmon");
        assert!(
            !whole.stdout.is_empty() && whole.status.code().is_some_and(|c| c == 0 || c == 3),
            "capmon {args:?}: {whole:?}"
        );
        assert_ended_quietly(args, &into_a_closed_reader(args));
    }
}

#[test]
fn check_ends_quietly_on_a_closed_stdout() {
    // `capmon check` prints its findings whether or not it may load programs.
    assert_ended_quietly(&["check"], &into_a_closed_reader(&["check"]));
}

#[test]
#[ignore = "needs root and runc: run by `cargo xtask test`"]
fn daemon_clients_and_record_end_quietly_and_colliding_ids_stay_apart() {
    common::require_root_and_runc();
    let state = std::env::temp_dir().join(format!("capmon-pipes-{}", container_id()));
    let d = Daemon::start(CAPMON, &state, free_port(), &[]);
    let addr = format!("127.0.0.1:{}", d.port);
    // Three containers whose ids share their first 12 digits (what Docker shows).
    let shared = "cab000000000";
    let ids: Vec<String> = (0..3)
        .map(|_| format!("{shared}{}", &container_id()[12..]))
        .collect();
    let running: Vec<Running> = ids
        .iter()
        .map(|id| {
            let r = Running::start(
                &["/bin/sleep", "120"],
                &docker_caps(),
                &format!("/capmon-test/docker/{id}"),
                |_| {},
            );
            r.wait_for_workload("sleep");
            r
        })
        .collect();
    d.wait_for("/v1/containers", "the three containers", |v| {
        ids.iter().all(|id| {
            v["containers"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["id"] == id.as_str()))
        })
    });

    // The listing: each row's id is its shortest unique prefix, and names it again.
    let list = Command::new(CAPMON)
        .args(["report", "--addr", &addr])
        .output()
        .expect("capmon report");
    assert!(list.status.success(), "{list:?}");
    let text = String::from_utf8_lossy(&list.stdout).into_owned();
    let shown: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(shared))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(shown.len(), 3, "{text}");
    for prefix in &shown {
        assert!(
            prefix.len() > shared.len(),
            "{prefix} is not unique: {text}"
        );
        let one = Command::new(CAPMON)
            .args(["report", "--addr", &addr, "--json", prefix])
            .output()
            .expect("capmon report PREFIX");
        assert!(one.status.success(), "{prefix}: {one:?}");
        let v: serde_json::Value = serde_json::from_slice(&one.stdout).expect("JSON");
        assert!(
            v["container"]["id"]
                .as_str()
                .is_some_and(|id| id.starts_with(prefix)),
            "{prefix}: {v:#}"
        );
    }
    // The shared prefix is ambiguous: the error lists the three, as the listing shows them.
    let ambiguous = Command::new(CAPMON)
        .args(["report", "--addr", &addr, shared])
        .output()
        .expect("capmon report SHARED");
    let err = String::from_utf8_lossy(&ambiguous.stderr);
    assert_eq!(ambiguous.status.code(), Some(1), "{ambiguous:?}");
    assert!(err.contains("matches 3 containers"), "{err}");
    for prefix in &shown {
        assert!(err.contains(prefix), "{prefix} not in: {err}");
    }

    // Every daemon client into a closed reader.
    let one = shown[0];
    let clients: [&[&str]; 6] = [
        &["report", "--addr", &addr],
        &["report", "--addr", &addr, "--json"],
        &["report", "--addr", &addr, one],
        &["report", "--addr", &addr, "--workloads"],
        &["profile", "--addr", &addr, "--format", "docker", one],
        &["profile", "--addr", &addr, "--format", "seccomp", one],
    ];
    for args in clients {
        assert_ended_quietly(args, &into_a_closed_reader(args));
    }

    // `capmon fleet` through a real Prometheus scraping this daemon (its table has a header
    // even before the first scrape).
    let prom = common::Prometheus::start(&state, &[d.port]);
    let url = format!("http://127.0.0.1:{}", prom.port);
    let fleet = ["fleet", "--prometheus", url.as_str()];
    let deadline = Instant::now() + common::bound(Duration::from_secs(30));
    while !Command::new(CAPMON)
        .args(fleet)
        .output()
        .expect("capmon fleet")
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "Prometheus never answered");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_ended_quietly(&fleet, &into_a_closed_reader(&fleet));
    drop(prom);

    // `capmon record`: the command runs and the recording is cleaned up before capmon ends.
    let mount = capmon::containers::cgroup::find_cgroup2_mount().expect("cgroup2 mount");
    for args in [
        &["record", "--json", "--", "/bin/true"][..],
        &["record", "--format", "docker", "--", "/bin/true"][..],
        &[
            "record",
            "--verify",
            "--format",
            "docker",
            "--",
            "/bin/echo",
            "hello",
        ][..],
    ] {
        let (out, pid) = closed_reader_with_pid(args);
        assert_ended_quietly(args, &out);
        let cgroup = mount.join(format!("capmon-record-{pid}"));
        assert!(!cgroup.exists(), "{} left behind", cgroup.display());
    }

    for r in running {
        r.stop();
    }
    drop(d);
    let _ = fs::remove_dir_all(&state);
}
