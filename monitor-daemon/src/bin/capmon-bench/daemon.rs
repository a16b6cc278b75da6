//! The daemon with 200 containers: memory, CPU, scrape time, and bursts of new containers.

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

const CONTAINERS: usize = 200;

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

/// A 64-hex id, unique per (round, i).
fn id(round: usize, i: usize) -> String {
    format!("{:016x}{:048x}", 0xcab0_0000_0000_0000u64 | round as u64, i)
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
    // Whatever still runs in them (a shell's last `sleep`) goes first.
    for d in &dirs {
        let _ = fs::write(d.join("cgroup.kill"), "1");
    }
    std::thread::sleep(Duration::from_millis(200));
    for d in dirs.iter().rev() {
        let _ = fs::remove_dir(d);
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
    let mut kids: Vec<Child> = Vec::new();
    for i in 0..CONTAINERS {
        kids.push(spawn_in(
            &base.join("docker").join(id(0, i)),
            &[
                "/bin/sh",
                "-c",
                "while :; do cat /etc/hostname > /dev/null; sleep 1; done",
            ],
        )?);
    }
    let mut daemon = start(&capmon, port, &state, "/nonexistent")?;
    let pid = daemon.id();
    let result = (|| -> anyhow::Result<()> {
        let t = Instant::now();
        while containers(port) < CONTAINERS {
            if t.elapsed() > Duration::from_secs(60) {
                bail!("the daemon did not find {CONTAINERS} containers within 60 s");
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
        for _ in 0..21 {
            let t = Instant::now();
            size = get(port, "/metrics").map(|b| b.len()).unwrap_or(0);
            scrapes.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        scrapes.sort_by(f64::total_cmp);
        println!(
            "capmon run with {CONTAINERS} containers (cgroups shaped like Docker's, each a shell looping over cat and sleep; found within {:.1} s):\n",
            found.as_secs_f64()
        );
        println!("| measure | value | target |\n| --- | --- | --- |");
        println!(
            "| daemon RSS | {:.1} MiB | <= 40 MiB |",
            rss as f64 / 1024.0
        );
        println!("| CPU at steady state (20 s) | {cpu:.2} % of one core | <= 2 % |");
        println!(
            "| /metrics scrape (median of 21; {} KiB) | {:.1} ms | |",
            size / 1024,
            scrapes[scrapes.len() / 2]
        );
        // Bursts of new containers: first sightings processed per second, and losses.
        println!(
            "\n| burst of new containers (started at once; each runs cat and ls) | first sightings processed | all in the model after | first sightings per second | lost (kernel + pipeline) |\n| --- | --- | --- | --- | --- |"
        );
        let mut known = CONTAINERS;
        for (round, k) in [(1, 100), (2, 200), (3, 400)] {
            let before = get(port, "/metrics").unwrap_or_default();
            let processed0 = metric(&before, "capmon_events_processed_total");
            let lost0 = metric(&before, "capmon_kernel_events_lost_total")
                + metric(
                    &before,
                    "capmon_pipeline_dropped_total{stage=\"probe_to_model\"}",
                );
            let t0 = Instant::now();
            let mut burst = Vec::new();
            for i in 0..k {
                burst.push(spawn_in(
                    &base.join("docker").join(id(round, i)),
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
            let lost = metric(&after, "capmon_kernel_events_lost_total")
                + metric(
                    &after,
                    "capmon_pipeline_dropped_total{stage=\"probe_to_model\"}",
                )
                - lost0;
            let n = last - processed0;
            println!(
                "| {k} at once | {n:.0} | {:.2} s | {:.0} | {lost:.0} |",
                last_change.as_secs_f64(),
                n / last_change.as_secs_f64()
            );
        }
        Ok(())
    })();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();
    for mut k in kids {
        let _ = k.kill();
        let _ = k.wait();
    }
    remove_tree(&base);
    let _ = fs::remove_dir_all(&state);
    result
}
