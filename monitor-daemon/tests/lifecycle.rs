//! Privileged tests of cgroups' lives as the kernel side reports them (created with their path,
//! first exec with its credentials, removed) and of what that buys: containers that live
//! milliseconds are attributed with their granted and used sets. Real kernel, real runc.

mod common;

use std::{
    fs,
    process::Command,
    time::{Duration, Instant},
};

use capmon::{
    containers::cgroup::{cgroup_id, find_cgroup2_mount},
    kernel::{events::Lifecycle, reader::KernelReader},
};
use capmon_core::posture::{self, PostureSource};
use common::{Daemon, bundle, container_id, dropped, free_port, http_get, require_root_and_runc};
use serde_json::Value;

const CAPMON: &str = env!("CARGO_BIN_EXE_capmon");
const STRESS: &str = env!("CARGO_BIN_EXE_capmon-stress");

/// The records about cgroup `id` among `all`.
fn about(all: &[Lifecycle], id: u64) -> Vec<Lifecycle> {
    all.iter()
        .filter(|l| l.cgroup_id() == id)
        .cloned()
        .collect()
}

#[test]
#[ignore = "needs root and a kernel with BTF: run by `cargo xtask test`"]
fn the_kernel_reports_a_cgroups_life_and_its_first_exec_credentials() {
    require_root_and_runc();
    let mut reader = KernelReader::start().expect("start the probes");
    reader.keep_lifecycle();
    let mount = find_cgroup2_mount().expect("cgroup2 mount");
    let rel = format!("/capmon-life-{}", std::process::id());
    let dir = mount.join(rel.trim_start_matches('/'));
    fs::create_dir(&dir).expect("mkdir the cgroup");
    let id = cgroup_id(&dir).expect("cgroup id");
    // A shell joins the cgroup, then the first exec there is busybox's.
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec /bin/busybox true",
            dir.display()
        ))
        .status()
        .expect("run sh");
    assert!(status.success());
    // A cgroup of a v1 hierarchy (this host is hybrid) is not a v2 cgroup: not reported.
    let v1 = std::path::Path::new("/sys/fs/cgroup/pids").join(rel.trim_start_matches('/'));
    let v1_made = fs::create_dir(&v1).is_ok();
    fs::remove_dir(&dir).expect("rmdir the cgroup");
    if v1_made {
        fs::remove_dir(&v1).expect("rmdir the v1 cgroup");
    }
    reader.drain();
    let (all, dropped) = reader.take_lifecycle();
    assert_eq!(dropped, 0);
    let mine = about(&all, id);
    assert_eq!(mine.len(), 3, "created, first exec, removed: {mine:?}");
    assert_eq!(
        mine[0],
        Lifecycle::Created {
            cgroup_id: id,
            path: Some(rel.clone())
        }
    );
    assert_eq!(mine[2], Lifecycle::Removed { cgroup_id: id });
    let Lifecycle::FirstExec(exec) = &mine[1] else {
        panic!("second record is not the first exec: {mine:?}");
    };
    assert_eq!(monitor_common::comm_bytes(&exec.comm), b"busybox");
    let read = monitor_common::exec_read::CAPS
        | monitor_common::exec_read::IDS
        | monitor_common::exec_read::FLAGS
        | monitor_common::exec_read::SECCOMP;
    assert_eq!(exec.read, read, "every field read");
    // The credentials are those this process passed on: the same as /proc says of it.
    let host_bounding = capmon::containers::posture::host_bounding();
    let k = posture::from_exec(exec, host_bounding).expect("capability sets read");
    let me = std::process::id() as i32;
    let p = capmon::containers::posture::read_pid(me, host_bounding)
        .expect("read /proc/self")
        .expect("alive");
    assert_eq!(k.source, PostureSource::Kernel);
    assert_eq!(
        (&k.effective, &k.permitted, &k.bounding, k.uid),
        (&p.effective, &p.permitted, &p.bounding, p.uid)
    );
    assert_eq!((k.no_new_privs, k.seccomp), (p.no_new_privs, p.seccomp));
    if v1_made {
        assert!(
            !all.iter().any(|l| matches!(
                l,
                Lifecycle::Created { path: Some(p), .. } if p == &rel && l.cgroup_id() != id
            )),
            "a v1 cgroup was reported: {all:?}"
        );
    }
}

/// Runs a runc (or `CAPMON_TEST_RUNTIME`) container to completion in cgroup `/docker/<id>`;
/// returns its id.
fn runc_oneshot(args: &[&str], caps: &[String]) -> String {
    let id = container_id();
    let dir = bundle(args, caps, &format!("/docker/{id}"));
    let out = Command::new(common::runtime())
        .arg("run")
        .arg("--bundle")
        .arg(&dir)
        .arg(&id)
        .output()
        .expect("runc run");
    assert!(out.status.success(), "runc run: {out:?}");
    let _ = Command::new(common::runtime())
        .args(["delete", "--force", &id])
        .output();
    let _ = fs::remove_dir_all(&dir);
    id
}

#[test]
#[ignore = "needs root, runc and a kernel with BTF: run by `cargo xtask test`"]
fn two_hundred_runc_one_shots_that_live_milliseconds_are_listed_with_exact_sets() {
    require_root_and_runc();
    let state = std::env::temp_dir().join(format!("capmon-life-state-{}", container_id()));
    let port = free_port();
    let daemon = Daemon::start(CAPMON, &state, port, &[]);
    let caps = vec!["CAP_CHOWN".to_owned(), "CAP_KILL".to_owned()];
    let chown = ["/bin/chown", "1:1", "/etc/hostname"];
    // A hundred back to back, then a hundred at once (a tenth of that under the matrix's
    // qemu TCG: `common::scaled`).
    let hundred = common::scaled(100);
    let started = Instant::now();
    let mut ids: Vec<String> = (0..hundred).map(|_| runc_oneshot(&chown, &caps)).collect();
    let per_container = started.elapsed() / hundred as u32;
    let started = Instant::now();
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..hundred)
            .map(|_| s.spawn(|| runc_oneshot(&chown, &caps)))
            .collect();
        ids.extend(runs.into_iter().map(|r| r.join().expect("one-shot thread")));
    });
    let hundred_at_once = started.elapsed();
    let listed = daemon.wait_for("/v1/containers", "every one-shot", |v| {
        let all = v["containers"].as_array().cloned().unwrap_or_default();
        ids.iter().all(|id| {
            all.iter()
                .any(|c| c["id"] == id.as_str() && c["running"] == false)
        })
    });
    for id in &ids {
        let c: &Value = listed["containers"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == id.as_str()))
            .expect("listed");
        assert_eq!(c["runtime"], "docker", "{c:#}");
        assert_eq!(c["granted"], serde_json::json!(caps), "{c:#}");
        // A miss says what the daemon and the kernel side lost (losses, dropped stages).
        let health = || common::get_json(port, "/healthz").1;
        assert_eq!(
            c["used"],
            serde_json::json!(["CAP_CHOWN"]),
            "{c:#}\n/healthz: {:#}\ndetail: {:#}",
            health(),
            common::get_json(port, &format!("/v1/containers/{id}")).1
        );
        assert_eq!(c["unused"], serde_json::json!(["CAP_KILL"]), "{c:#}");
        assert!(c["exited_at"].is_i64(), "{c:#}");
    }
    // The posture came from the kernel side: the container was gone before /proc could tell.
    let (_, detail) = common::get_json(port, &format!("/v1/containers/{}", ids[0]));
    assert_eq!(detail["posture"]["source"], "kernel", "{detail:#}");
    assert_eq!(detail["posture"]["bounding"], serde_json::json!(caps));
    assert_eq!(detail["complete"], true, "capmon saw it start: {detail:#}");
    // Its history is complete: its generated seccomp profile and its advice are served.
    let (status, profile) = common::get_json(port, &format!("/v1/containers/{}/seccomp", ids[0]));
    assert_eq!(status, 200, "{profile:#}");
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO", "{profile:#}");
    let allowed: Vec<&str> = profile["syscalls"]
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| r["action"] == "SCMP_ACT_ALLOW")
        .flat_map(|r| r["names"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    assert!(
        allowed
            .iter()
            .any(|n| n.starts_with("fchown") || *n == "chown" || *n == "lchown"),
        "the chown it made is allowed: {allowed:?}"
    );
    let (status, advice) = http_get(
        port,
        &format!("/v1/containers/{}/recommendation?format=docker", ids[0]),
    )
    .expect("advice");
    assert_eq!(status, 200, "{advice}");
    assert!(
        advice.contains("--cap-drop ALL") && advice.contains("--cap-add CHOWN"),
        "{advice}"
    );
    assert!(!advice.contains("KILL"), "{advice}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while dropped(port, "unattributed").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(dropped(port, "unattributed"), Some(0.0));
    assert_eq!(dropped(port, "lifecycle"), Some(0.0));
    eprintln!(
        "{} {} one-shots: {per_container:?} each from start to deletion back to back, \
         {hundred_at_once:?} for {hundred} at once",
        2 * hundred,
        common::runtime()
    );
    drop(daemon);
    let _ = fs::remove_dir_all(&state);
}

#[test]
#[ignore = "needs root, runc and a kernel with BTF: run by `cargo xtask test`"]
fn one_shots_created_while_the_maps_are_read_are_kept_under_a_long_poll_interval() {
    require_root_and_runc();
    // With polls 3 s apart, a cgroup created while the maps are read has counts in one
    // snapshot and its record of creation in the next, more than two seconds later: it must
    // wait for that snapshot (the rule is pinned by the model's unit test; the benchmark's
    // one-shot storm measured 1 to 8 of 200 lost before it, at the default 2 s interval).
    let state = std::env::temp_dir().join(format!("capmon-life-state-{}", container_id()));
    let port = free_port();
    let daemon = Daemon::start(CAPMON, &state, port, &["--poll-interval-ms", "3000"]);
    let caps = vec!["CAP_CHOWN".to_owned()];
    let chown = ["/bin/chown", "1:1", "/etc/hostname"];
    // The bundles first, so that the containers start as fast as runc can start them.
    let ids: Vec<String> = (0..common::scaled(160)).map(|_| container_id()).collect();
    let bundles: Vec<std::path::PathBuf> = ids
        .iter()
        .map(|id| bundle(&chown, &caps, &format!("/docker/{id}")))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(id) = ids.get(i) else { return };
                    let out = Command::new(common::runtime())
                        .arg("run")
                        .arg("--bundle")
                        .arg(&bundles[i])
                        .arg(id)
                        .output()
                        .expect("runc run");
                    assert!(out.status.success(), "runc run: {out:?}");
                    let _ = Command::new(common::runtime())
                        .args(["delete", "--force", id])
                        .output();
                }
            });
        }
    });
    for b in &bundles {
        let _ = fs::remove_dir_all(b);
    }
    // 20 s here; five times that under the matrix's TCG (a 3 s poll interval there is many
    // times slower work: seen once on 6.12-rt with crun, one of 16 still unlisted at 20 s).
    let deadline = Instant::now() + common::bound(Duration::from_secs(20));
    let (missing, v) = loop {
        let (_, v) = common::get_json(port, "/v1/containers");
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| {
                !v["containers"].as_array().is_some_and(|a| {
                    a.iter().any(|c| {
                        c["id"] == id.as_str()
                            && c["used"] == serde_json::json!(["CAP_CHOWN"])
                            && c["granted"] == serde_json::json!(caps)
                    })
                })
            })
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break (missing, v);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    // What the daemon knows of each one missing (or that it does not list it at all).
    let known: Vec<String> = missing
        .iter()
        .map(|id| {
            v["containers"]
                .as_array()
                .and_then(|a| a.iter().find(|c| c["id"] == id.as_str()))
                .map_or_else(|| format!("{id}: not listed"), |c| format!("{c:#}"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} one-shots without their exact sets: {known:#?}\n/healthz: {:#}",
        missing.len(),
        ids.len(),
        common::get_json(port, "/healthz").1
    );
    assert_eq!(dropped(port, "unattributed"), Some(0.0));
    drop(daemon);
    let _ = fs::remove_dir_all(&state);
}

/// A sample of the daemon's `/metrics`, by its whole series name.
fn sample(port: u16, series: &str) -> Option<f64> {
    let (_, text) = http_get(port, "/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Runs the kernel skipped so far, by program, of the loaded programs named like capmon's
/// (the kernel keeps 15 characters of a name: `cap_capable_ent`, `sys_enter`, ...).
fn skipped_by_program() -> std::collections::BTreeMap<String, u64> {
    use std::os::fd::AsFd as _;
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| {
            let name = p.name_as_str()?.to_owned();
            let fd = p.fd().ok()?;
            let misses = capmon::kernel::prog_info::recursion_misses(fd.as_fd()).ok()?;
            Some((name, misses))
        })
        .filter(|(name, _)| {
            ["cap_", "sys_", "sched_", "cgroup_"]
                .iter()
                .any(|p| name.starts_with(p))
        })
        .fold(Default::default(), |mut all, (name, misses)| {
            *all.entry(name).or_default() += misses;
            all
        })
}

/// What one stress run saw: chown calls made, program_skipped and kretprobe_unmatched added
/// meanwhile, the runs skipped per program meanwhile, the probe mode.
struct Stress {
    calls: u64,
    skipped: Option<f64>,
    unmatched: Option<f64>,
    by_program: std::collections::BTreeMap<String, u64>,
    mode: Value,
}

impl Stress {
    /// Runs skipped of the programs on the capability hooks (kprobe and kretprobe, and the
    /// `cap_mmap_addr` pair): each one a capability check lost.
    fn capability_checks_skipped(&self) -> u64 {
        self.by_program
            .iter()
            .filter(|(name, _)| name.starts_with("cap_"))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Capability checks made on CPU 0 for 20 s beside a daemon reading its maps every 50 ms (the
/// shortest interval), pinned there too, started under `wrapper`, while a real-time task wakes
/// there every millisecond (preempting whichever runs, in the middle of its syscalls).
fn checks_beside_the_map_reads(wrapper: &[&str]) -> Stress {
    let state = std::env::temp_dir().join(format!("capmon-skip-state-{}", container_id()));
    let port = free_port();
    let wrapper: Vec<&str> = wrapper
        .iter()
        .copied()
        .chain(["taskset", "-c", "0"])
        .collect();
    let daemon = Daemon::start_wrapped(
        &wrapper,
        CAPMON,
        &state,
        port,
        &["--poll-interval-ms", "50"],
    );
    let skipped = r#"capmon_kernel_events_lost_total{reason="program_skipped"}"#;
    let unmatched = r#"capmon_kernel_events_lost_total{reason="kretprobe_unmatched"}"#;
    // The real-time task starts first: while its loader maps its libraries (at priority 50,
    // above the reader's 1) it may preempt a map syscall, and those mmaps' low-address checks
    // are skipped, as any higher real-time task's are (documented in kernel/map_reads.rs).
    // The counts are taken once it only sleeps and wakes.
    let mut sleeper = Command::new("chrt")
        .args(["-f", "50", "taskset", "-c", "0", STRESS, "sleeper", "17000"])
        .spawn()
        .expect("chrt (util-linux) and capmon-stress");
    std::thread::sleep(Duration::from_secs(2));
    let before = (sample(port, skipped), sample(port, unmatched));
    let programs_before = skipped_by_program();
    let file = std::env::temp_dir().join(format!("capmon-skip-{}", container_id()));
    fs::write(&file, b"x").expect("file");
    let calls = std::thread::scope(|s| {
        s.spawn(|| {
            let mut cpu0 = nix::sched::CpuSet::new();
            cpu0.set(0).expect("cpu 0");
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpu0)
                .expect("pin to CPU 0");
            let (mut calls, start) = (0u64, Instant::now());
            while start.elapsed() < Duration::from_secs(20) {
                for owner in [1, 0] {
                    let uid = Some(nix::unistd::Uid::from_raw(owner));
                    let gid = Some(nix::unistd::Gid::from_raw(owner));
                    nix::unistd::chown(&file, uid, gid).expect("chown");
                    calls += 1;
                }
            }
            calls
        })
        .join()
        .expect("checks")
    });
    let _ = fs::remove_file(&file);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    // Polls later the counters include every run of the loop.
    std::thread::sleep(Duration::from_secs(2));
    let after = (sample(port, skipped), sample(port, unmatched));
    let mut by_program = skipped_by_program();
    for (name, n) in &mut by_program {
        *n -= programs_before.get(name).copied().unwrap_or(0).min(*n);
    }
    by_program.retain(|_, n| *n > 0);
    let mode = common::get_json(port, "/healthz").1["probe_mode"].clone();
    drop(daemon);
    let _ = fs::remove_dir_all(&state);
    let delta = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
    Stress {
        calls,
        skipped: delta(after.0, before.0),
        unmatched: delta(after.1, before.1),
        by_program,
        mode,
    }
}

#[test]
#[ignore = "needs root and a kernel with BTF: run by `cargo xtask test`"]
fn capability_checks_on_the_cpu_that_reads_the_maps_are_not_skipped() {
    require_root_and_runc();
    let preemption = capmon::kernel::preemption::Preemption::of_running_kernel();
    if preemption == capmon::kernel::preemption::Preemption::Voluntary {
        common::skip(
            "this kernel does not preempt kernel code (voluntary preemption): a map syscall \
             cannot be preempted, so nothing here can skip a kprobe (run on 6.12-rt: \
             `cargo xtask vm --kernel 6.12-rt --mode kprobe`)",
        );
        return;
    }
    // A map-reading syscall raises its CPU's bpf_prog_active; a kprobe that fires on that CPU
    // before it is lowered again is skipped by the kernel (its program's recursion_misses, the
    // daemon's program_skipped, since Linux 6.7; a kretprobe run without its entry is
    // kretprobe_unmatched). Where the kernel preempts kernel code, that can be another task's:
    // this thread's, making capability checks as fast as it can (a chown to another owner and
    // back: CAP_CHOWN twice each) on the CPU of the daemon's map reads. There the daemon makes
    // its map syscalls at SCHED_FIFO; without CAP_SYS_NICE and RLIMIT_RTPRIO it cannot.
    let refused =
        checks_beside_the_map_reads(&["setpriv", "--bounding-set=-sys_nice", "--inh-caps=-all"]);
    eprintln!(
        "{}: normal priority (refused): {} chown calls, program_skipped +{:?} ({:?}), \
         kretprobe_unmatched +{:?}",
        refused.mode, refused.calls, refused.skipped, refused.by_program, refused.unmatched
    );
    let raised = checks_beside_the_map_reads(&[
        "prlimit",
        "--rtprio=1",
        "setpriv",
        "--bounding-set=-sys_nice",
        "--inh-caps=-all",
    ]);
    eprintln!(
        "{}: SCHED_FIFO where needed (RLIMIT_RTPRIO 1): {} chown calls, program_skipped +{:?} \
         ({:?}), kretprobe_unmatched +{:?}",
        raised.mode, raised.calls, raised.skipped, raised.by_program, raised.unmatched
    );
    // The stress itself is real: at the normal priority, the kprobe mode's checks are skipped
    // (the other modes' programs are not held off by map syscalls).
    assert!(
        refused.mode != "kprobe" || refused.capability_checks_skipped() > 0,
        "no capability check was skipped beside map reads at the normal priority: the stress \
         did not reach the window it is for"
    );
    assert_eq!(
        raised.capability_checks_skipped(),
        0,
        "capability checks skipped while the maps were read: {:?}",
        raised.by_program
    );
    assert_eq!(
        raised.unmatched.unwrap_or(0.0),
        0.0,
        "kretprobes without their entry"
    );
}
