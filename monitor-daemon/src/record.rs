//! `capmon record -- CMD`: run one command in a fresh cgroup with the probes attached, wait for
//! it (and for whatever it left running, which is killed), and report only what happened in
//! that cgroup.

use std::{
    ffi::CString,
    fs, io,
    os::unix::{ffi::OsStrExt, process::ExitStatusExt},
    path::{Path, PathBuf},
};

use aya::maps::{MapData, RingBuf};
use std::collections::HashMap;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use capmon_core::{
    recommend::Format,
    report::{self, Observed, RecordReport},
};

use crate::{
    containers::cgroup::{self, CgroupError, RecordCgroup},
    probes::{Event, ProbeError, Probes, Symbolizer, decode},
};

/// Exit code when the command cannot be started (as a shell does).
pub const EXIT_CANNOT_START: i32 = 127;

/// Errors of `capmon record`.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// No command after `--`.
    #[error("no command given: use `capmon record [--json] [--output-dir DIR] -- CMD [ARGS...]`")]
    NoCommand,
    /// Not root.
    #[error(
        "capmon must run as root (it loads eBPF programs, which needs CAP_BPF, CAP_PERFMON \
         and CAP_SYSLOG, and `record` creates a cgroup): run it with sudo"
    )]
    NotRoot,
    /// Root, but without capabilities capmon needs.
    #[error(
        "capmon runs as root but lacks {0}: it needs CAP_BPF (maps and programs), CAP_PERFMON \
         (tracing programs, kernel stacks) and CAP_SYSLOG (kernel symbol addresses)"
    )]
    MissingCaps(String),
    /// No kernel BTF.
    #[error(
        "this kernel exposes no BTF (/sys/kernel/btf/vmlinux is missing): capmon needs a kernel \
         built with CONFIG_DEBUG_INFO_BTF=y; `capmon check` tells more"
    )]
    NoBtf,
    /// The output directory cannot be used.
    #[error("output directory {path} is not writable: {source}; choose another with --output-dir")]
    OutputDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// cgroup trouble.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// Probe trouble.
    #[error(transparent)]
    Probes(#[from] ProbeError),
    /// The command could not be started.
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// argv[0].
        command: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Waiting for the command or reading events failed.
    #[error("while the command ran: {0}")]
    Io(#[source] io::Error),
    /// Kernel symbols cannot be read.
    #[error("cannot read /proc/kallsyms to name kernel call sites: {0}")]
    Kallsyms(#[source] io::Error),
    /// Writing a result file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl RecordError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            RecordError::Spawn { .. } => EXIT_CANNOT_START,
            _ => 1,
        }
    }
}

/// What to record.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Where to write `report.json` and the recommendation files, if anywhere.
    pub output_dir: Option<PathBuf>,
    /// Name for the recommendation (file and resource names).
    pub name: String,
}

/// What `capmon record` produced.
#[derive(Debug)]
pub struct Recorded {
    /// The report.
    pub report: RecordReport,
    /// Files written into the output directory.
    pub written: Vec<&'static str>,
}

/// Makes sure `dir` exists and a file can be created in it.
fn check_output_dir(dir: &Path) -> Result<(), RecordError> {
    let err = |source| RecordError::OutputDir {
        path: dir.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(err)?;
    let probe = dir.join(format!(".capmon-write-test-{}", std::process::id()));
    fs::write(&probe, b"").map_err(err)?;
    let _ = fs::remove_file(probe);
    Ok(())
}

/// Writes the result files into `dir`: `report.json` and the recommendation in every format
/// ([`Format::file_name`]); the seccomp formats only when a profile could be generated.
/// Returns the names written.
pub fn write_outputs(
    dir: &Path,
    name: &str,
    report: &RecordReport,
) -> Result<Vec<&'static str>, RecordError> {
    let write = |file: &str, text: String| {
        let path = dir.join(file);
        fs::write(&path, text).map_err(|source| RecordError::Write { path, source })
    };
    write(
        "report.json",
        serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
    )?;
    let mut written = vec!["report.json"];
    let advice = report.advice(name);
    for format in Format::ALL {
        match advice.render(format) {
            Ok(text) => {
                write(format.file_name(), text)?;
                written.push(format.file_name());
            }
            Err(e) => tracing::debug!("{format}: {e}"),
        }
    }
    Ok(written)
}

/// The name recommendations use for a recorded command: its program's file name.
pub fn command_name(command: &[String]) -> String {
    command
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "command".into())
}

/// What the probes need before anything is loaded: root and kernel BTF.
fn preflight() -> Result<(), RecordError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(RecordError::NotRoot);
    }
    let missing = crate::probes::missing_caps();
    if !missing.is_empty() {
        return Err(RecordError::MissingCaps(missing.join(", ")));
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(RecordError::NoBtf);
    }
    Ok(())
}

/// The probes, their ring buffer and a kernel symbolizer: observes any cgroup by id.
/// `capmon record` uses it for its own cgroup; tests use it for containers whose cgroup a
/// container runtime creates.
pub struct Recorder {
    probes: Probes,
    ring: RingBuf<MapData>,
    symbolizer: Symbolizer,
    cap_events: HashMap<monitor_common::CapKey, monitor_common::CapEvent>,
    deny_events: HashMap<monitor_common::DenyKey, monitor_common::DenyEvent>,
    undecodable: u64,
    drained: (u64, u64),
    frames: HashMap<u64, std::sync::Arc<Vec<String>>>,
}

impl Recorder {
    /// Checks the preconditions, loads and attaches the probes.
    pub fn start() -> Result<Self, RecordError> {
        preflight()?;
        let symbolizer = Symbolizer::from_kallsyms().map_err(RecordError::Kallsyms)?;
        let mut probes = Probes::attach()?;
        let ring = probes.take_events()?;
        Ok(Self {
            probes,
            ring,
            symbolizer,
            cap_events: HashMap::new(),
            deny_events: HashMap::new(),
            undecodable: 0,
            drained: (0, 0),
            frames: HashMap::new(),
        })
    }

    /// The ring buffer's fd, to wait for readability.
    pub fn events_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd as _;
        self.ring.as_raw_fd()
    }

    /// Takes every record waiting in the ring buffer.
    pub fn drain(&mut self) {
        while let Some(item) = self.ring.next() {
            match decode(&item) {
                Ok(Event::Cap(e)) => {
                    self.drained.0 += 1;
                    self.cap_events.entry(e.key).or_insert(e);
                }
                Ok(Event::Deny(e)) => {
                    self.drained.1 += 1;
                    self.deny_events.entry(e.key).or_insert(e);
                }
                Err(err) => {
                    tracing::debug!("undecodable ring-buffer record: {err}");
                    self.undecodable += 1;
                }
            }
        }
    }

    /// Ring-buffer records taken so far: (capability-check first sightings, denials).
    pub fn drained(&self) -> (u64, u64) {
        self.drained
    }

    /// The probes.
    pub fn probes(&self) -> &Probes {
        &self.probes
    }

    /// Everything recorded so far, for every cgroup with activity (one pass over each map).
    pub fn observe_all(
        &mut self,
    ) -> Result<std::collections::BTreeMap<u64, Observed>, RecordError> {
        self.collect(|_| true)
    }

    /// Everything recorded for one cgroup so far.
    pub fn observe(&mut self, cgroup_id: u64) -> Result<Observed, RecordError> {
        let mut one = self.collect(|id| id == cgroup_id)?;
        match one.remove(&cgroup_id) {
            Some(o) => Ok(o),
            None => Ok(Observed {
                counters: self.probes.counters()?,
                undecodable: self.undecodable,
                ..Default::default()
            }),
        }
    }

    /// What the maps and the ring buffer hold for the cgroups `keep` selects, by cgroup.
    fn collect(
        &mut self,
        keep: impl Fn(u64) -> bool + Copy,
    ) -> Result<std::collections::BTreeMap<u64, Observed>, RecordError> {
        use std::collections::BTreeMap;
        self.drain();
        let counters = self.probes.counters()?;
        let mut all: BTreeMap<u64, Observed> = BTreeMap::new();
        for (key, count) in self.probes.cap_checks(keep)? {
            all.entry(key.cgroup_id)
                .or_default()
                .cap_checks
                .push((key, count));
        }
        for (key, count) in self.probes.denials(keep)? {
            all.entry(key.cgroup_id)
                .or_default()
                .denials
                .push((key, count));
        }
        for (id, (used, runtime)) in self.probes.syscalls(keep)? {
            let o = all.entry(id).or_default();
            o.syscalls = used;
            o.runtime_syscalls = runtime;
        }
        for (k, v) in &self.cap_events {
            if let Some(o) = all.get_mut(&k.cgroup_id) {
                o.cap_events.insert(*k, *v);
            }
        }
        for (k, v) in &self.deny_events {
            if let Some(o) = all.get_mut(&k.cgroup_id) {
                o.deny_events.insert(*k, *v);
            }
        }
        for o in all.values_mut() {
            o.counters = counters.clone();
            o.undecodable = self.undecodable;
            for (key, _) in &o.cap_checks {
                if let std::collections::hash_map::Entry::Vacant(e) = o.stacks.entry(key.stack) {
                    e.insert(self.frames(key.stack));
                }
            }
        }
        Ok(all)
    }

    /// The symbolized frames of a stack (a stack hash always names the same frames, so each
    /// is symbolized once).
    fn frames(&mut self, stack: u64) -> std::sync::Arc<Vec<String>> {
        if let Some(f) = self.frames.get(&stack) {
            return f.clone();
        }
        let f = std::sync::Arc::new(
            self.probes
                .stack(stack)
                .into_iter()
                .map(|ip| self.symbolizer.symbol(ip))
                .collect::<Vec<String>>(),
        );
        if self.frames.len() > 50_000 {
            self.frames.clear();
        }
        if !f.is_empty() {
            self.frames.insert(stack, f.clone());
        }
        f
    }

    /// Drops what is kept for cgroups that are gone, in the kernel and here.
    pub fn forget(&mut self, gone: &std::collections::BTreeSet<u64>) -> Result<(), RecordError> {
        self.probes.forget_cgroups(gone)?;
        self.drop_events(gone);
        Ok(())
    }

    fn drop_events(&mut self, ids: &std::collections::BTreeSet<u64>) {
        self.cap_events.retain(|k, _| !ids.contains(&k.cgroup_id));
        self.deny_events.retain(|k, _| !ids.contains(&k.cgroup_id));
    }

    /// Drops the counts of cgroups nobody reports on (see [`Probes::drop_counts`]).
    pub fn trim(&mut self, ids: &std::collections::BTreeSet<u64>) -> Result<(), RecordError> {
        self.probes.drop_counts(ids)?;
        self.drop_events(ids);
        Ok(())
    }
}

/// Runs the command under the probes and reports what it did.
pub async fn record(opts: &RecordOptions) -> Result<Recorded, RecordError> {
    let Some(program) = opts.command.first() else {
        return Err(RecordError::NoCommand);
    };
    // Refuse early, before the output directory is created or the command runs.
    preflight()?;
    if let Some(dir) = &opts.output_dir {
        check_output_dir(dir)?;
    }
    let mount = cgroup::find_cgroup2_mount()?;
    let mut recorder = Recorder::start()?;
    // SAFETY: the fd belongs to the recorder's ring buffer, which outlives `ready` (both live
    // until the end of this function and `ready` is declared after it).
    let ready = unsafe {
        AsyncFd::register_with_interest(recorder.events_fd(), tokio::io::Interest::READABLE)
    }
    .map_err(|e| RecordError::Io(e.into()))?;

    let name = format!("capmon-record-{}", std::process::id());
    let cg = RecordCgroup::create(&mount, &name)?;
    tracing::debug!(path = %cg.path.display(), id = cg.id, "created recording cgroup");
    let procs = CString::new(cg.procs_file().as_os_str().as_bytes()).map_err(|_| {
        RecordError::Cgroup(CgroupError::Io {
            action: "NUL byte in path",
            path: cg.procs_file(),
            source: io::ErrorKind::InvalidInput.into(),
        })
    })?;

    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&opts.command[1..]);
    // SAFETY: the closure only makes async-signal-safe calls (open, write, close) and does not
    // allocate.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            let err = io::Error::last_os_error();
            libc::close(fd);
            if n != 1 { Err(err) } else { Ok(()) }
        });
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(source) => {
            let _ = cg.remove();
            return Err(RecordError::Spawn {
                command: program.clone(),
                source,
            });
        }
    };

    // Like `time` and `strace`, survive Ctrl-C (the command gets it too) and report.
    let mut sigint = signal(SignalKind::interrupt()).map_err(RecordError::Io)?;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(RecordError::Io)?,
            guard = ready.readable() => {
                let mut guard = guard.map_err(RecordError::Io)?;
                recorder.drain();
                guard.clear_ready();
            }
            _ = sigint.recv() => tracing::info!("interrupted; waiting for the command to exit"),
        }
    };
    // What the command left running is part of the recording; it is stopped now.
    cg.kill_all();
    let id = cg.id;
    let removed = tokio::task::spawn_blocking(move || cg.remove()).await;
    let observed = recorder.observe(id)?;
    match removed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("{e}"),
        Err(e) => tracing::warn!("cgroup removal task failed: {e}"),
    }

    let (exit_code, signal) = match (status.code(), status.signal()) {
        (Some(code), _) => (code, None),
        (None, Some(sig)) => (128 + sig, Some(sig)),
        (None, None) => (1, None),
    };
    // The command ran as root with capmon's own bounding set.
    let granted = caps::read(None, caps::CapSet::Bounding)
        .map(|set| {
            let mut v: Vec<_> = set.into_iter().collect();
            v.sort_by_key(|c| c.index());
            v.into_iter().map(|c| c.to_string()).collect()
        })
        .unwrap_or_default();
    let mut ctx = report::BuildContext::new(granted);
    ctx.uid = Some(0);
    let report = report::build(&ctx, opts.command.clone(), exit_code, signal, &observed);
    let written = match &opts.output_dir {
        Some(dir) => write_outputs(dir, &opts.name, &report)?,
        None => Vec::new(),
    };
    Ok(Recorded { report, written })
}
