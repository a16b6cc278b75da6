//! Starting the recorded command and its `--verify` re-runs: the child joins its cgroup before
//! it executes, and for a re-run also drops to a capability set (bounding, inheritable and
//! ambient sets lowered, so that the root-run program gets exactly that set at exec, as a
//! container runtime would give it) and installs a seccomp filter, last, so that only the
//! `execve` runs under the filter before the command does.

use std::{
    ffi::CString,
    io::{self, Read},
    os::unix::{ffi::OsStrExt, process::CommandExt},
    process::{Command, Stdio},
};

use capmon_core::report::verify::Digest;

use super::{cgroup::RecordCgroup, filter::BpfProgram};
use crate::containers::cgroup::CgroupError;

/// `_LINUX_CAPABILITY_VERSION_3`.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// What the child does before it executes.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// Keep only these capabilities (a bit per capability number); `None`: keep capmon's.
    pub caps: Option<u64>,
    /// Install this seccomp filter.
    pub filter: Option<BpfProgram>,
}

/// `std::process::Command` for `program args`, set up to join `cg` and apply `setup` in the
/// child before it executes. Errors name what could not be prepared.
pub fn command(
    cg: &RecordCgroup,
    program: &str,
    args: &[String],
    setup: Setup,
) -> Result<Command, CgroupError> {
    let procs =
        CString::new(cg.procs_file().as_os_str().as_bytes()).map_err(|_| CgroupError::Io {
            action: "NUL byte in path",
            path: cg.procs_file(),
            source: io::ErrorKind::InvalidInput.into(),
        })?;
    let last_cap = last_cap();
    let mut cmd = Command::new(program);
    cmd.args(args);
    let Setup { caps, filter } = setup;
    // SAFETY: the closure makes only async-signal-safe calls (open, write, close, prctl,
    // capget/capset) and does not allocate: everything it uses was prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            join(&procs)?;
            if let Some(keep) = caps {
                drop_to(keep, last_cap)?;
            }
            if let Some(program) = &filter {
                install(program)?;
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`; 40 when
/// it cannot be read, as on Linux 5.9 and later).
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is `procs`.
fn join(procs: &CString) -> io::Result<()> {
    // SAFETY: a NUL-terminated path; the fd is closed before returning.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = libc::write(fd, b"0".as_ptr().cast(), 1);
        let err = io::Error::last_os_error();
        libc::close(fd);
        if n != 1 { Err(err) } else { Ok(()) }
    }
}

/// Lowers the bounding set to `keep`, the inheritable set to `keep` and clears the ambient
/// set: a root process then executes its next program with exactly `keep` permitted and
/// effective. The effective set stays as it is until the exec (a seccomp filter can still be
/// installed with `CAP_SYS_ADMIN`).
fn drop_to(keep: u64, last_cap: u32) -> io::Result<()> {
    for cap in 0..=last_cap.min(63) {
        if keep & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a version-3 header and two data words, as the ABI wants.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        data[0].inheritable &= keep as u32;
        data[1].inheritable &= (keep >> 32) as u32;
        if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Installs `program` as the calling thread's seccomp filter (with `CAP_SYS_ADMIN`, no
/// `no_new_privs` needed, so the command's own privileges are as without a filter).
fn install(program: &BpfProgram) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: a sock_fprog pointing at the program, which outlives the call (the kernel copies
    // it).
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
            0,
            0,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The capability numbers of `names` (`CAP_CHOWN`, ...) as a bit set; an unknown name is an
/// error naming it.
pub fn cap_mask(names: &[String]) -> Result<u64, String> {
    names.iter().try_fold(
        0u64,
        |mask, name| match capmon_core::names::capability_number(name) {
            Some(n) if n < 64 => Ok(mask | 1 << n),
            _ => Err(format!("unknown capability {name}")),
        },
    )
}

/// Reads `stream` to its end into a digest, writing each chunk to `tee` as well when given.
pub fn digest(mut stream: impl Read, mut tee: Option<&mut dyn io::Write>) -> Digest {
    let mut d = Digest::default();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return d,
            Ok(n) => {
                d.update(&buf[..n]);
                if let Some(out) = tee.as_deref_mut() {
                    let _ = out.write_all(&buf[..n]).and_then(|()| out.flush());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return d,
        }
    }
}

/// Standard streams for a run whose output is compared: no input, output piped to capmon.
pub fn piped(cmd: &mut Command) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_masks_name_what_is_unknown() {
        let mask = cap_mask(&["CAP_CHOWN".into(), "CAP_FOWNER".into()]).expect("known");
        assert_eq!(mask, 1 | 1 << 3);
        assert_eq!(cap_mask(&[]), Ok(0));
        assert_eq!(
            cap_mask(&["CAP_FLY".into()]),
            Err("unknown capability CAP_FLY".into())
        );
    }

    #[test]
    fn digests_pass_everything_through() {
        let mut seen = Vec::new();
        let d = digest(&b"hello\nworld\n"[..], Some(&mut seen));
        assert_eq!(seen, b"hello\nworld\n");
        assert_eq!(d.bytes, 12);
        let mut again = Digest::default();
        again.update(b"hello\nworld\n");
        assert_eq!(d, again);
    }
}
