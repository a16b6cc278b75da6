//! The probes half: loading the floor and reference programs, attaching one configuration at a
//! time, and the loops that are timed (syscalls, capability checks, ping-pong switches).

use aya::{Btf, Ebpf, EbpfLoader, programs::BtfTracePoint};

use capmon::kernel::loader::Probes;

use super::{BENCH_OBJECT, CHECKS_PER_ROUND, Config, PING_PONGS_PER_ROUND, SYSCALLS_PER_ROUND};

/// Everything loaded once (the verifier is slow); a measurement only attaches one
/// configuration's links, so configurations can alternate quickly.
pub(crate) struct Loaded {
    pub(crate) floor: Ebpf,
    pub(crate) reference: Ebpf,
    pub(crate) capmon: Probes,
}

pub(crate) const FLOOR: &[(&str, &str)] = &[
    ("floor_enter", "sys_enter"),
    ("floor_exit", "sys_exit"),
    ("floor_cap", "cap_capable"),
    ("floor_switch", "sched_switch"),
];
pub(crate) const REFERENCE: &[(&str, &str)] = &[
    ("ref_enter", "sys_enter"),
    ("ref_exit", "sys_exit"),
    ("ref_cap", "cap_capable"),
];

pub(crate) fn load_bench(btf: &Btf, programs: &[(&str, &str)]) -> anyhow::Result<Ebpf> {
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
pub(crate) fn with_bench<T>(
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

pub(crate) fn measure<T>(
    config: Config,
    loaded: &mut Loaded,
    f: impl FnOnce() -> T,
) -> anyhow::Result<T> {
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
pub(crate) fn cpu_ns() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

/// ns per `getppid()`.
pub(crate) fn syscall_loop(n: u64) -> f64 {
    let start = cpu_ns();
    for _ in 0..n {
        // SAFETY: no arguments, no side effects.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    (cpu_ns() - start) / n as f64
}

/// ns per `acct(NULL)`: one `CAP_SYS_PACCT` check each (granted to root; accounting stays off).
pub(crate) fn check_loop(n: u64) -> f64 {
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
pub(crate) fn ping_pong_loop(n: u64) -> f64 {
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
            // SAFETY: as above.
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

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) fn pin_to_last_cpu() -> usize {
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
pub(crate) fn program_stats() -> std::collections::HashMap<(u32, String), (u64, u64)> {
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
pub(crate) fn progstats(loaded: &mut Loaded) -> anyhow::Result<()> {
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
