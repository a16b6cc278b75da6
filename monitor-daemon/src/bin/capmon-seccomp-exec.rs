//! `capmon-seccomp-exec PROFILE -- CMD [ARGS...]`: installs a Docker-format seccomp profile on
//! itself with real seccomp (no container runtime needed), then execs CMD.
//!
//! Supported: `defaultAction` ALLOW / ERRNO / KILL*, rules without `args`/`includes`/
//! `excludes` that all share one action. Anything else is refused with a clear error rather
//! than applied approximately. Syscall names unknown on this architecture are skipped (as
//! libseccomp does) with a note on stderr.

use std::{ffi::CString, process::ExitCode};

use capmon::record::filter::compile;
use capmon_core::seccomp::Profile;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some("--"), Some(_)) =
        (args.first(), args.get(1).map(String::as_str), args.get(2))
    else {
        eprintln!("usage: capmon-seccomp-exec PROFILE.json -- CMD [ARGS...]");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("capmon-seccomp-exec: cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let program = match Profile::from_json(&text)
        .map_err(|e| e.to_string())
        .and_then(|p| compile(&p))
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("capmon-seccomp-exec: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let argv: Vec<CString> = match args[2..].iter().map(|a| CString::new(a.as_str())).collect() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("capmon-seccomp-exec: argument with a NUL byte: {e}");
            return ExitCode::from(2);
        }
    };
    // Everything execvp needs is prepared before the filter is installed, so that nothing but
    // execve (and the PATH search's failed execve calls) runs under it.
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    if let Err(e) = seccompiler::apply_filter(&program) {
        eprintln!("capmon-seccomp-exec: cannot install the filter: {e}");
        return ExitCode::from(2);
    }
    // SAFETY: NUL-terminated strings and a NULL-terminated array that outlive the call.
    unsafe { libc::execvp(ptrs[0], ptrs.as_ptr()) };
    let err = std::io::Error::last_os_error();
    eprintln!("capmon-seccomp-exec: cannot execute {}: {err}", args[2]);
    ExitCode::from(127)
}
