//! What the eBPF side is told about this kernel before it is verified: where the syscall
//! number sits in `struct pt_regs`, the `set*id` syscall numbers, and the offsets of the
//! kernel struct fields it reads (found in the running kernel's BTF by [`super::btf`]).

use capmon_core::names::Arch;

/// The `set*id` syscalls ([`monitor_common::SETID_SYSCALLS`]) as (lowest number, bit mask
/// relative to it), for this architecture's numbers.
pub fn setid_syscalls(arch: Arch) -> (u64, u64) {
    let numbers: Vec<u64> = monitor_common::SETID_SYSCALLS
        .iter()
        .filter_map(|n| arch.syscall_number(n))
        .map(u64::from)
        .collect();
    monitor_common::setid_base_mask(&numbers)
}

/// The chmod family ([`monitor_common::chmod::CHMOD_SYSCALLS`]) on this architecture, packed
/// for the kernel side: (calls whose mode is the second argument, calls where it is the third).
pub fn chmod_syscalls(arch: Arch) -> (u64, u64) {
    let with_mode_at = |index: u8| -> Vec<u32> {
        monitor_common::chmod::CHMOD_SYSCALLS
            .iter()
            .filter(|(_, i)| *i == index)
            .filter_map(|(name, _)| arch.syscall_number(name))
            .collect()
    };
    (
        monitor_common::chmod::pack_syscalls(&with_mode_at(1)),
        monitor_common::chmod::pack_syscalls(&with_mode_at(2)),
    )
}

/// Where a syscall's argument `index` (0-based, up to 5) sits in `struct pt_regs` as the
/// syscall entry saved it: `di, si, dx, r10, r8, r9` on x86_64, `regs[0..6]` on aarch64.
pub const fn syscall_arg_offset(arch: Arch, index: usize) -> u64 {
    match arch {
        Arch::X86_64 => [112, 104, 96, 56, 72, 64][index],
        Arch::Aarch64 => 8 * index as u64,
    }
}

/// Kernel struct fields the eBPF side reads, found in the running kernel's BTF.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.real_cred` (0: unknown, borrowed credentials go undetected).
    pub real_cred: u64,
    /// `task_struct.seccomp.mode` (0: unknown, exits without enter are not filtered by mode).
    pub seccomp_mode: u64,
    /// `cred.uid`, the first of eight contiguous ids ending with `cred.fsgid` (0: unknown or
    /// not laid out so; granted set*id checks then stay `used`).
    pub cred_ids: u64,
    /// `task_struct.cgroups`, `css_set.dfl_cgrp`, `cgroup.kn`, `kernfs_node.id`: the chain to
    /// a task's cgroup v2 id (all 0 when one is unknown: the kernel side then calls
    /// `bpf_get_current_cgroup_id`, which costs more).
    pub cgroup_chain: [u64; 4],
    /// `cred.cap_inheritable`, the first of five contiguous capability sets ending with
    /// `cred.cap_ambient` (0: unknown or not laid out so; a first exec's sets are not read).
    pub cred_caps: u64,
    /// `task_struct.atomic_flags` (0: unknown; `no_new_privs` is not read at a first exec).
    pub atomic_flags: u64,
    /// `cgroup.root` and `cgroup_root.hierarchy_id` (0: unknown; cgroups' creations and
    /// removals are then not sent, and short-lived containers are found only by scanning).
    pub cgroup_root: [u64; 2],
}

impl KernelOffsets {
    /// Reads them from `/sys/kernel/btf/vmlinux`; what cannot be found is 0, with a warning.
    pub fn from_kernel() -> Self {
        let btf = match super::btf::Btf::from_sys_fs() {
            Ok(Ok(btf)) => btf,
            Ok(Err(e)) => {
                tracing::warn!("cannot parse kernel BTF for field offsets: {e}");
                return Self::default();
            }
            Err(e) => {
                tracing::warn!("cannot read kernel BTF for field offsets: {e}");
                return Self::default();
            }
        };
        let get = |path: &str| {
            btf.offset_of(path).unwrap_or_else(|e| {
                tracing::warn!("{e}; the classification that needs it is off");
                0
            })
        };
        let uid = get("cred.uid");
        let fsgid = get("cred.fsgid");
        let inheritable = get("cred.cap_inheritable");
        let ambient = get("cred.cap_ambient");
        Self {
            real_cred: get("task_struct.real_cred"),
            seccomp_mode: get("task_struct.seccomp.mode"),
            cgroup_chain: {
                let chain = [
                    "task_struct.cgroups",
                    "css_set.dfl_cgrp",
                    "cgroup.kn",
                    "kernfs_node.id",
                ]
                .map(|p| btf.offset_of(p).ok());
                match chain {
                    [Some(a), Some(b), Some(c), Some(d)] => [a, b, c, d],
                    _ => {
                        tracing::debug!("cgroup id chain not found in BTF; using the helper");
                        [0; 4]
                    }
                }
            },
            cred_caps: if inheritable != 0 && ambient == inheritable + 32 {
                inheritable
            } else {
                tracing::warn!(
                    "struct cred capability sets are not laid out as expected; a container's \
                     granted set is read from /proc only"
                );
                0
            },
            atomic_flags: get("task_struct.atomic_flags"),
            cgroup_root: match (
                btf.offset_of("cgroup.root"),
                btf.offset_of("cgroup_root.hierarchy_id"),
            ) {
                (Ok(a), Ok(b)) => [a, b],
                _ => {
                    tracing::warn!(
                        "cgroup.root or cgroup_root.hierarchy_id not in BTF; cgroups are found \
                         by scanning only"
                    );
                    [0; 2]
                }
            },
            cred_ids: if uid != 0 && fsgid == uid + 28 {
                uid
            } else {
                tracing::warn!(
                    "struct cred ids are not laid out as expected; set*id checks are not refined"
                );
                0
            },
        }
    }
}

/// Offset of the syscall number in `struct pt_regs`: `orig_ax` on x86_64 (15 * 8), `syscallno`
/// on aarch64 (after `regs[31]`, `sp`, `pc`, `pstate`, `orig_x0`).
pub const fn syscall_nr_offset(arch: Arch) -> u64 {
    match arch {
        Arch::X86_64 => 120,
        Arch::Aarch64 => 280,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_family_per_architecture() {
        use monitor_common::chmod::in_packed;
        // x86_64: chmod 90, fchmod 91, fchmodat 268, fchmodat2 452.
        let (arg1, arg2) = chmod_syscalls(Arch::X86_64);
        assert!(in_packed(90, arg1) && in_packed(91, arg1) && !in_packed(268, arg1));
        assert!(in_packed(268, arg2) && in_packed(452, arg2) && !in_packed(90, arg2));
        // aarch64 (asm-generic): no chmod; fchmod 52, fchmodat 53, fchmodat2 452.
        let (arg1, arg2) = chmod_syscalls(Arch::Aarch64);
        assert!(in_packed(52, arg1) && !in_packed(53, arg1));
        assert!(in_packed(53, arg2) && in_packed(452, arg2));
        // struct pt_regs: si and dx on x86_64, regs[1] and regs[2] on aarch64.
        assert_eq!(syscall_arg_offset(Arch::X86_64, 1), 104);
        assert_eq!(syscall_arg_offset(Arch::X86_64, 2), 96);
        assert_eq!(syscall_arg_offset(Arch::Aarch64, 2), 16);
    }

    #[test]
    fn setid_syscalls_per_architecture() {
        // x86_64: setuid 105, setgid 106, setreuid 113, setregid 114, setresuid 117,
        // setresgid 119, setfsuid 122, setfsgid 123.
        let (base, mask) = setid_syscalls(Arch::X86_64);
        assert_eq!(base, 105);
        let numbers: Vec<u64> = (0..64)
            .filter(|b| mask & (1 << b) != 0)
            .map(|b| base + b)
            .collect();
        assert_eq!(numbers, vec![105, 106, 113, 114, 117, 119, 122, 123]);
        // aarch64: setregid 143, setgid 144, setreuid 145, setuid 146, setresuid 147,
        // setresgid 149, setfsuid 151, setfsgid 152.
        let (base, mask) = setid_syscalls(Arch::Aarch64);
        assert_eq!(base, 143);
        assert_eq!(mask.count_ones(), 8);
    }

    #[test]
    fn pt_regs_offsets() {
        assert_eq!(syscall_nr_offset(Arch::X86_64), 15 * 8);
        assert_eq!(syscall_nr_offset(Arch::Aarch64), 34 * 8 + 8);
    }
}
