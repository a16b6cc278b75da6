//! Loading and attaching capmon's eBPF programs: the object built by `build.rs`, the
//! read-only globals userspace fills in before the verifier runs (syscall numbers, BTF field
//! offsets), the programs of the probe mode this kernel supports ([`super::probe_table`]),
//! and the privileges all this needs. [`Probes`] owns the loaded object; its maps are read in
//! [`super::maps`].

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, FExit, KProbe},
};
use capmon_core::names::Arch;
use monitor_common::CpuState;

use super::{
    offsets::{
        KernelOffsets, chmod_syscalls, setid_syscalls, syscall_arg_offset, syscall_nr_offset,
    },
    preemption::Preemption,
    probe_table::{Hook, Probe, ProbeMode},
};

/// The eBPF object built by `build.rs` from `monitor-ebpf`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));

enum Link {
    Tp(aya::programs::tp_btf::BtfTracePointLinkId),
    Kprobe(aya::programs::kprobe::KProbeLinkId),
    Fexit(aya::programs::fexit::FExitLinkId),
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
    /// No probe mode works on this kernel.
    #[error(
        "no way to observe capability checks on this kernel: no capability:cap_capable tracepoint (Linux >= 6.14), {tried}"
    )]
    NoMode {
        /// What was tried, and why it failed.
        tried: String,
    },
    /// `CAPMON_PROBE_MODE` / `probe_mode` names no mode.
    #[error("probe mode {0:?}: expected auto, tp_btf, fexit or kprobe")]
    BadMode(String),
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
    /// A kprobe's `perf_event_open` was refused at `kernel.perf_event_paranoid` 3.
    #[error(
        "cannot attach {program} to {hook}: perf_event_open refused: kernel.perf_event_paranoid is {level}, at which this kernel (Debian's CONFIG_SECURITY_PERF_EVENTS_RESTRICT) lets only CAP_SYS_ADMIN open perf events, and kprobes attach through them; run `sysctl kernel.perf_event_paranoid=2` (CAP_PERFMON then suffices) or use the fexit mode (`--probe-mode fexit`), which needs neither"
    )]
    PerfParanoid {
        /// Program name.
        program: &'static str,
        /// Kernel hook.
        hook: Hook,
        /// `kernel.perf_event_paranoid`.
        level: i32,
    },
    /// The fexit mode was asked for on a kernel that preempts fexit programs.
    #[error(
        "probe mode fexit is refused on this kernel ({0}): fexit programs run there with migration disabled only, so another task can preempt one in the middle of updating its CPU's counting slots, and counts are lost or go to the wrong cgroup (measured: 267 of 2,000,000 checks lost on Debian's 6.12-rt); use the tp_btf mode where the kernel has the cap_capable tracepoint, else kprobe (probe mode auto chooses)"
    )]
    FexitPreempted(&'static str),
    /// A map is missing or has the wrong type (a build problem).
    #[error("eBPF map {0}: {1}")]
    Map(&'static str, #[source] aya::maps::MapError),
    /// Reading a map in batches failed.
    #[error("eBPF map {0}: batch lookup: {1}")]
    Batch(&'static str, #[source] std::io::Error),
}

/// The error for `program` at `hook`, from aya's.
fn attach_error(
    program: &'static str,
    hook: Hook,
) -> impl Fn(aya::programs::ProgramError) -> ProbeError + Copy {
    move |source| ProbeError::Attach {
        program,
        hook,
        source,
    }
}

/// `kernel.perf_event_paranoid`, when readable.
pub fn perf_event_paranoid() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The level of `kernel.perf_event_paranoid` when it keeps this process from attaching
/// kprobes: Debian's kernels add level 3 (their default), at which `perf_event_open` needs
/// `CAP_SYS_ADMIN`, not `CAP_PERFMON`; upstream kernels treat 3 as 2.
pub fn perf_events_restricted() -> Option<i32> {
    let level = perf_event_paranoid()?;
    let admin = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_ADMIN,
    )
    .unwrap_or(false);
    (level >= 3 && !admin).then_some(level)
}

/// The error for a kprobe that could not attach: [`ProbeError::PerfParanoid`] when
/// `perf_event_open` said EACCES at paranoid level 3, else aya's error.
fn kprobe_error(program: &'static str, hook: Hook, e: aya::programs::ProgramError) -> ProbeError {
    let refused = matches!(
        &e,
        aya::programs::ProgramError::SyscallError(aya::sys::SyscallError { call, io_error })
            if *call == "perf_event_open" && io_error.raw_os_error() == Some(libc::EACCES)
    );
    match perf_events_restricted() {
        Some(level) if refused => ProbeError::PerfParanoid {
            program,
            hook,
            level,
        },
        _ => attach_error(program, hook)(e),
    }
}

/// `vm.mmap_min_addr`: below it, an mmap needs `CAP_SYS_RAWIO` (`cap_mmap_addr`). Read once,
/// when the programs load (a later `sysctl` is not followed); 0 (no check counted) if
/// unreadable.
fn mmap_min_addr() -> u64 {
    match std::fs::read_to_string("/proc/sys/vm/mmap_min_addr") {
        Ok(text) => text.trim().parse().unwrap_or(0),
        Err(e) => {
            tracing::warn!(
                "cannot read /proc/sys/vm/mmap_min_addr ({e}): low mmaps' CAP_SYS_RAWIO checks are not counted where cap_capable is inlined"
            );
            0
        }
    }
}

/// Loads one program of the table (the verifier runs here).
fn load_one(ebpf: &mut Ebpf, btf: &Btf, probe: &Probe) -> Result<(), ProbeError> {
    let (program, hook) = (probe.program, probe.hook);
    let err = attach_error(program, hook);
    let prog = program_mut(ebpf, program)?;
    match hook {
        Hook::TpBtf(name) => {
            let prog: &mut BtfTracePoint = prog.try_into().map_err(err)?;
            prog.load(name, btf).map_err(err)
        }
        Hook::Kprobe(_) | Hook::Kretprobe(_) => {
            let prog: &mut KProbe = prog.try_into().map_err(err)?;
            prog.load().map_err(err)
        }
        Hook::Fexit(function) => {
            let prog: &mut FExit = prog.try_into().map_err(err)?;
            prog.load(function, btf).map_err(err)
        }
    }
}

/// Attaches one loaded program of the table.
fn attach_one(ebpf: &mut Ebpf, probe: &Probe) -> Result<Link, ProbeError> {
    let (program, hook) = (probe.program, probe.hook);
    let err = attach_error(program, hook);
    let prog = program_mut(ebpf, program)?;
    Ok(match hook {
        Hook::TpBtf(_) => {
            let prog: &mut BtfTracePoint = prog.try_into().map_err(err)?;
            Link::Tp(prog.attach().map_err(err)?)
        }
        Hook::Kprobe(function) | Hook::Kretprobe(function) => {
            let prog: &mut KProbe = prog.try_into().map_err(err)?;
            Link::Kprobe(
                prog.attach(function, 0)
                    .map_err(|e| kprobe_error(program, hook, e))?,
            )
        }
        Hook::Fexit(_) => {
            let prog: &mut FExit = prog.try_into().map_err(err)?;
            Link::Fexit(prog.attach().map_err(err)?)
        }
    })
}

/// `program` in the object, or the error for a program it lacks (a build problem).
fn program_mut<'a>(
    ebpf: &'a mut Ebpf,
    program: &'static str,
) -> Result<&'a mut aya::programs::Program, ProbeError> {
    ebpf.program_mut(program)
        .ok_or(ProbeError::MissingProgram(program))
}

/// The kernel charges BPF memory to the memory cgroup (5.11+); raising `RLIMIT_MEMLOCK` is
/// only needed on older kernels and may be refused: not fatal.
fn raise_memlock() {
    let unlimited = nix::sys::resource::RLIM_INFINITY;
    if let Err(e) = nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_MEMLOCK,
        unlimited,
        unlimited,
    ) {
        tracing::debug!("cannot raise RLIMIT_MEMLOCK: {e}");
    }
}

/// The loaded programs and their maps. One owner; dropping it detaches everything.
pub struct Probes {
    ebpf: Ebpf,
    mode: ProbeMode,
    /// Why this mode (and what failed before it).
    why: String,
    links: Vec<(&'static str, Hook, Link)>,
    /// Programs that are not required and could not load or attach here, with why.
    skipped: Vec<(&'static str, String)>,
}

/// The probe mode asked for in `CAPMON_PROBE_MODE` (`auto` or unset: none).
pub fn requested_mode() -> Result<Option<ProbeMode>, ProbeError> {
    match std::env::var("CAPMON_PROBE_MODE") {
        Ok(v) => parse_mode(&v),
        Err(_) => Ok(None),
    }
}

/// `auto` (none), or a mode's name.
pub fn parse_mode(text: &str) -> Result<Option<ProbeMode>, ProbeError> {
    match text {
        "" | "auto" => Ok(None),
        other => ProbeMode::parse(other)
            .map(Some)
            .ok_or_else(|| ProbeError::BadMode(other.to_owned())),
    }
}

/// The error for a map the object lacks (a build problem).
fn missing_map(name: &'static str) -> ProbeError {
    ProbeError::Map(name, aya::maps::MapError::InvalidName { name: name.into() })
}

impl Probes {
    /// Loads the object and every program of the best mode this kernel loads (without
    /// attaching).
    pub fn load() -> Result<Self, ProbeError> {
        Self::first_working(None, |_| Ok(()))
    }

    /// The modes to try: `requested` alone, or this kernel's candidates, best first.
    fn candidates(requested: Option<ProbeMode>) -> Result<Vec<ProbeMode>, ProbeError> {
        Ok(match requested {
            Some(ProbeMode::Fexit) if Preemption::of_running_kernel().preempts_fexit() => {
                return Err(ProbeError::FexitPreempted(
                    Preemption::of_running_kernel().name(),
                ));
            }
            Some(m) => vec![m],
            None => ProbeMode::candidates(&Btf::from_sys_fs().map_err(ProbeError::Btf)?),
        })
    }

    /// The first mode (of `requested`, or this kernel's candidates) whose programs load and
    /// pass `then`; a mode asked for is not replaced by another.
    fn first_working(
        requested: Option<ProbeMode>,
        then: impl Fn(&mut Probes) -> Result<(), ProbeError>,
    ) -> Result<Self, ProbeError> {
        let mut failed: Vec<String> = Vec::new();
        let mut last = None;
        for mode in Self::candidates(requested)? {
            let tried = Self::load_mode(mode).and_then(|mut p| then(&mut p).map(|()| p));
            match tried {
                Ok(mut p) => {
                    let preemption = Preemption::of_running_kernel();
                    let why = match mode {
                        ProbeMode::Kprobe if preemption.preempts_fexit() => format!(
                            "{}, not fexit: this kernel preempts kernel code ({}), and fexit \
                             programs run with migration disabled only",
                            mode.why(),
                            preemption.name()
                        ),
                        _ => mode.why().to_owned(),
                    };
                    p.why = match (requested, failed.is_empty()) {
                        (Some(_), _) => format!("asked for ({why})"),
                        (None, true) => why,
                        (None, false) => format!("{}; {why}", failed.join("; ")),
                    };
                    return Ok(p);
                }
                Err(e) => {
                    tracing::info!(mode = mode.name(), "probe mode unavailable: {e}");
                    failed.push(format!("{} failed: {e}", mode.name()));
                    last = Some(e);
                }
            }
        }
        match (requested, last) {
            (Some(_), Some(e)) => Err(e),
            _ => Err(ProbeError::NoMode {
                tried: if failed.is_empty() && Preemption::of_running_kernel().preempts_fexit() {
                    "no kprobes (CONFIG_KPROBES), and the fexit mode is not safe where the \
                     kernel preempts kernel code (PREEMPT_RT, full preemption)"
                        .into()
                } else if failed.is_empty() {
                    "no kprobes (CONFIG_KPROBES)".into()
                } else {
                    failed.join("; ")
                },
            }),
        }
    }

    /// Why this mode was chosen (and what failed before it).
    pub fn why(&self) -> &str {
        &self.why
    }

    /// Programs that are not required and could not load or attach here, with why.
    pub fn skipped(&self) -> &[(&'static str, String)] {
        &self.skipped
    }

    /// Number of attached programs.
    pub fn attached(&self) -> usize {
        self.links.len()
    }

    /// Each attached program's name and file descriptor.
    pub fn attached_programs(
        &self,
    ) -> impl Iterator<Item = (&'static str, std::os::fd::BorrowedFd<'_>)> {
        use std::os::fd::AsFd as _;
        self.links.iter().filter_map(|(name, _, _)| {
            let fd = self.ebpf.program(name)?.fd().ok()?;
            Some((*name, fd.as_fd()))
        })
    }

    /// The probe mode.
    pub fn mode(&self) -> ProbeMode {
        self.mode
    }

    /// Loads the object and the programs of `mode` (the verifier runs here) without attaching.
    pub fn load_mode(mode: ProbeMode) -> Result<Self, ProbeError> {
        raise_memlock();
        let btf = Btf::from_sys_fs().map_err(ProbeError::Btf)?;
        let globals = Self::globals();
        let mut loader = EbpfLoader::new();
        // TASKS is a task-storage map, which aya creates but has no userspace wrapper for; only
        // the kernel side uses it.
        loader.btf(Some(&btf)).allow_unsupported_maps();
        for (name, value) in &globals {
            loader.override_global(name, value, true);
        }
        let mut ebpf = loader.load(EBPF_OBJECT).map_err(ProbeError::Load)?;
        let mut skipped = Vec::new();
        for probe in mode.programs() {
            match load_one(&mut ebpf, &btf, probe) {
                Ok(()) => {}
                Err(e) if !probe.required => {
                    tracing::warn!("{e}: skipped ({})", probe.fallback);
                    skipped.push((probe.program, e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        let mut probes = Self {
            ebpf,
            mode,
            why: mode.why().to_owned(),
            links: Vec::new(),
            skipped,
        };
        probes.mark_running_cgroups();
        Ok(probes)
    }

    /// The read-only globals the programs read, as (name, value), for this kernel: syscall
    /// numbers and the BTF offsets of the fields the programs read.
    fn globals() -> [(&'static str, u64); 21] {
        let arch = Arch::host();
        let fields = KernelOffsets::from_kernel();
        let (setid_base, setid_mask) = setid_syscalls(arch);
        let (chmod_arg1, chmod_arg2) = chmod_syscalls(arch);
        [
            ("SYSCALL_NR_OFFSET", syscall_nr_offset(arch)),
            (
                "EXECVE_NR",
                u64::from(arch.syscall_number("execve").unwrap_or(59)),
            ),
            (
                "EXECVEAT_NR",
                u64::from(arch.syscall_number("execveat").unwrap_or(322)),
            ),
            ("REAL_CRED_OFFSET", fields.real_cred),
            ("SECCOMP_MODE_OFFSET", fields.seccomp_mode),
            ("CRED_IDS_OFFSET", fields.cred_ids),
            ("TASK_CGROUPS_OFFSET", fields.cgroup_chain[0]),
            ("CSS_SET_DFL_CGRP_OFFSET", fields.cgroup_chain[1]),
            ("CGROUP_KN_OFFSET", fields.cgroup_chain[2]),
            ("KERNFS_NODE_ID_OFFSET", fields.cgroup_chain[3]),
            ("CRED_CAPS_OFFSET", fields.cred_caps),
            ("TASK_ATOMIC_FLAGS_OFFSET", fields.atomic_flags),
            ("CGROUP_ROOT_OFFSET", fields.cgroup_root[0]),
            ("CGROUP_ROOT_HIERARCHY_ID_OFFSET", fields.cgroup_root[1]),
            ("SETID_BASE", setid_base),
            ("SETID_MASK", setid_mask),
            ("CHMOD_ARG1_NRS", chmod_arg1),
            ("CHMOD_ARG2_NRS", chmod_arg2),
            ("PT_REGS_ARG1_OFFSET", syscall_arg_offset(arch, 1)),
            ("PT_REGS_ARG2_OFFSET", syscall_arg_offset(arch, 2)),
            ("MMAP_MIN_ADDR", mmap_min_addr()),
        ]
    }

    /// Cgroups that already exist are past their runtime setup: their first execve happened
    /// before the probes were attached, so the kernel side cannot see it.
    fn mark_running_cgroups(&mut self) {
        match crate::containers::cgroup::find_cgroup2_mount() {
            Ok(mount) => {
                if let Err(e) =
                    self.mark_exec_seen(crate::containers::cgroup::all_cgroup_ids(&mount))
                {
                    tracing::warn!("cannot mark the running cgroups: {e}");
                }
            }
            Err(e) => tracing::warn!(
                "{e}; checks in cgroups that already run may be classed as runtime setup"
            ),
        }
    }

    /// Loads and attaches every program of the mode `CAPMON_PROBE_MODE` asks for, else of the
    /// best mode that attaches here.
    pub fn attach() -> Result<Self, ProbeError> {
        Self::attach_mode(requested_mode()?)
    }

    /// Loads and attaches every program of `requested`, or of the best mode that attaches
    /// here; fails on the first program that cannot attach.
    pub fn attach_mode(requested: Option<ProbeMode>) -> Result<Self, ProbeError> {
        Self::first_working(requested, Probes::attach_all)
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
        for probe in self.mode.programs() {
            let program = probe.program;
            if self.links.iter().any(|(p, _, _)| *p == program)
                || self.skipped.iter().any(|(p, _)| *p == program)
            {
                continue;
            }
            match attach_one(&mut self.ebpf, probe) {
                Ok(link) => self.links.push((program, probe.hook, link)),
                Err(e) if !probe.required => {
                    tracing::warn!("{e}: skipped ({})", probe.fallback);
                    self.skipped.push((program, e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Detaches every program (they stay loaded, maps keep their contents).
    pub fn detach_all(&mut self) -> Result<(), ProbeError> {
        for (program, hook, link) in self.links.drain(..).rev() {
            let err = attach_error(program, hook);
            let prog = program_mut(&mut self.ebpf, program)?;
            match link {
                Link::Tp(link) => {
                    let prog: &mut BtfTracePoint = prog.try_into().map_err(err)?;
                    prog.detach(link).map_err(err)?;
                }
                Link::Kprobe(link) => {
                    let prog: &mut KProbe = prog.try_into().map_err(err)?;
                    prog.detach(link).map_err(err)?;
                }
                Link::Fexit(link) => {
                    let prog: &mut FExit = prog.try_into().map_err(err)?;
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

    pub(super) fn map<'a, M>(&'a self, name: &'static str) -> Result<M, ProbeError>
    where
        M: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self.ebpf.map(name).ok_or_else(|| missing_map(name))?;
        M::try_from(map).map_err(|e| ProbeError::Map(name, e))
    }

    pub(super) fn map_mut<'a, M>(&'a mut self, name: &'static str) -> Result<M, ProbeError>
    where
        M: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self.ebpf.map_mut(name).ok_or_else(|| missing_map(name))?;
        M::try_from(map).map_err(|e| ProbeError::Map(name, e))
    }
}
