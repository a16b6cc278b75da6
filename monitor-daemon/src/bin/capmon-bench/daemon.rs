//! The daemon with 1,000 containers (cgroups shaped like Kubernetes pods, each a small loop):
//! memory, CPU, scrape time, bursts of new containers, then the same number churned (one
//! replaced at a time) over 10 minutes: RSS, series, map fill and unattributed, sampled.

use std::{
    fs,
    io::{Read, Write},
    net::TcpStream,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use capmon::containers::cgroup::kill_and_remove;

/// Containers at steady state (override with CAPMON_BENCH_CONTAINERS).
const CONTAINERS: usize = 1000;
/// Seconds over which as many containers are churned (override with CAPMON_BENCH_CHURN_SECS;
/// 0 leaves the churn out).
const CHURN_SECS: u64 = 600;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The cgroup of container `id` in a pod of its own, as the kubelet's systemd driver names
/// them, under `base`.
fn pod_cgroup(base: &Path, round: usize, i: usize) -> PathBuf {
    let uid = format!("{:08x}_0000_4000_8000_{:012x}", round, i);
    base.join("kubepods.slice")
        .join("kubepods-besteffort.slice")
        .join(format!("kubepods-besteffort-pod{uid}.slice"))
        .join(format!("cri-containerd-{}.scope", id(round, i)))
}

/// The largest fill (entries / capacity) of the kernel maps, and the map's labels, from a
/// /metrics text.
fn map_fill(text: &str) -> (f64, String) {
    let values = |prefix: &str| -> Vec<(String, f64)> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|l| {
                let (labels, v) = l.rsplit_once(' ')?;
                Some((labels.to_owned(), v.parse().ok()?))
            })
            .collect()
    };
    let capacity = values("capmon_map_capacity");
    values("capmon_map_entries")
        .into_iter()
        .filter_map(|(labels, n)| {
            let (_, cap) = capacity.iter().find(|(l, _)| *l == labels)?;
            (*cap > 0.0).then(|| (n / cap, labels))
        })
        .fold((0.0, String::new()), |a, b| if b.0 > a.0 { b } else { a })
}

/// What a /metrics text counts as lost: the kernel side's losses (a full ring buffer or map)
/// and cgroups or lifecycle records the pipeline dropped. Superseded snapshots
/// (`stage="probe_to_model"`) lose nothing: the next one carries the same cumulative counts.
fn lost(text: &str) -> f64 {
    metric(text, "capmon_kernel_events_lost_total")
        + metric(
            text,
            "capmon_pipeline_dropped_total{stage=\"unattributed\"}",
        )
        + metric(text, "capmon_pipeline_dropped_total{stage=\"lifecycle\"}")
}

/// Series in a /metrics text (sample lines).
fn series(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// The loop each steady-state container runs: bash reads a file, then waits a second on
/// `fifo`, which nothing writes to, so every container makes syscalls between two polls
/// without starting a process. With `CAPMON_BENCH_FORK_LOOP=1`, the earlier loop: a shell
/// starting `cat` and `sleep` each second (1,000 of those, 2,000 forks and execs a second, kept
/// this 2-core machine at a load of about 370, and the figures measured its run queue).
fn loop_args(fifo: &Path, forking: bool) -> Vec<String> {
    let script = if forking {
        "while :; do cat /etc/hostname > /dev/null; sleep 1; done"
    } else {
        "exec 3<>\"$0\"; while :; do read -r x < /etc/hostname; read -r -t 1 -u 3 x; done"
    };
    ["/bin/bash", "-c", script]
        .into_iter()
        .map(String::from)
        .chain([fifo.display().to_string()])
        .collect()
}

pub(crate) fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

/// Sum of a metric's samples whose line starts with `prefix`.
pub(crate) fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn containers(port: u16) -> usize {
    get(port, "/v1/containers")
        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
        .and_then(|v| v["containers"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// A 64-hex id, unique per (round, i) in its first 12 characters too (the short id of the
/// API's listings and of the metrics' `container_id` label), as real ids almost always are.
fn id(round: usize, i: usize) -> String {
    format!("cab{:01x}{:08x}{:052x}", round % 16, i, 0)
}

/// Starts `args` inside the cgroup `dir` (created).
fn spawn_in(dir: &Path, args: &[&str]) -> anyhow::Result<Child> {
    fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let procs = std::ffi::CString::new(dir.join("cgroup.procs").to_string_lossy().as_bytes())?;
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls (prctl, open, write, close) between fork and
    // exec.
    unsafe {
        cmd.pre_exec(move || {
            // The benchmark's containers die with it, even when it is killed (they are
            // started from its main thread).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if n != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd.spawn()?)
}

pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after "(comm) ".
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn remove_tree(dir: &Path) {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        dirs.push(d);
    }
    // Children first; whatever still runs in them (a shell's last `sleep`) is killed.
    for d in dirs.iter().rev() {
        let _ = kill_and_remove(d);
    }
}

/// Stops what runs in the container cgroup `cg` and removes it and its pod's cgroup, as a
/// kubelet does (killed tasks take a moment to leave: see `kill_and_remove`).
fn remove_container(cg: &Path) {
    let _ = kill_and_remove(cg);
    if let Some(pod) = cg.parent() {
        let _ = fs::remove_dir(pod);
    }
}

/// Starts `capmon run` on `port` with its store in `state`, following the Docker Engine at
/// `docker_socket`; it gets SIGTERM (a clean stop) when the benchmark dies.
pub(crate) fn start(
    capmon: &Path,
    port: u16,
    state: &Path,
    docker_socket: &str,
) -> anyhow::Result<Child> {
    let mut daemon = Command::new(capmon);
    daemon
        .args([
            "run",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--state-dir",
        ])
        .arg(state)
        .args(["--docker-socket", docker_socket])
        .stdout(Stdio::null());
    // The daemon's log, when asked for (CAPMON_BENCH_DAEMON_LOG=FILE; CAPMON_LOG sets its
    // filter).
    match std::env::var_os("CAPMON_BENCH_DAEMON_LOG") {
        Some(path) => {
            daemon.stderr(fs::File::create(&path).with_context(|| format!("create {path:?}"))?)
        }
        None => daemon.stderr(Stdio::null()),
    };
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        daemon.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    daemon
        .spawn()
        .with_context(|| format!("starting {}", capmon.display()))
}

pub fn bench() -> anyhow::Result<()> {
    let capmon = std::env::current_exe()?.with_file_name("capmon");
    let mount = capmon::containers::cgroup::find_cgroup2_mount()?;
    // What a killed earlier run left (its processes died with it: see `spawn_in`).
    for entry in fs::read_dir(&mount)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("capmon-bench-")
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            remove_tree(&entry.path());
        }
    }
    let base = mount.join(format!("capmon-bench-{}", std::process::id()));
    let state = std::env::temp_dir().join(format!("capmon-bench-state-{}", std::process::id()));
    let _ = fs::remove_dir_all(&state);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let containers_n: usize = env_or("CAPMON_BENCH_CONTAINERS", CONTAINERS).max(1);
    let fifo = std::env::temp_dir().join(format!("capmon-bench-fifo-{}", std::process::id()));
    let _ = fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .with_context(|| format!("mkfifo {}", fifo.display()))?;
    let forking = env_or("CAPMON_BENCH_FORK_LOOP", 0) == 1;
    let owned = loop_args(&fifo, forking);
    let looping: Vec<&str> = owned.iter().map(String::as_str).collect();
    let mut kids: Vec<(PathBuf, Child)> = Vec::new();
    for i in 0..containers_n {
        let cg = pod_cgroup(&base, 0, i);
        kids.push((cg.clone(), spawn_in(&cg, &looping)?));
    }
    let mut daemon = start(&capmon, port, &state, "/nonexistent")?;
    let pid = daemon.id();
    let result = (|| -> anyhow::Result<()> {
        let t = Instant::now();
        while containers(port) < containers_n {
            if t.elapsed() > Duration::from_secs(120) {
                bail!("the daemon did not find {containers_n} containers within 120 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let found = t.elapsed();
        std::thread::sleep(Duration::from_secs(5));
        // SAFETY: sysconf takes no pointers.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let (c0, t0) = (cpu_ticks(pid), Instant::now());
        std::thread::sleep(Duration::from_secs(20));
        let cpu = (cpu_ticks(pid) - c0) as f64 / hz / t0.elapsed().as_secs_f64() * 100.0;
        let rss = rss_kib(pid);
        let mut scrapes = Vec::new();
        let mut size = 0;
        let (c1, t1) = (cpu_ticks(pid), Instant::now());
        for _ in 0..21 {
            let t = Instant::now();
            size = get(port, "/metrics").map(|b| b.len()).unwrap_or(0);
            scrapes.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        // The daemon's own CPU per scrape, beyond its steady rate: what a scrape costs,
        // whatever the machine's load makes its latency.
        let busy = (cpu_ticks(pid) - c1) as f64 / hz - cpu / 100.0 * t1.elapsed().as_secs_f64();
        let scrape_cpu_ms = (busy / 21.0 * 1000.0).max(0.0);
        scrapes.sort_by(f64::total_cmp);
        println!(
            "capmon run with {containers_n} containers (cgroups shaped like Kubernetes pods, systemd driver, one container each: {}; found within {:.1} s):\n",
            if forking {
                "a shell starting cat and sleep every second"
            } else {
                "bash reading a file and waiting a second, no process started"
            },
            found.as_secs_f64()
        );
        println!("| measure | value | target |\n| --- | --- | --- |");
        println!(
            "| daemon RSS | {:.1} MiB | <= 60 MiB |",
            rss as f64 / 1024.0
        );
        println!("| CPU at steady state (20 s) | {cpu:.2} % of one core | <= 3 % |");
        println!(
            "| /metrics scrape (median of 21; {} KiB) | {:.1} ms | <= 50 ms |",
            size / 1024,
            scrapes[scrapes.len() / 2]
        );
        println!("| /metrics scrape: the daemon's CPU per scrape | {scrape_cpu_ms:.1} ms | |");
        // Bursts of new containers: first sightings processed per second, and losses.
        println!(
            "\n| burst of new containers (started at once; each runs cat and ls) | first sightings processed | all in the model after | first sightings per second | lost (kernel, unattributed, lifecycle) |\n| --- | --- | --- | --- | --- |"
        );
        let mut known = containers_n;
        for (round, k) in [(1, 100), (2, 200), (3, 400)] {
            let before = get(port, "/metrics").unwrap_or_default();
            let processed0 = metric(&before, "capmon_events_processed_total");
            let lost0 = lost(&before);
            let t0 = Instant::now();
            let mut burst = Vec::new();
            for i in 0..k {
                burst.push(spawn_in(
                    &pod_cgroup(&base, round, i),
                    &[
                        "/bin/sh",
                        "-c",
                        "cat /etc/hostname > /dev/null; ls / > /dev/null",
                    ],
                )?);
            }
            for mut c in burst {
                let _ = c.wait();
            }
            // Until every burst container is in the daemon's model.
            let want = known + k;
            while containers(port) < want {
                if t0.elapsed() > Duration::from_secs(60) {
                    bail!("burst of {k}: not all containers seen within 60 s");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            known = want;
            let last_change = t0.elapsed();
            let after = get(port, "/metrics").unwrap_or_default();
            let last = metric(&after, "capmon_events_processed_total");
            let lost = lost(&after) - lost0;
            let n = last - processed0;
            println!(
                "| {k} at once | {n:.0} | {:.2} s | {:.0} | {lost:.0} |",
                last_change.as_secs_f64(),
                n / last_change.as_secs_f64()
            );
            // The exited burst containers go, as a kubelet removes them.
            for i in 0..k {
                remove_container(&pod_cgroup(&base, round, i));
            }
        }
        churn(&base, port, pid, &mut kids, &looping)
    })();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();
    for (_, mut k) in kids {
        let _ = k.kill();
        let _ = k.wait();
    }
    remove_tree(&base);
    let _ = fs::remove_dir_all(&state);
    let _ = fs::remove_file(&fifo);
    result
}

/// Replaces the steady-state containers one at a time (the oldest stopped and its cgroup
/// removed, a new one started) so that as many are churned over CAPMON_BENCH_CHURN_SECS, and
/// samples the daemon every tenth of it.
fn churn(
    base: &Path,
    port: u16,
    pid: u32,
    kids: &mut Vec<(PathBuf, Child)>,
    looping: &[&str],
) -> anyhow::Result<()> {
    let secs: u64 = env_or("CAPMON_BENCH_CHURN_SECS", CHURN_SECS);
    let n = kids.len();
    if secs == 0 || n == 0 {
        return Ok(());
    }
    let step = Duration::from_secs_f64(secs as f64 / n as f64);
    let sample = |t: Duration| {
        let text = get(port, "/metrics").unwrap_or_default();
        println!(
            "| {:.0} s | {:.1} MiB | {} | {:.1} % {} | {:.0} | {:.0} |",
            t.as_secs_f64(),
            rss_kib(pid) as f64 / 1024.0,
            series(&text),
            100.0 * map_fill(&text).0,
            map_fill(&text).1,
            metric(
                &text,
                "capmon_pipeline_dropped_total{stage=\"unattributed\"}"
            ),
            metric(&text, "capmon_kernel_events_lost_total"),
        );
    };
    println!(
        "\n{n} containers churned over {secs} s (one replaced every {:.2} s; each new one in a new pod):\n",
        step.as_secs_f64()
    );
    println!(
        "| time | daemon RSS | series in /metrics | largest map fill | unattributed | kernel losses |\n| --- | --- | --- | --- | --- | --- |"
    );
    let t0 = Instant::now();
    sample(Duration::ZERO);
    for i in 0..n {
        let (cg, mut child) = kids.remove(0);
        let _ = child.kill();
        let _ = child.wait();
        remove_container(&cg);
        let new = pod_cgroup(base, 9, i);
        kids.push((new.clone(), spawn_in(&new, looping)?));
        if (i + 1) % (n / 10).max(1) == 0 {
            sample(t0.elapsed());
        }
        let due = step * (i as u32 + 1);
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    Ok(())
}
