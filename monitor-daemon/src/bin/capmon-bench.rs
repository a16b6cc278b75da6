//! `capmon-bench` (run by `cargo xtask bench`, as root): the cost capmon's probes add to every
//! syscall, to every capability check and to every context switch, measured side by side in
//! one run against no probes, empty programs on the same hooks (the floor), and a reference
//! hash-map design.
//!
//! Each round runs every configuration once, in a rotating order, on one pinned CPU; the table
//! shows medians over the rounds.

use aya::{Btf, Ebpf, EbpfLoader, programs::BtfTracePoint};
use capmon::kernel::loader::Probes;

static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench"));

/// Rounds (override with CAPMON_BENCH_ROUNDS).
const ROUNDS: usize = 61;
const SYSCALLS_PER_ROUND: u64 = 300_000;
const CHECKS_PER_ROUND: u64 = 90_000;
const PING_PONGS_PER_ROUND: u64 = 6_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Config {
    None,
    Floor,
    Capmon,
    Reference,
}

impl Config {
    const ALL: [Config; 4] = [
        Config::None,
        Config::Floor,
        Config::Capmon,
        Config::Reference,
    ];
    fn name(self) -> &'static str {
        match self {
            Config::None => "no probes",
            Config::Floor => "empty programs (floor)",
            Config::Capmon => "capmon",
            Config::Reference => "reference hash maps",
        }
    }
}

/// Everything loaded once (the verifier is slow); a measurement only attaches one
/// configuration's links, so configurations can alternate quickly.
struct Loaded {
    floor: Ebpf,
    reference: Ebpf,
    capmon: Probes,
}

const FLOOR: &[(&str, &str)] = &[
    ("floor_enter", "sys_enter"),
    ("floor_exit", "sys_exit"),
    ("floor_cap", "cap_capable"),
    ("floor_switch", "sched_switch"),
];
const REFERENCE: &[(&str, &str)] = &[
    ("ref_enter", "sys_enter"),
    ("ref_exit", "sys_exit"),
    ("ref_cap", "cap_capable"),
];

fn load_bench(btf: &Btf, programs: &[(&str, &str)]) -> anyhow::Result<Ebpf> {
    let mut ebpf = EbpfLoader::new().btf(Some(btf)).load(BENCH_OBJECT)?;
    for &(name, hook) in programs {
        let prog: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow::anyhow!("no program {name}"))?
            .try_into()?;
        prog.load(hook, btf)?;
    }
    Ok(ebpf)
}

/// Attaches `programs` of `ebpf`, runs `f`, detaches.
fn with_bench<T>(
    ebpf: &mut Ebpf,
    programs: &[(&str, &str)],
    f: impl FnOnce() -> T,
) -> anyhow::Result<T> {
    let mut links = Vec::new();
    for &(name, _) in programs {
        let prog: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow::anyhow!("no program {name}"))?
            .try_into()?;
        links.push((name, prog.attach()?));
    }
    let out = f();
    for (name, link) in links {
        let prog: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow::anyhow!("no program {name}"))?
            .try_into()?;
        prog.detach(link)?;
    }
    Ok(out)
}

fn measure<T>(config: Config, loaded: &mut Loaded, f: impl FnOnce() -> T) -> anyhow::Result<T> {
    Ok(match config {
        Config::None => f(),
        Config::Floor => with_bench(&mut loaded.floor, FLOOR, f)?,
        Config::Reference => with_bench(&mut loaded.reference, REFERENCE, f)?,
        Config::Capmon => {
            loaded.capmon.attach_all()?;
            let out = f();
            loaded.capmon.detach_all()?;
            out
        }
    })
}

/// Thread CPU time in ns (excludes time the thread was not running).
fn cpu_ns() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

/// ns per `getppid()`.
fn syscall_loop(n: u64) -> f64 {
    let start = cpu_ns();
    for _ in 0..n {
        // SAFETY: no arguments, no side effects.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    (cpu_ns() - start) / n as f64
}

/// ns per `acct(NULL)`: one `CAP_SYS_PACCT` check each (granted to root; accounting stays off).
fn check_loop(n: u64) -> f64 {
    let start = cpu_ns();
    for _ in 0..n {
        // SAFETY: acct(NULL) only turns process accounting off, which it already is.
        unsafe { libc::syscall(libc::SYS_acct, std::ptr::null::<libc::c_char>()) };
    }
    (cpu_ns() - start) / n as f64
}

/// ns per round trip of one byte between this thread and a helper thread on the same CPU over
/// two pipes: two context switches, two writes and two reads (each thread blocks in `read`, so
/// every switch happens inside a syscall). Wall-clock time: both threads' work counts.
fn ping_pong_loop(n: u64) -> f64 {
    let mut a = [0i32; 2];
    let mut b = [0i32; 2];
    // SAFETY: valid arrays of two descriptors.
    unsafe {
        assert_eq!(libc::pipe(a.as_mut_ptr()), 0, "pipe");
        assert_eq!(libc::pipe(b.as_mut_ptr()), 0, "pipe");
    }
    let (to_peer, from_me, to_me, from_peer) = (a[1], a[0], b[1], b[0]);
    let peer = std::thread::spawn(move || {
        // The caller pinned itself; a new thread inherits that affinity: same CPU.
        let mut byte = 0u8;
        // SAFETY: one-byte reads and writes into a valid byte; ends at EOF.
        while unsafe { libc::read(from_me, (&raw mut byte).cast(), 1) } == 1 {
            unsafe { libc::write(to_me, (&raw const byte).cast(), 1) };
        }
    });
    let mut byte = 1u8;
    let start = std::time::Instant::now();
    for _ in 0..n {
        // SAFETY: as above.
        unsafe {
            libc::write(to_peer, (&raw const byte).cast(), 1);
            libc::read(from_peer, (&raw mut byte).cast(), 1);
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    // SAFETY: closing our own descriptors; the peer sees EOF and ends.
    unsafe { libc::close(to_peer) };
    let _ = peer.join();
    // SAFETY: as above.
    unsafe {
        libc::close(from_me);
        libc::close(to_me);
        libc::close(from_peer);
    }
    ns
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pin_to_last_cpu() -> usize {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cpu = cpus - 1;
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET on an index below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
    cpu
}

/// (name, runs, total ns) of every loaded program, from the kernel's BPF statistics.
fn program_stats() -> std::collections::HashMap<(u32, String), (u64, u64)> {
    aya::programs::loaded_programs()
        .flatten()
        .map(|p| {
            let name = p.name_as_str().unwrap_or("?").to_owned();
            (
                (p.id(), name),
                (p.run_count(), p.run_time().as_nanos() as u64),
            )
        })
        .collect()
}

/// `CAPMON_BENCH_PROGSTATS=1`: the run time of each program under the same workloads, from
/// `kernel.bpf_stats_enabled` (which adds its own two clock reads to every run: compare with
/// the empty programs).
fn progstats(loaded: &mut Loaded) -> anyhow::Result<()> {
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1")?;
    let before = program_stats();
    for config in [Config::Floor, Config::Capmon, Config::Reference] {
        measure(config, loaded, || {
            syscall_loop(SYSCALLS_PER_ROUND * 3);
            check_loop(CHECKS_PER_ROUND * 3);
            ping_pong_loop(PING_PONGS_PER_ROUND * 3);
        })?;
    }
    let after = program_stats();
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0")?;
    let mut rows: Vec<(String, u64, f64)> = after
        .iter()
        .filter_map(|(k, (c, t))| {
            let (c0, t0) = before.get(k).copied().unwrap_or((0, 0));
            (c > &c0).then(|| (k.1.clone(), c - c0, (t - t0) as f64 / (c - c0) as f64))
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    println!(
        "| program | runs | ns per run (with the statistics' overhead) |\n| --- | --- | --- |"
    );
    for (name, runs, ns) in rows {
        println!("| {name} | {runs} | {ns:.0} |");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // SAFETY: trivial syscall.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!(
            "capmon-bench loads eBPF programs and needs root: run `cargo xtask bench` as root"
        );
    }
    // SAFETY: acct(NULL) as root with accounting off returns 0; anything else means the
    // capability-check workload would not check a capability.
    if unsafe { libc::syscall(libc::SYS_acct, std::ptr::null::<libc::c_char>()) } != 0 {
        anyhow::bail!(
            "acct(NULL) failed ({}): the capability-check storm needs CONFIG_BSD_PROCESS_ACCT",
            std::io::Error::last_os_error()
        );
    }
    if std::env::var("CAPMON_BENCH_ONLY").as_deref() == Ok("daemon") {
        return daemon::bench();
    }
    let rounds: usize = std::env::var("CAPMON_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS)
        .max(1);
    let cpu = pin_to_last_cpu();
    let btf = Btf::from_sys_fs()?;
    let mut loaded = Loaded {
        floor: load_bench(&btf, FLOOR)?,
        reference: load_bench(&btf, REFERENCE)?,
        capmon: Probes::load()?,
    };
    let mut syscall_ns: Vec<Vec<f64>> = vec![Vec::new(); 4];
    let mut check_ns: Vec<Vec<f64>> = vec![Vec::new(); 4];
    let mut switch_ns: Vec<Vec<f64>> = vec![Vec::new(); 4];
    if std::env::var_os("CAPMON_BENCH_PROGSTATS").is_some() {
        return progstats(&mut loaded);
    }
    // Warm-up.
    syscall_loop(SYSCALLS_PER_ROUND / 4);
    check_loop(CHECKS_PER_ROUND / 4);
    ping_pong_loop(PING_PONGS_PER_ROUND / 4);
    // Per round, every configuration runs back to back (rotating order); each measurement is
    // the best of three short runs, which filters out preemption by the rest of the machine.
    let best = |f: fn(u64) -> f64, n: u64| (0..3).map(|_| f(n / 3)).fold(f64::INFINITY, f64::min);
    let mut ratios: Vec<[f64; 6]> = Vec::new();
    for round in 0..rounds {
        let mut s_round = [0.0; 4];
        let mut c_round = [0.0; 4];
        let mut p_round = [0.0; 4];
        for k in 0..4 {
            let i = (round + k) % 4;
            (s_round[i], c_round[i], p_round[i]) = measure(Config::ALL[i], &mut loaded, || {
                // Warm up (caches, the task's storage) before measuring.
                syscall_loop(SYSCALLS_PER_ROUND / 10);
                check_loop(CHECKS_PER_ROUND / 10);
                (
                    best(syscall_loop, SYSCALLS_PER_ROUND),
                    best(check_loop, CHECKS_PER_ROUND),
                    best(ping_pong_loop, PING_PONGS_PER_ROUND),
                )
            })?;
            syscall_ns[i].push(s_round[i]);
            check_ns[i].push(c_round[i]);
            switch_ns[i].push(p_round[i]);
        }
        if std::env::var_os("CAPMON_BENCH_VERBOSE").is_some() {
            eprintln!(
                "round {round}: getppid {s_round:.0?} acct {c_round:.0?} ping-pong {p_round:.0?}"
            );
        }
        let added = |v: &[f64; 4], i: usize| v[i] - v[0];
        ratios.push([
            added(&s_round, 2) / added(&s_round, 1),
            added(&s_round, 2) / added(&s_round, 3),
            added(&c_round, 2) / added(&c_round, 1),
            added(&c_round, 2) / added(&c_round, 3),
            added(&p_round, 2) / added(&p_round, 1),
            added(&p_round, 2) / added(&p_round, 3),
        ]);
    }
    let s: Vec<f64> = syscall_ns.into_iter().map(median).collect();
    let c: Vec<f64> = check_ns.into_iter().map(median).collect();
    let p: Vec<f64> = switch_ns.into_iter().map(median).collect();
    println!(
        "capmon-bench: {rounds} rounds, medians, pinned to CPU {cpu}; {SYSCALLS_PER_ROUND} getppid(), {CHECKS_PER_ROUND} acct(NULL) (one CAP_SYS_PACCT check each) and {PING_PONGS_PER_ROUND} pipe round trips between two threads on that CPU per round\n"
    );
    println!(
        "| ns per call | {} | {} | {} | {} |",
        Config::ALL[0].name(),
        Config::ALL[1].name(),
        Config::ALL[2].name(),
        Config::ALL[3].name()
    );
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| getppid() (sys_enter + sys_exit) | {:.0} | {:.0} | {:.0} | {:.0} |",
        s[0], s[1], s[2], s[3]
    );
    println!(
        "| acct(NULL) (+ cap_capable) | {:.0} | {:.0} | {:.0} | {:.0} |",
        c[0], c[1], c[2], c[3]
    );
    println!(
        "| pipe round trip (2 context switches + 4 syscalls; + sched_switch) | {:.0} | {:.0} | {:.0} | {:.0} |",
        p[0], p[1], p[2], p[3]
    );
    println!();
    let r = |j: usize| median(ratios.iter().map(|r| r[j]).collect());
    for (label, v, j) in [("syscall", &s, 0), ("capability check", &c, 2)] {
        println!(
            "{label}: added ns (medians): floor {:.0}, capmon {:.0}, reference {:.0}; per-round ratios (median): capmon/floor = {:.2} (target <= 1.5), capmon/reference = {:.2} (target <= 0.4)",
            v[1] - v[0],
            v[2] - v[0],
            v[3] - v[0],
            r(j),
            r(j + 1)
        );
    }
    println!(
        "context switches: added ns per round trip (medians): floor {:.0}, capmon {:.0}, reference {:.0}; per-round ratios (median): capmon/floor = {:.2}, capmon/reference = {:.2} (no target; the price of the per-CPU syscall state)",
        p[1] - p[0],
        p[2] - p[0],
        p[3] - p[0],
        r(4),
        r(5)
    );
    drop(loaded);
    if std::env::var("CAPMON_BENCH_ONLY").as_deref() == Ok("probes") {
        return Ok(());
    }
    println!();
    daemon::bench()
}

/// The daemon with 200 containers: memory, CPU, scrape time, and bursts of new containers.
mod daemon {
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

    fn get(port: u16, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
    }

    /// Sum of a metric's samples whose line starts with `prefix`.
    fn metric(text: &str, prefix: &str) -> f64 {
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

    fn cpu_ticks(pid: u32) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
        let f: Vec<u64> = after
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after "(comm) ".
        f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
    }

    fn rss_kib(pid: u32) -> u64 {
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
        let mut daemon = Command::new(&capmon);
        daemon
            .args([
                "run",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--state-dir",
            ])
            .arg(&state)
            .args(["--docker-socket", "/nonexistent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe. The daemon gets SIGTERM (a clean stop) when the
        // benchmark dies.
        unsafe {
            daemon.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut daemon = daemon
            .spawn()
            .with_context(|| format!("starting {}", capmon.display()))?;
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
        // SAFETY: signals our own child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let _ = daemon.wait();
        for mut k in kids {
            let _ = k.kill();
            let _ = k.wait();
        }
        remove_tree(&base);
        let _ = fs::remove_dir_all(&state);
        result
    }
}
