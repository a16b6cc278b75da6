//! `capmon-stress acct PER_THREAD THREADS [--refused]`: a capability-check storm for the tests.
//! Each thread calls `acct(NULL)` PER_THREAD times: one `CAP_SYS_PACCT` check per call, granted
//! to root (accounting stays off). With `--refused`, each thread first drops to uid 65534 (for
//! itself only, with the raw syscall), so every check is refused and every call fails EPERM.
//!
//! `capmon-stress switch N`: N times, a `futex` wait that blocks (a context switch inside the
//! syscall) and fails with `ETIMEDOUT` after 1 ms, then one `getppid()`, which the caller's
//! seccomp profile is expected to refuse with `EPERM` (so the first syscall after each switch
//! is one that never reaches `sys_enter`).
//!
//! `capmon-stress mmap-low [--refused]`: one anonymous mmap at address 4096, below
//! `vm.mmap_min_addr` (`cap_mmap_addr` checks `CAP_SYS_RAWIO`): mapped, then unmapped. With
//! `--refused`, `CAP_SYS_RAWIO` is first dropped from the effective set, and the mmap must fail
//! with `EPERM`.
//!
//! `capmon-stress sleeper N`: N times, a 1 ms `clock_nanosleep` then a `getppid()`: run at a
//! real-time priority on the CPU of a busy task, it preempts that task N times, in the
//! middle of its syscalls.
//!
//! Exits 1 if any call did not behave as expected.

use std::process::ExitCode;

fn worker(n: u64, refused: bool) -> bool {
    if refused {
        // SAFETY: raw setresuid changes only this thread's credentials.
        if unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) } != 0 {
            return false;
        }
    }
    let mut ok = true;
    for _ in 0..n {
        // SAFETY: acct(NULL) turns accounting off (it is off) or fails with EPERM.
        let r = unsafe { libc::syscall(libc::SYS_acct, std::ptr::null::<libc::c_char>()) };
        let expected = if refused {
            r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        } else {
            r == 0
        };
        ok &= expected;
    }
    ok
}

/// The `switch` workload; true when every call behaved as expected.
fn switch(n: u64) -> bool {
    let word: u32 = 0;
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000,
    };
    let errno = || std::io::Error::last_os_error().raw_os_error();
    let mut ok = true;
    for _ in 0..n {
        // SAFETY: a private futex wait on a valid word holding the expected value, with a
        // valid relative timeout: it sleeps until the timeout.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                &raw const word,
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                0u32,
                &raw const timeout,
            )
        };
        ok &= r == -1 && errno() == Some(libc::ETIMEDOUT);
        // SAFETY: no arguments, no side effects.
        let r = unsafe { libc::syscall(libc::SYS_getppid) };
        ok &= r == -1 && errno() == Some(libc::EPERM);
    }
    ok
}

/// The `mmap-low` workload; true when the mmap behaved as expected.
fn mmap_low(refused: bool) -> bool {
    if refused
        && caps::drop(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_SYS_RAWIO,
        )
        .is_err()
    {
        return false;
    }
    let addr = 4096usize;
    // SAFETY: an anonymous private mapping at a fixed address that must not replace anything
    // (MAP_FIXED_NOREPLACE); unmapped at once when it succeeds.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            4096,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return refused && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    }
    // SAFETY: the mapping made just above.
    unsafe { libc::munmap(p, 4096) };
    !refused && p as usize == addr
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let (Some("sleeper"), Some(Ok(n))) = (
        args.first().map(String::as_str),
        args.get(1).map(|s| s.parse::<u64>()),
    ) {
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        for _ in 0..n {
            // SAFETY: a relative sleep with a valid timespec and no remainder wanted.
            unsafe {
                libc::clock_nanosleep(
                    libc::CLOCK_MONOTONIC,
                    0,
                    &raw const pause,
                    std::ptr::null_mut(),
                )
            };
            // SAFETY: no arguments, no side effects.
            unsafe { libc::syscall(libc::SYS_getppid) };
        }
        return ExitCode::SUCCESS;
    }
    if args.first().map(String::as_str) == Some("mmap-low") {
        let refused = args.get(1).is_some_and(|a| a == "--refused");
        return if mmap_low(refused) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    if let (Some("switch"), Some(Ok(n))) = (
        args.first().map(String::as_str),
        args.get(1).map(|s| s.parse::<u64>()),
    ) {
        return if switch(n) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    let (Some("acct"), Some(Ok(n)), Some(Ok(threads))) = (
        args.first().map(String::as_str),
        args.get(1).map(|s| s.parse::<u64>()),
        args.get(2).map(|s| s.parse::<u64>()),
    ) else {
        eprintln!(
            "usage: capmon-stress acct PER_THREAD THREADS [--refused] | switch N | mmap-low [--refused] | sleeper N"
        );
        return ExitCode::from(2);
    };
    let refused = args.get(3).is_some_and(|a| a == "--refused");
    let handles: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || worker(n, refused)))
        .collect();
    let ok = handles.into_iter().all(|h| h.join().unwrap_or(false));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
