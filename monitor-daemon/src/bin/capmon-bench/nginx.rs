//! The cost on a real workload: nginx (Debian's `nginx-light`, one worker pinned to the first
//! CPU) serving a 4 KiB file over keep-alive to `wrk -t1 -c8` pinned to the second, side by
//! side in one run: no probes, the floor (empty programs on capmon's hooks), `capmon run` with
//! its defaults (the real daemon, started fresh each round), the reference hash-map design,
//! and `strace -f -c` attached to the worker. Rounds rotate the order; the table shows medians.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use aya::Btf;

use super::{
    daemon::{get, start},
    median,
    probes::{FLOOR, REFERENCE, load_bench, with_bench},
};

/// Seconds per measurement (override with CAPMON_BENCH_NGINX_SECS).
const SECS: u64 = 6;
/// Rounds (override with CAPMON_BENCH_NGINX_ROUNDS).
const ROUNDS: usize = 5;

#[derive(Clone, Copy)]
enum Setup {
    None,
    Floor,
    Capmon,
    Reference,
    Strace,
}

const ALL: [Setup; 5] = [
    Setup::None,
    Setup::Floor,
    Setup::Capmon,
    Setup::Reference,
    Setup::Strace,
];

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::None => "no probes",
            Setup::Floor => "empty programs (floor)",
            Setup::Capmon => "capmon run (defaults)",
            Setup::Reference => "reference hash maps",
            Setup::Strace => "strace -f -c (worker)",
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A program on PATH, or a clear error naming the package that has it.
fn which(program: &str, package: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .with_context(|| {
            format!("{program} not found: install Debian's {package} (`cargo xtask setup` does)")
        })
}

/// nginx serving `root/f` (4 KiB) on 127.0.0.1:`port`, master and worker pinned to CPU 0.
struct Nginx {
    master: Child,
    prefix: PathBuf,
}

impl Nginx {
    fn start(nginx: &Path, port: u16) -> anyhow::Result<Nginx> {
        let prefix =
            std::env::temp_dir().join(format!("capmon-bench-nginx-{}", std::process::id()));
        let _ = fs::remove_dir_all(&prefix);
        fs::create_dir_all(prefix.join("root"))?;
        fs::create_dir_all(prefix.join("logs"))?;
        fs::write(prefix.join("root/f"), vec![b'x'; 4096])?;
        let conf = format!(
            "daemon off; master_process on; worker_processes 1; pid {p}/nginx.pid;\n\
             error_log {p}/logs/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; keepalive_requests 100000000;\n\
               client_body_temp_path {p}/tmp; proxy_temp_path {p}/tmp;\n\
               fastcgi_temp_path {p}/tmp; uwsgi_temp_path {p}/tmp; scgi_temp_path {p}/tmp;\n\
               server {{ listen 127.0.0.1:{port}; root {p}/root; }} }}\n",
            p = prefix.display()
        );
        fs::write(prefix.join("nginx.conf"), conf)?;
        let master = Command::new("taskset")
            .args(["-c", "0"])
            .arg(nginx)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .arg("-p")
            .arg(&prefix)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nginx")?;
        let started = Instant::now();
        while get(port, "/f").is_none_or(|b| b.len() != 4096) {
            if started.elapsed() > Duration::from_secs(10) {
                bail!(
                    "nginx did not serve within 10 s (see {}/logs/error.log)",
                    prefix.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Nginx { master, prefix })
    }

    /// The worker's pid (the master's only child).
    fn worker(&self) -> anyhow::Result<u32> {
        let children =
            fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.master.id()))?;
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .context("nginx has no worker")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.master.kill();
        let _ = self.master.wait();
        // The worker follows its master out (nginx workers exit when the master dies).
        let _ = fs::remove_dir_all(&self.prefix);
    }
}

/// `wrk -t1 -c8` pinned to CPU 1 for `secs`: requests per second.
fn wrk(port: u16, secs: u64) -> anyhow::Result<f64> {
    let out = Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1", "-c8"])
        .arg(format!("-d{secs}s"))
        .arg(format!("http://127.0.0.1:{port}/f"))
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output: {text}"))
}

/// One measurement under `setup`.
fn measure(
    setup: Setup,
    loaded: &mut (aya::Ebpf, aya::Ebpf),
    nginx: &Nginx,
    port: u16,
    secs: u64,
) -> anyhow::Result<f64> {
    match setup {
        Setup::None => wrk(port, secs),
        Setup::Floor => with_bench(&mut loaded.0, FLOOR, || wrk(port, secs))?,
        Setup::Reference => with_bench(&mut loaded.1, REFERENCE, || wrk(port, secs))?,
        Setup::Capmon => {
            let capmon = std::env::current_exe()?.with_file_name("capmon");
            let api = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let state = nginx.prefix.join(format!("state-{api}"));
            let mut daemon = start(&capmon, api, &state, "/nonexistent")?;
            let started = Instant::now();
            while get(api, "/healthz").is_none() {
                if started.elapsed() > Duration::from_secs(30) {
                    let _ = daemon.kill();
                    bail!("capmon run did not answer /healthz within 30 s");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let rps = wrk(port, secs);
            // SAFETY: signalling our own child.
            unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
            let _ = daemon.wait();
            let _ = fs::remove_dir_all(&state);
            rps
        }
        Setup::Strace => {
            let mut strace = Command::new("strace")
                .args(["-f", "-c", "-o", "/dev/null", "-p"])
                .arg(nginx.worker()?.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting strace")?;
            // Attached once it stops the worker; give it a moment.
            std::thread::sleep(Duration::from_millis(500));
            let rps = wrk(port, secs);
            // SAFETY: signalling our own child; SIGINT makes strace detach.
            unsafe { libc::kill(strace.id() as i32, libc::SIGINT) };
            let _ = strace.wait();
            rps
        }
    }
}

pub fn bench() -> anyhow::Result<()> {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        println!("nginx benchmark: skipped (needs two CPUs: nginx on one, wrk on the other)");
        return Ok(());
    }
    let nginx_bin = which("nginx", "nginx-light")?;
    which("wrk", "wrk")?;
    which("strace", "strace")?;
    let (secs, rounds) = (
        env_or("CAPMON_BENCH_NGINX_SECS", SECS),
        env_or("CAPMON_BENCH_NGINX_ROUNDS", ROUNDS).max(1),
    );
    let btf = Btf::from_sys_fs()?;
    let mut loaded = (load_bench(&btf, FLOOR)?, load_bench(&btf, REFERENCE)?);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let nginx = Nginx::start(&nginx_bin, port)?;
    // Warm-up.
    wrk(port, 2)?;
    let mut rps: Vec<Vec<f64>> = vec![Vec::new(); ALL.len()];
    for round in 0..rounds {
        for k in 0..ALL.len() {
            let i = (round + k) % ALL.len();
            rps[i].push(measure(ALL[i], &mut loaded, &nginx, port, secs)?);
        }
        if std::env::var_os("CAPMON_BENCH_VERBOSE").is_some() {
            let last: Vec<f64> = rps.iter().map(|v| v[v.len() - 1]).collect();
            eprintln!("nginx round {round}: req/s {last:.0?}");
        }
    }
    let med: Vec<f64> = rps.into_iter().map(median).collect();
    let loss = |i: usize| 1.0 - med[i] / med[0];
    println!(
        "nginx (one worker on CPU 0, a 4 KiB file over keep-alive) and wrk -t1 -c8 (CPU 1): {rounds} rounds of {secs} s, rotating order, medians\n"
    );
    println!("| setup | req/s | loss |");
    println!("| --- | --- | --- |");
    for (i, setup) in ALL.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.1} % |",
            setup.name(),
            med[i],
            100.0 * loss(i)
        );
    }
    println!(
        "\ncapmon's loss / the floor's = {:.2} (target <= 1.3); capmon's loss / the reference's = {:.2} (target <= 0.3)",
        loss(2) / loss(1),
        loss(2) / loss(3)
    );
    Ok(())
}
