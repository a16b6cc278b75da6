//! `capmon-bench` (run by `cargo xtask bench`, as root): the cost capmon's probes add to every
//! syscall, to every capability check and to every context switch, measured side by side in
//! one run against no probes, empty programs on the same hooks (the floor), and a reference
//! hash-map design.
//!
//! Each round runs every configuration once, in a rotating order, on one pinned CPU; the table
//! shows medians over the rounds. Then the daemon with 1,000 containers (`daemon.rs`) and a
//! one-shot storm with real runc and Docker Engine (`storm.rs`).
//! Last, the cost on a real workload: nginx under wrk (`nginx.rs`).
//! `CAPMON_BENCH_ONLY=probes|daemon|storm|modes|nginx` runs one part (`modes`: the probe modes side by
//! side, which the kernel matrix runs in its guests).

use aya::Btf;
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

mod daemon;
mod modes;
mod nginx;
mod probes;
mod storm;

use probes::*;

fn main() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
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
    match std::env::var("CAPMON_BENCH_ONLY").as_deref() {
        Ok("daemon") => return daemon::bench(),
        Ok("storm") => return storm::bench(),
        Ok("modes") => return modes::bench(),
        Ok("nginx") => return nginx::bench(),
        _ => {}
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
    daemon::bench()?;
    storm::bench()?;
    println!();
    nginx::bench()
}
