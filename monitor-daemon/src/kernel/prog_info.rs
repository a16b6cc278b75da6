//! What the kernel counts about each attached program itself: `recursion_misses` (Linux 5.12+,
//! `bpf_prog_info`), the runs it skipped because a program was already running on that CPU.
//! Trampoline programs (fexit) are skipped when re-entered on a CPU, which on `PREEMPT_RT`
//! happens when one is preempted and the next task hits the same hook; tracepoint programs
//! when one fires inside another. Each skipped run is a capability check or a syscall event
//! capmon never saw: a loss (`program_skipped`), counted like the others.

use std::os::fd::{AsRawFd, BorrowedFd};

use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_prog_info};

/// The program's `recursion_misses`, or the error of `BPF_OBJ_GET_INFO_BY_FD` (0 on kernels
/// before 5.12, which do not fill the field).
pub fn recursion_misses(fd: BorrowedFd<'_>) -> std::io::Result<u64> {
    // SAFETY: both are plain C structs for which all-zero bytes are valid values.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.info.bpf_fd = fd.as_raw_fd() as u32;
    attr.info.info_len = std::mem::size_of::<bpf_prog_info>() as u32;
    attr.info.info = &mut info as *mut bpf_prog_info as u64;
    // SAFETY: `attr` names a buffer of `info_len` bytes that lives across the call; the
    // kernel writes at most that many.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_int,
            &mut attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>() as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(info.recursion_misses)
}
