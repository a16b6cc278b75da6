//! The probe modes side by side (`CAPMON_BENCH_ONLY=modes`): what one capability check and one
//! syscall cost with capmon attached in each mode this kernel attaches (`tp_btf`, `fexit`,
//! `kprobe`), against no probes, every configuration once per round in a rotating order. The
//! kernel matrix runs it in its qemu guests, where only the ratios between modes mean
//! anything: TCG's time is not a real machine's.

use capmon::kernel::{loader::Probes, probe_table::ProbeMode};

use super::{
    CHECKS_PER_ROUND, SYSCALLS_PER_ROUND,
    probes::{check_loop, median, pin_to_last_cpu, syscall_loop},
};

/// Rounds unless `CAPMON_BENCH_ROUNDS` says otherwise (fewer than the probes half: under TCG a
/// round takes seconds).
const ROUNDS: usize = 7;

/// The best of three runs of `f` over `n / 3` calls each: ns per call.
fn best(f: fn(u64) -> f64, n: u64) -> f64 {
    (0..3).map(|_| f(n / 3)).fold(f64::INFINITY, f64::min)
}

/// ns per (syscall, capability check) with `probes` attached, or with none.
fn measure(probes: Option<&mut Probes>) -> anyhow::Result<(f64, f64)> {
    let attached = match probes {
        Some(p) => {
            p.attach_all()?;
            Some(p)
        }
        None => None,
    };
    syscall_loop(SYSCALLS_PER_ROUND / 10);
    check_loop(CHECKS_PER_ROUND / 10);
    let out = (
        best(syscall_loop, SYSCALLS_PER_ROUND),
        best(check_loop, CHECKS_PER_ROUND),
    );
    if let Some(p) = attached {
        p.detach_all()?;
    }
    Ok(out)
}

pub(crate) fn bench() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("CAPMON_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS)
        .max(1);
    let cpu = pin_to_last_cpu();
    let mut modes: Vec<(ProbeMode, Probes)> = Vec::new();
    for mode in [ProbeMode::Tracepoint, ProbeMode::Fexit, ProbeMode::Kprobe] {
        let loaded = Probes::load_mode(mode).and_then(|mut p| {
            // Loading proves little: a mode counts only when it attaches here.
            p.attach_all()?;
            p.detach_all()?;
            Ok(p)
        });
        match loaded {
            Ok(p) => modes.push((mode, p)),
            Err(e) => println!("mode {}: not measured: {e}", mode.name()),
        }
    }
    anyhow::ensure!(!modes.is_empty(), "no probe mode attaches on this kernel");
    // ns per call: index 0 without probes, then each mode.
    let n = modes.len() + 1;
    let mut syscall: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut check: Vec<Vec<f64>> = vec![Vec::new(); n];
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let probes = (i > 0).then(|| &mut modes[i - 1].1);
            let (s, c) = measure(probes)?;
            syscall[i].push(s);
            check[i].push(c);
        }
    }
    let s: Vec<f64> = syscall.into_iter().map(median).collect();
    let c: Vec<f64> = check.into_iter().map(median).collect();
    println!(
        "capmon-bench modes: {rounds} rounds, medians, pinned to CPU {cpu}; {SYSCALLS_PER_ROUND} \
         getppid() and {CHECKS_PER_ROUND} acct(NULL) (one CAP_SYS_PACCT check each) per round"
    );
    println!(
        "| added ns per call (no probes: getppid {:.0}, acct {:.0}) | getppid() | acct(NULL) |",
        s[0], c[0]
    );
    println!("| --- | --- | --- |");
    for (i, (mode, _)) in modes.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.0} |",
            mode.name(),
            s[i + 1] - s[0],
            c[i + 1] - c[0]
        );
    }
    let added = |m: ProbeMode| {
        modes
            .iter()
            .position(|(x, _)| *x == m)
            .map(|i| (s[i + 1] - s[0], c[i + 1] - c[0]))
    };
    if let (Some(fexit), Some(kprobe)) = (added(ProbeMode::Fexit), added(ProbeMode::Kprobe)) {
        println!(
            "fexit/kprobe added cost: syscall {:.2}, capability check {:.2}",
            fexit.0 / kprobe.0,
            fexit.1 / kprobe.1
        );
    }
    Ok(())
}
