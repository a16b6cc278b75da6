//! Loading and attaching capmon's eBPF programs, and reading what they recorded.
//!
//! | probe | hook | minimum kernel | fallback | optional |
//! | --- | --- | --- | --- | --- |
//! | `cap_capable` | `tp_btf/cap_capable` | 6.14 | `cap_capable_entry`/`_return` | no |
//! | `cap_capable_entry` + `cap_capable_return` | kprobe + kretprobe on `cap_capable` | 5.11 with CONFIG_KPROBES | none | used only without the tracepoint |
//! | `sys_enter` | `tp_btf/sys_enter` | 5.11 | none | no |
//! | `sys_exit` | `tp_btf/sys_exit` | 5.11 | none | no |
//! | `sched_switch` | `tp_btf/sched_switch` | 5.11 | none | no |
//! | `cgroup_attach_task` | `tp_btf/cgroup_attach_task` | 5.5 | none | no |
//! | `sched_process_exec` | `tp_btf/sched_process_exec` | 5.5 | none | no |
//!
//! The state of the syscall a task is in lives in a per-CPU slot while the task runs, and moves
//! to a `BPF_MAP_TYPE_TASK_STORAGE` map (Linux 5.11; recursion-safe since 6.2) when the task is
//! switched out inside a syscall. `sched_switch` and `cgroup_attach_task` are attached before
//! the syscall hooks and detached after them, and `attach_all` empties the slots first: a slot
//! is only ever owned by the task running on its CPU.

use std::collections::{BTreeMap, HashMap};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{HashMap as AyaHashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{BtfTracePoint, KProbe},
};
use monitor_common::{
    CapCacheEntry, CapEvent, CapKey, CpuState, DenyEvent, DenyKey, SyscallBitmap, counter, kind,
};

use capmon_core::names::Arch;

/// The eBPF object built by `build.rs` from `monitor-ebpf`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));

/// How a program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `tp_btf/<name>`.
    TpBtf(&'static str),
    /// kprobe on a kernel function.
    Kprobe(&'static str),
    /// kretprobe on a kernel function.
    Kretprobe(&'static str),
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hook::TpBtf(n) => write!(f, "tp_btf/{n}"),
            Hook::Kprobe(n) => write!(f, "kprobe/{n}"),
            Hook::Kretprobe(n) => write!(f, "kretprobe/{n}"),
        }
    }
}

/// How capability checks are observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeMode {
    /// The `capability:cap_capable` BTF tracepoint (Linux >= 6.14).
    Tracepoint,
    /// kprobe + kretprobe on `cap_capable` (older kernels with CONFIG_KPROBES; the options
    /// argument tells no-audit checks apart directly).
    Kprobe,
}

impl ProbeMode {
    /// The mode this kernel supports, preferring the tracepoint; `None` when neither works.
    pub fn detect(btf: &Btf) -> Option<Self> {
        if btf
            .id_by_type_name_kind("btf_trace_cap_capable", aya_obj::btf::BtfKind::Typedef)
            .is_ok()
        {
            Some(ProbeMode::Tracepoint)
        } else if kprobes_available() {
            Some(ProbeMode::Kprobe)
        } else {
            None
        }
    }

    /// The programs of this mode, in attach order.
    pub fn programs(self) -> &'static [(&'static str, Hook)] {
        match self {
            ProbeMode::Tracepoint => &[
                ("sched_switch", Hook::TpBtf("sched_switch")),
                ("cgroup_attach_task", Hook::TpBtf("cgroup_attach_task")),
                ("sched_process_exec", Hook::TpBtf("sched_process_exec")),
                ("sys_enter", Hook::TpBtf("sys_enter")),
                ("sys_exit", Hook::TpBtf("sys_exit")),
                ("cap_capable", Hook::TpBtf("cap_capable")),
            ],
            ProbeMode::Kprobe => &[
                ("sched_switch", Hook::TpBtf("sched_switch")),
                ("cgroup_attach_task", Hook::TpBtf("cgroup_attach_task")),
                ("sched_process_exec", Hook::TpBtf("sched_process_exec")),
                ("sys_enter", Hook::TpBtf("sys_enter")),
                ("sys_exit", Hook::TpBtf("sys_exit")),
                ("cap_capable_entry", Hook::Kprobe("cap_capable")),
                ("cap_capable_return", Hook::Kretprobe("cap_capable")),
            ],
        }
    }

    /// `tp_btf` or `kprobe` (a metric label).
    pub fn name(self) -> &'static str {
        match self {
            ProbeMode::Tracepoint => "tp_btf",
            ProbeMode::Kprobe => "kprobe",
        }
    }

    /// A one-line description for `capmon check`.
    pub fn describe(self) -> &'static str {
        match self {
            ProbeMode::Tracepoint => {
                "tp_btf (cap_capable, sys_enter, sys_exit, sched_switch, cgroup_attach_task and sched_process_exec BTF tracepoints)"
            }
            ProbeMode::Kprobe => {
                "kprobe (kprobe + kretprobe on cap_capable; BTF tracepoints for syscalls, switches, cgroup moves and exec)"
            }
        }
    }
}

/// Whether the kernel can attach kprobes (CONFIG_KPROBES with kprobe events).
pub fn kprobes_available() -> bool {
    std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists()
}

enum Link {
    Tp(aya::programs::tp_btf::BtfTracePointLinkId),
    Kprobe(aya::programs::kprobe::KProbeLinkId),
}

/// The `set*id` syscalls as (lowest number, bit mask relative to it).
pub fn setid_syscalls(arch: Arch) -> (u64, u64) {
    let numbers: Vec<u64> = [
        "setuid",
        "setgid",
        "setreuid",
        "setregid",
        "setresuid",
        "setresgid",
        "setfsuid",
        "setfsgid",
    ]
    .iter()
    .filter_map(|n| arch.syscall_number(n))
    .map(u64::from)
    .collect();
    let base = numbers.iter().copied().min().unwrap_or(0);
    let mask = numbers
        .iter()
        .filter(|n| **n - base < 64)
        .fold(0u64, |m, n| m | 1 << (n - base));
    (base, mask)
}

/// A cgroup's syscall numbers: (the workload's, the runtime's under the filter).
pub type SyscallSets = (Vec<u32>, Vec<u32>);

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
}

impl KernelOffsets {
    /// Reads them from `/sys/kernel/btf/vmlinux`; what cannot be found is 0, with a warning.
    pub fn from_kernel() -> Self {
        let btf = match crate::btf::Btf::from_sys_fs() {
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

/// The capabilities capmon needs (found with capmon itself, see the README): `CAP_BPF` to
/// create maps and load programs, `CAP_PERFMON` for tracing programs and kernel stacks,
/// `CAP_SYSLOG` to read kernel symbol addresses from /proc/kallsyms (`kptr_restrict`).
pub const REQUIRED_CAPS: [caps::Capability; 3] = [
    caps::Capability::CAP_BPF,
    caps::Capability::CAP_PERFMON,
    caps::Capability::CAP_SYSLOG,
];

/// The required capabilities missing from this process's effective set.
pub fn missing_caps() -> Vec<String> {
    REQUIRED_CAPS
        .iter()
        .filter(|c| !caps::has_cap(None, caps::CapSet::Effective, **c).unwrap_or(false))
        .map(|c| c.to_string())
        .collect()
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The kernel exposes no BTF.
    #[error(
        "cannot read kernel BTF from /sys/kernel/btf/vmlinux ({0}); capmon needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    Btf(#[source] aya::BtfError),
    /// The object could not be loaded (usually: not root).
    #[error(
        "cannot load the eBPF object: {0} (capmon needs root with CAP_BPF, CAP_PERFMON and CAP_SYSLOG)"
    )]
    Load(#[source] aya::EbpfError),
    /// A program is missing from the object (a build problem).
    #[error("the eBPF object has no program `{0}`")]
    MissingProgram(&'static str),
    /// Neither the cap_capable tracepoint nor kprobes are available.
    #[error(
        "this kernel has neither the capability:cap_capable tracepoint (Linux >= 6.14) nor kprobes (CONFIG_KPROBES): capability checks cannot be observed"
    )]
    NoMode,
    /// A program failed to load or attach.
    #[error("cannot load or attach {program} to {hook}: {source}")]
    Attach {
        /// Program name.
        program: &'static str,
        /// Kernel hook.
        hook: Hook,
        /// Why.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map is missing or has the wrong type (a build problem).
    #[error("eBPF map {0}: {1}")]
    Map(&'static str, #[source] aya::maps::MapError),
}

/// Offset of the syscall number in `struct pt_regs`: `orig_ax` on x86_64 (15 * 8), `syscallno`
/// on aarch64 (after `regs[31]`, `sp`, `pc`, `pstate`, `orig_x0`).
pub const fn syscall_nr_offset(arch: Arch) -> u64 {
    match arch {
        Arch::X86_64 => 120,
        Arch::Aarch64 => 280,
    }
}

/// The loaded programs and their maps. One owner; dropping it detaches everything.
pub struct Probes {
    ebpf: Ebpf,
    mode: ProbeMode,
    links: Vec<(&'static str, Hook, Link)>,
}

/// The error for a map the object lacks (a build problem).
fn missing_map(name: &'static str) -> ProbeError {
    ProbeError::Map(name, aya::maps::MapError::InvalidName { name: name.into() })
}

/// Sums a per-CPU value.
fn sum(values: &aya::maps::PerCpuValues<u64>) -> u64 {
    values.iter().copied().fold(0u64, u64::wrapping_add)
}

impl Probes {
    /// Loads the object and every program of the mode this kernel supports.
    pub fn load() -> Result<Self, ProbeError> {
        let btf = Btf::from_sys_fs().map_err(ProbeError::Btf)?;
        let mode = ProbeMode::detect(&btf).ok_or(ProbeError::NoMode)?;
        Self::load_mode(mode)
    }

    /// The mode in use.
    /// Number of attached programs.
    pub fn attached(&self) -> usize {
        self.links.len()
    }

    /// The probe mode.
    pub fn mode(&self) -> ProbeMode {
        self.mode
    }

    /// Loads the object and the programs of `mode` (the verifier runs here) without attaching.
    pub fn load_mode(mode: ProbeMode) -> Result<Self, ProbeError> {
        // The kernel charges BPF memory to the memory cgroup (5.11+); raising RLIMIT_MEMLOCK is
        // only needed on older kernels and may be refused: not fatal.
        let rlim = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: plain syscall with a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
            tracing::debug!(
                "cannot raise RLIMIT_MEMLOCK: {}",
                std::io::Error::last_os_error()
            );
        }
        let btf = Btf::from_sys_fs().map_err(ProbeError::Btf)?;
        let offset = syscall_nr_offset(Arch::host());
        let fields = KernelOffsets::from_kernel();
        let (setid_base, setid_mask) = setid_syscalls(Arch::host());
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            // TASKS is a task-storage map, which aya creates but has no userspace wrapper for;
            // only the kernel side uses it.
            .allow_unsupported_maps()
            .override_global("SYSCALL_NR_OFFSET", &offset, true)
            .override_global(
                "EXECVE_NR",
                &u64::from(Arch::host().syscall_number("execve").unwrap_or(59)),
                true,
            )
            .override_global(
                "EXECVEAT_NR",
                &u64::from(Arch::host().syscall_number("execveat").unwrap_or(322)),
                true,
            )
            .override_global("REAL_CRED_OFFSET", &fields.real_cred, true)
            .override_global("SECCOMP_MODE_OFFSET", &fields.seccomp_mode, true)
            .override_global("CRED_IDS_OFFSET", &fields.cred_ids, true)
            .override_global("TASK_CGROUPS_OFFSET", &fields.cgroup_chain[0], true)
            .override_global("CSS_SET_DFL_CGRP_OFFSET", &fields.cgroup_chain[1], true)
            .override_global("CGROUP_KN_OFFSET", &fields.cgroup_chain[2], true)
            .override_global("KERNFS_NODE_ID_OFFSET", &fields.cgroup_chain[3], true)
            .override_global("SETID_BASE", &setid_base, true)
            .override_global("SETID_MASK", &setid_mask, true)
            .load(EBPF_OBJECT)
            .map_err(ProbeError::Load)?;
        for &(program, hook) in mode.programs() {
            let err = |source| ProbeError::Attach {
                program,
                hook,
                source,
            };
            let prog = ebpf
                .program_mut(program)
                .ok_or(ProbeError::MissingProgram(program))?;
            match hook {
                Hook::TpBtf(name) => {
                    let prog: &mut BtfTracePoint = prog.try_into().map_err(err)?;
                    prog.load(name, &btf).map_err(err)?;
                }
                Hook::Kprobe(_) | Hook::Kretprobe(_) => {
                    let prog: &mut KProbe = prog.try_into().map_err(err)?;
                    prog.load().map_err(err)?;
                }
            }
        }
        let mut probes = Self {
            ebpf,
            mode,
            links: Vec::new(),
        };
        // Cgroups that already exist are past their runtime setup: their first execve happened
        // before the probes were attached, so the kernel side cannot see it.
        match crate::containers::cgroup::find_cgroup2_mount() {
            Ok(mount) => {
                if let Err(e) =
                    probes.mark_exec_seen(crate::containers::cgroup::all_cgroup_ids(&mount))
                {
                    tracing::warn!("cannot mark the running cgroups: {e}");
                }
            }
            Err(e) => tracing::warn!(
                "{e}; checks in cgroups that already run may be classed as runtime setup"
            ),
        }
        Ok(probes)
    }

    /// Loads and attaches every program; fails on the first that cannot attach.
    pub fn attach() -> Result<Self, ProbeError> {
        let mut probes = Self::load()?;
        probes.attach_all()?;
        Ok(probes)
    }

    /// Attaches every loaded program that is not attached.
    pub fn attach_all(&mut self) -> Result<(), ProbeError> {
        if self.links.is_empty() {
            // Nothing runs: the per-CPU syscall slots may still name the tasks that owned them
            // when the programs were detached, which would be taken for the running ones.
            let mut slots: PerCpuArray<_, CpuState> = self.map_mut("CPU_STATE")?;
            let cpus = slots
                .get(&0, 0)
                .map_err(|e| ProbeError::Map("CPU_STATE", e))?
                .len();
            let zeroed = aya::maps::PerCpuValues::try_from(vec![CpuState::default(); cpus])
                .map_err(|e| ProbeError::Map("CPU_STATE", aya::maps::MapError::from(e)))?;
            slots
                .set(0, zeroed, 0)
                .map_err(|e| ProbeError::Map("CPU_STATE", e))?;
        }
        for &(program, hook) in self.mode.programs() {
            if self.links.iter().any(|(p, _, _)| *p == program) {
                continue;
            }
            let err = |source| ProbeError::Attach {
                program,
                hook,
                source,
            };
            let prog = self
                .ebpf
                .program_mut(program)
                .ok_or(ProbeError::MissingProgram(program))?;
            let link = match hook {
                Hook::TpBtf(_) => {
                    let prog: &mut BtfTracePoint = prog.try_into().map_err(err)?;
                    Link::Tp(prog.attach().map_err(err)?)
                }
                Hook::Kprobe(function) | Hook::Kretprobe(function) => {
                    let prog: &mut KProbe = prog.try_into().map_err(err)?;
                    Link::Kprobe(prog.attach(function, 0).map_err(err)?)
                }
            };
            self.links.push((program, hook, link));
        }
        Ok(())
    }

    /// Detaches every program (they stay loaded, maps keep their contents).
    pub fn detach_all(&mut self) -> Result<(), ProbeError> {
        for (program, hook, link) in self.links.drain(..).rev() {
            let err = |source| ProbeError::Attach {
                program,
                hook,
                source,
            };
            let prog = self
                .ebpf
                .program_mut(program)
                .ok_or(ProbeError::MissingProgram(program))?;
            match link {
                Link::Tp(link) => {
                    let prog: &mut BtfTracePoint = prog.try_into().map_err(err)?;
                    prog.detach(link).map_err(err)?;
                }
                Link::Kprobe(link) => {
                    let prog: &mut KProbe = prog.try_into().map_err(err)?;
                    prog.detach(link).map_err(err)?;
                }
            }
        }
        Ok(())
    }

    /// Takes the ring buffer of first sightings (once).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or_else(|| missing_map("EVENTS"))?;
        RingBuf::try_from(map).map_err(|e| ProbeError::Map("EVENTS", e))
    }

    /// Capability check counts of the cgroups `keep` selects: `CAP_CHECKS` summed over CPUs,
    /// plus what the per-CPU `CAP_CACHE` holds that was not flushed into it yet (one pass over
    /// each map).
    pub fn cap_checks(&self, keep: impl Fn(u64) -> bool) -> Result<Vec<(CapKey, u64)>, ProbeError> {
        let mut counts = self.per_cpu_counts::<CapKey>("CAP_CHECKS", |k| keep(k.cgroup_id))?;
        let cache: PerCpuArray<_, CapCacheEntry> = self.map("CAP_CACHE")?;
        for slot in 0..monitor_common::CAP_CACHE_SLOTS {
            let entries = cache
                .get(&slot, 0)
                .map_err(|e| ProbeError::Map("CAP_CACHE", e))?;
            for e in entries
                .iter()
                .filter(|e| e.delta > 0 && keep(e.key.cgroup_id))
            {
                *counts.entry(e.key).or_default() += e.delta;
            }
        }
        Ok(counts.into_iter().collect())
    }

    /// Seccomp denials of the cgroups `keep` selects, summed over CPUs.
    pub fn denials(&self, keep: impl Fn(u64) -> bool) -> Result<Vec<(DenyKey, u64)>, ProbeError> {
        Ok(self
            .per_cpu_counts::<DenyKey>("DENIALS", |k| keep(k.cgroup_id))?
            .into_iter()
            .collect())
    }

    /// Syscall sets of the cgroups `keep` selects: cgroup id -> (workload's syscalls, the
    /// runtime's syscalls under the filter).
    pub fn syscalls(
        &self,
        keep: impl Fn(u64) -> bool,
    ) -> Result<BTreeMap<u64, SyscallSets>, ProbeError> {
        let map: AyaHashMap<_, u64, SyscallBitmap> = self.map("SYSCALLS")?;
        let mut out: BTreeMap<u64, (Vec<u32>, Vec<u32>)> = BTreeMap::new();
        for item in map.iter() {
            let (key, bitmap) = item.map_err(|e| ProbeError::Map("SYSCALLS", e))?;
            let runtime = key & monitor_common::RUNTIME_SYSCALLS_KEY_BIT != 0;
            let id = key & !monitor_common::RUNTIME_SYSCALLS_KEY_BIT;
            if !keep(id) {
                continue;
            }
            let entry = out.entry(id).or_default();
            let set = if runtime { &mut entry.1 } else { &mut entry.0 };
            set.extend(bitmap.iter());
        }
        Ok(out)
    }

    /// Fill levels of the hash maps: (map, entries, capacity).
    pub fn map_fill(&self) -> Result<Vec<(&'static str, u64, u64)>, ProbeError> {
        use aya::maps::IterableMap as _;
        let capacity = |name: &'static str, data: &aya::maps::MapData| {
            data.info()
                .map(|i| u64::from(i.max_entries()))
                .map_err(|e| ProbeError::Map(name, e))
        };
        let mut out = Vec::new();
        let m: PerCpuHashMap<_, CapKey, u64> = self.map("CAP_CHECKS")?;
        out.push((
            "CAP_CHECKS",
            m.keys().count() as u64,
            capacity("CAP_CHECKS", m.map())?,
        ));
        let m: PerCpuHashMap<_, DenyKey, u64> = self.map("DENIALS")?;
        out.push((
            "DENIALS",
            m.keys().count() as u64,
            capacity("DENIALS", m.map())?,
        ));
        let m: AyaHashMap<_, u64, SyscallBitmap> = self.map("SYSCALLS")?;
        out.push((
            "SYSCALLS",
            m.keys().count() as u64,
            capacity("SYSCALLS", m.map())?,
        ));
        let m: AyaHashMap<_, u64, [u64; monitor_common::STACK_DEPTH]> = self.map("STACKS")?;
        out.push((
            "STACKS",
            m.keys().count() as u64,
            capacity("STACKS", m.map())?,
        ));
        let m: AyaHashMap<_, u64, u8> = self.map("EXEC_SEEN")?;
        out.push((
            "EXEC_SEEN",
            m.keys().count() as u64,
            capacity("EXEC_SEEN", m.map())?,
        ));
        Ok(out)
    }

    /// Removes what the kernel side holds for cgroups that are gone (their counts were
    /// read and kept in userspace): keeps the maps from filling up under container churn.
    pub fn forget_cgroups(
        &mut self,
        gone: &std::collections::BTreeSet<u64>,
    ) -> Result<(), ProbeError> {
        self.drop_counts(gone)?;
        let mut seen: AyaHashMap<_, u64, u8> = self.map_mut("EXEC_SEEN")?;
        for id in gone {
            let _ = seen.remove(id);
        }
        Ok(())
    }

    /// Drops the counts and syscall sets of cgroups (that capmon does not report on), keeping
    /// their exec state: bounds the maps under the host's own activity.
    pub fn drop_counts(
        &mut self,
        gone: &std::collections::BTreeSet<u64>,
    ) -> Result<(), ProbeError> {
        if gone.is_empty() {
            return Ok(());
        }
        // The per-CPU cache first: an evicted slot would bring the count back.
        let mut cache: PerCpuArray<_, CapCacheEntry> = self.map_mut("CAP_CACHE")?;
        for slot in 0..monitor_common::CAP_CACHE_SLOTS {
            let Ok(values) = cache.get(&slot, 0) else {
                continue;
            };
            if values.iter().any(|e| gone.contains(&e.key.cgroup_id)) {
                let cleared: Vec<CapCacheEntry> = values
                    .iter()
                    .map(|e| {
                        if gone.contains(&e.key.cgroup_id) {
                            CapCacheEntry::default()
                        } else {
                            *e
                        }
                    })
                    .collect();
                if let Ok(v) = aya::maps::PerCpuValues::try_from(cleared) {
                    let _ = cache.set(slot, v, 0);
                }
            }
        }
        let mut cap: PerCpuHashMap<_, CapKey, u64> = self.map_mut("CAP_CHECKS")?;
        let keys: Vec<CapKey> = cap
            .keys()
            .filter_map(Result::ok)
            .filter(|k| gone.contains(&k.cgroup_id))
            .collect();
        for k in keys {
            let _ = cap.remove(&k);
        }
        let mut den: PerCpuHashMap<_, DenyKey, u64> = self.map_mut("DENIALS")?;
        let keys: Vec<DenyKey> = den
            .keys()
            .filter_map(Result::ok)
            .filter(|k| gone.contains(&k.cgroup_id))
            .collect();
        for k in keys {
            let _ = den.remove(&k);
        }
        let mut sys: AyaHashMap<_, u64, SyscallBitmap> = self.map_mut("SYSCALLS")?;
        for id in gone {
            let _ = sys.remove(id);
            let _ = sys.remove(&(id | monitor_common::RUNTIME_SYSCALLS_KEY_BIT));
        }
        Ok(())
    }

    /// The entries of a per-CPU counting hash that `keep` selects, summed over CPUs.
    fn per_cpu_counts<K: aya::Pod + Ord>(
        &self,
        name: &'static str,
        keep: impl Fn(&K) -> bool,
    ) -> Result<BTreeMap<K, u64>, ProbeError> {
        let map: PerCpuHashMap<_, K, u64> = self.map(name)?;
        let mut counts = BTreeMap::new();
        for item in map.iter() {
            let (key, values) = item.map_err(|e| ProbeError::Map(name, e))?;
            if keep(&key) {
                *counts.entry(key).or_default() += sum(&values);
            }
        }
        Ok(counts)
    }

    /// Marks cgroups as past their runtime setup (cgroups that were running before the probes
    /// were attached, whose first `execve` was never seen).
    pub fn mark_exec_seen(
        &mut self,
        cgroup_ids: impl IntoIterator<Item = u64>,
    ) -> Result<(), ProbeError> {
        let map = self
            .ebpf
            .map_mut("EXEC_SEEN")
            .ok_or_else(|| missing_map("EXEC_SEEN"))?;
        let mut map: AyaHashMap<_, u64, u8> =
            AyaHashMap::try_from(map).map_err(|e| ProbeError::Map("EXEC_SEEN", e))?;
        for id in cgroup_ids {
            map.insert(id, 1, 0)
                .map_err(|e| ProbeError::Map("EXEC_SEEN", e))?;
        }
        Ok(())
    }

    /// Kernel instruction pointers of a stack, innermost first.
    pub fn stack(&self, stack: u64) -> Vec<u64> {
        if stack == monitor_common::NO_STACK {
            return Vec::new();
        }
        let Ok(map) = self.map::<AyaHashMap<_, u64, [u64; monitor_common::STACK_DEPTH]>>("STACKS")
        else {
            return Vec::new();
        };
        map.get(&stack, 0)
            .map(|frames| frames.iter().copied().take_while(|ip| *ip != 0).collect())
            .unwrap_or_default()
    }

    /// The loss counters, by name.
    pub fn counters(&self) -> Result<BTreeMap<&'static str, u64>, ProbeError> {
        let map: PerCpuArray<_, u64> = self.map("COUNTERS")?;
        let mut out = BTreeMap::new();
        for (name, index) in [
            ("ringbuf_full", counter::RINGBUF_FULL),
            ("cap_map_full", counter::CAP_MAP_FULL),
            ("syscall_map_full", counter::SYSCALL_MAP_FULL),
            ("denial_map_full", counter::DENIAL_MAP_FULL),
            ("stack_failed", counter::STACK_FAILED),
            ("pending_overflow", counter::PENDING_OVERFLOW),
            ("task_storage_failed", counter::TASK_STORAGE_FAILED),
            ("kretprobe_unmatched", counter::KRETPROBE_UNMATCHED),
        ] {
            let values = map
                .get(&index, 0)
                .map_err(|e| ProbeError::Map("COUNTERS", e))?;
            out.insert(name, sum(&values));
        }
        Ok(out)
    }

    fn map<'a, M>(&'a self, name: &'static str) -> Result<M, ProbeError>
    where
        M: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self.ebpf.map(name).ok_or_else(|| missing_map(name))?;
        M::try_from(map).map_err(|e| ProbeError::Map(name, e))
    }

    fn map_mut<'a, M>(&'a mut self, name: &'static str) -> Result<M, ProbeError>
    where
        M: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self.ebpf.map_mut(name).ok_or_else(|| missing_map(name))?;
        M::try_from(map).map_err(|e| ProbeError::Map(name, e))
    }
}

/// A decoded ring-buffer record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// First sighting of a capability check.
    Cap(CapEvent),
    /// First sighting of a seccomp denial.
    Deny(DenyEvent),
}

/// Errors decoding a ring-buffer record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than its kind requires.
    #[error("record of kind {kind} has {len} bytes, expected {expected}")]
    Short {
        /// Kind read from the header.
        kind: u32,
        /// Bytes received.
        len: usize,
        /// Bytes needed.
        expected: usize,
    },
    /// Unknown kind.
    #[error("record of unknown kind {0}")]
    UnknownKind(u32),
    /// Not even a header.
    #[error("record of {0} bytes has no header")]
    NoHeader(usize),
}

fn read_pod<T: Copy>(bytes: &[u8], kind: u32) -> Result<T, DecodeError> {
    let expected = std::mem::size_of::<T>();
    if bytes.len() < expected {
        return Err(DecodeError::Short {
            kind,
            len: bytes.len(),
            expected,
        });
    }
    // SAFETY: length checked; T is a `#[repr(C)]` integer-only type (see monitor-common), so any
    // bit pattern is valid; read_unaligned copes with the buffer's alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Decodes one ring-buffer record by its `kind` header.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let header: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(DecodeError::NoHeader(bytes.len()))?;
    match u32::from_ne_bytes(header) {
        kind::CAP_CHECK => read_pod(bytes, kind::CAP_CHECK).map(Event::Cap),
        kind::SYSCALL_DENIED => read_pod(bytes, kind::SYSCALL_DENIED).map(Event::Deny),
        other => Err(DecodeError::UnknownKind(other)),
    }
}

/// `comm` bytes up to the first NUL.
pub fn comm_str(comm: &[u8]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// Symbolizes kernel addresses against `/proc/kallsyms`: text symbols only, in one sorted
/// address array and one name arena (about 2 MB for 120,000 symbols, against about 15 MB as a
/// map of strings; the daemon keeps it for its lifetime).
pub struct Symbolizer {
    addrs: Vec<u64>,
    /// (offset, length) of each name in `arena`.
    names: Vec<(u32, u32)>,
    arena: String,
    cache: HashMap<u64, String>,
}

impl Symbolizer {
    /// Reads `/proc/kallsyms` (addresses are only visible with CAP_SYSLOG).
    pub fn from_kallsyms() -> std::io::Result<Self> {
        let text = std::fs::read_to_string("/proc/kallsyms")?;
        let s = Self::parse(&text);
        // Without CAP_SYSLOG (kptr_restrict) every address reads as 0: stacks could not be
        // named, and no-audit checks would look like real uses.
        if s.addrs.iter().all(|a| *a == 0) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "/proc/kallsyms shows no addresses to this process: capmon needs CAP_SYSLOG",
            ));
        }
        Ok(s)
    }

    /// Parses kallsyms text (`address type name [module]`), keeping text symbols.
    pub fn parse(text: &str) -> Self {
        let mut entries: Vec<(u64, &str)> = text
            .lines()
            .filter_map(|line| {
                let mut f = line.split_whitespace();
                let addr = u64::from_str_radix(f.next()?, 16).ok()?;
                let kind = f.next()?;
                let name = f.next()?;
                matches!(kind, "t" | "T" | "w" | "W").then_some((addr, name))
            })
            .collect();
        entries.sort_by_key(|(a, _)| *a);
        Self::from_sorted(entries.into_iter())
    }

    fn from_sorted<'a>(entries: impl Iterator<Item = (u64, &'a str)>) -> Self {
        let mut s = Symbolizer {
            addrs: Vec::new(),
            names: Vec::new(),
            arena: String::new(),
            cache: HashMap::new(),
        };
        for (addr, name) in entries {
            s.addrs.push(addr);
            s.names.push((s.arena.len() as u32, name.len() as u32));
            s.arena.push_str(name);
        }
        s.addrs.shrink_to_fit();
        s.names.shrink_to_fit();
        s.arena.shrink_to_fit();
        s
    }

    /// A symbolizer over a given table (tests).
    pub fn from_table(symbols: BTreeMap<u64, String>) -> Self {
        Self::from_sorted(symbols.iter().map(|(a, n)| (*a, n.as_str())))
    }

    /// The function containing `ip`, or its address in hex.
    pub fn symbol(&mut self, ip: u64) -> String {
        if let Some(s) = self.cache.get(&ip) {
            return s.clone();
        }
        let i = self.addrs.partition_point(|a| *a <= ip);
        let name = match i.checked_sub(1).and_then(|i| self.names.get(i)) {
            Some(&(off, len)) => self.arena[off as usize..(off + len) as usize].to_owned(),
            None => format!("{ip:#x}"),
        };
        self.cache.insert(ip, name.clone());
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-data value.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    #[test]
    fn decodes_both_kinds() {
        let cap = CapEvent {
            kind: kind::CAP_CHECK,
            pid: 10,
            tgid: 9,
            syscall_nr: 260,
            key: CapKey {
                cgroup_id: 77,
                cap: 0,
                ret: 0,
                stack: 3,
                context: 0,
                outcome: 0,
            },
            comm: *b"chown\0\0\0\0\0\0\0\0\0\0\0",
        };
        assert_eq!(decode(&bytes_of(&cap)), Ok(Event::Cap(cap)));
        assert_eq!(comm_str(&cap.comm), "chown");
        let deny = DenyEvent {
            kind: kind::SYSCALL_DENIED,
            pid: 1,
            tgid: 1,
            _pad: 0,
            key: DenyKey {
                cgroup_id: 5,
                syscall_nr: 268,
                errno: 1,
            },
            comm: [b'x'; 16],
        };
        assert_eq!(decode(&bytes_of(&deny)), Ok(Event::Deny(deny)));
        assert_eq!(comm_str(&deny.comm), "x".repeat(16));
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        assert_eq!(decode(&[1, 0]), Err(DecodeError::NoHeader(2)));
        assert_eq!(
            decode(&[1, 0, 0, 0, 0]),
            Err(DecodeError::Short {
                kind: 1,
                len: 5,
                expected: 64
            })
        );
        assert_eq!(decode(&[9, 0, 0, 0]), Err(DecodeError::UnknownKind(9)));
    }

    #[test]
    fn symbolizes_to_the_enclosing_function() {
        let table = BTreeMap::from([
            (0x1000, "cap_capable".to_owned()),
            (0x2000, "do_mmap".to_owned()),
        ]);
        let mut s = Symbolizer::from_table(table);
        assert_eq!(s.symbol(0x1000), "cap_capable");
        assert_eq!(s.symbol(0x1fff), "cap_capable");
        assert_eq!(s.symbol(0x2010), "do_mmap");
        assert_eq!(s.symbol(0x10), "0x10");
        let mut k = Symbolizer::parse(
            "ffffffff81000000 T _stext\nffffffff81000100 t do_mmap\nffffffff81000200 D some_data\n\
             ffffffffc0000000 t mod_fn\t[nf_tables]\n",
        );
        assert_eq!(k.symbol(0xffffffff81000150), "do_mmap");
        assert_eq!(
            k.symbol(0xffffffff81000250),
            "do_mmap",
            "data symbols are skipped"
        );
        assert_eq!(k.symbol(0xffffffffc0000010), "mod_fn");
    }

    #[test]
    fn pt_regs_offsets() {
        assert_eq!(syscall_nr_offset(Arch::X86_64), 15 * 8);
        assert_eq!(syscall_nr_offset(Arch::Aarch64), 34 * 8 + 8);
    }
}
