//! `capmon-stress acct PER_THREAD THREADS [--refused]`: a capability-check storm for the tests.
//! Each thread calls `acct(NULL)` PER_THREAD times: one `CAP_SYS_PACCT` check per call, granted
//! to root (accounting stays off). With `--refused`, each thread first drops to uid 65534 (for
//! itself only, with the raw syscall), so every check is refused and every call fails EPERM.
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some("acct"), Some(Ok(n)), Some(Ok(threads))) = (
        args.first().map(String::as_str),
        args.get(1).map(|s| s.parse::<u64>()),
        args.get(2).map(|s| s.parse::<u64>()),
    ) else {
        eprintln!("usage: capmon-stress acct PER_THREAD THREADS [--refused]");
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
