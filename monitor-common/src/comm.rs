//! Process names (`task_struct::comm`): the bytes of a NUL-padded name, and the names of the
//! container runtimes, which the kernel side (setup before the workload's first exec) and the
//! daemon (which process of a cgroup is the workload) both recognise.

/// `comm` bytes up to the first NUL (all of them when there is none).
#[inline(always)]
pub fn comm_bytes(comm: &[u8]) -> &[u8] {
    match comm.iter().position(|b| *b == 0) {
        Some(end) => &comm[..end],
        None => comm,
    }
}

/// Prefix of every name runc gives itself: "runc" (a sealed copy of itself re-executed), then
/// "runc:[0:PARENT]", "runc:[1:CHILD]", "runc:[2:INIT]".
pub const RUNTIME_COMM_PREFIX: &[u8] = b"runc";

/// Names, matched whole, of the other runtime processes: runc first runs as `/proc/self/exe`
/// ("exe"); crun, youki, runsc (gVisor) and conmon (podman's monitor) keep their names.
pub const RUNTIME_COMMS: [&[u8]; 5] = [b"exe", b"crun", b"youki", b"runsc", b"conmon"];

/// Whether a process name (NUL-padded, as the kernel has it, or not) is a container runtime
/// still setting the container up: it starts with [`RUNTIME_COMM_PREFIX`] or is one of
/// [`RUNTIME_COMMS`]. Such a process holds the runtime's privileges, not the container's, and
/// its re-exec of itself does not end the setup.
///
/// Written for the eBPF verifier: comparisons of constant length, no loop over `comm`.
#[inline(always)]
pub fn is_runtime_comm(comm: &[u8]) -> bool {
    let starts = |p: &[u8]| comm.len() >= p.len() && &comm[..p.len()] == p;
    let exact = |p: &[u8]| starts(p) && comm.get(p.len()).is_none_or(|b| *b == 0);
    starts(RUNTIME_COMM_PREFIX) || RUNTIME_COMMS.iter().any(|p| exact(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name as the kernel holds it: NUL-padded to 16 bytes.
    fn padded(name: &str) -> [u8; crate::COMM_LEN] {
        let mut c = [0; crate::COMM_LEN];
        c[..name.len()].copy_from_slice(name.as_bytes());
        c
    }

    #[test]
    fn comm_bytes_stops_at_the_first_nul() {
        assert_eq!(comm_bytes(&padded("chown")), b"chown");
        assert_eq!(comm_bytes(b"a\0b\0"), b"a");
        assert_eq!(comm_bytes(b""), b"");
        assert_eq!(comm_bytes(&[0; 16]), b"");
        let full = [b'x'; 16];
        assert_eq!(comm_bytes(&full), &full[..]);
    }

    #[test]
    fn runtime_names() {
        for name in [
            "runc",
            "runc:[0:PARENT]",
            "runc:[1:CHILD]",
            "runc:[2:INIT]",
            "exe",
            "crun",
            "youki",
            "runsc",
            "conmon",
        ] {
            assert!(is_runtime_comm(&padded(name)), "{name} padded");
            assert!(is_runtime_comm(name.as_bytes()), "{name} bare");
        }
        for name in [
            "",
            "run",
            "exec",
            "ex",
            "crun2",
            "youki-x",
            "runsc-gofer",
            "conmonx",
            "sh",
            "nginx",
            "containerd",
        ] {
            assert!(!is_runtime_comm(&padded(name)), "{name} padded");
            assert!(!is_runtime_comm(name.as_bytes()), "{name} bare");
        }
        // 16 bytes without a NUL: the prefix still counts, exact names cannot match.
        assert!(is_runtime_comm(b"runc:[2:INIT]xyz"));
        assert!(!is_runtime_comm(b"exeexeexeexeexee"));
    }
}
