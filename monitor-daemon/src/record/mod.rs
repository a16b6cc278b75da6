//! `capmon record -- CMD`: run one command in a fresh cgroup with the probes attached, wait for
//! it (and for whatever it left running, which is killed), and report only what happened in
//! that cgroup. Built on the kernel reader ([`crate::kernel::reader`]).

mod cgroup;
mod error;
mod outputs;

use std::{
    ffi::CString,
    io,
    os::unix::{ffi::OsStrExt, process::ExitStatusExt},
    path::PathBuf,
    process::ExitStatus,
};

use capmon_core::report::{self, RecordReport};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

pub use self::{
    cgroup::RecordCgroup,
    error::{EXIT_CANNOT_START, RecordError},
    outputs::write_outputs,
};
use crate::{
    containers::cgroup::{CgroupError, find_cgroup2_mount},
    kernel::reader::{KernelReader, preflight},
};

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

/// The name recommendations use for a recorded command: its program's file name.
pub fn command_name(command: &[String]) -> String {
    command
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "command".into())
}

/// Runs the command under the probes and reports what it did.
pub async fn record(opts: &RecordOptions) -> Result<Recorded, RecordError> {
    let Some(program) = opts.command.first() else {
        return Err(RecordError::NoCommand);
    };
    // Refuse early, before the output directory is created or the command runs.
    preflight()?;
    if let Some(dir) = &opts.output_dir {
        outputs::check_output_dir(dir)?;
    }
    let mount = find_cgroup2_mount()?;
    let mut reader = KernelReader::start()?;
    let cg = RecordCgroup::create(&mount, &format!("capmon-record-{}", std::process::id()))?;
    tracing::debug!(path = %cg.path.display(), id = cg.id, "created recording cgroup");
    let status = match run_in(&cg, program, &opts.command[1..], &mut reader).await {
        Ok(status) => status,
        Err(e) => {
            let _ = cg.remove();
            return Err(e);
        }
    };
    // What the command left running is part of the recording; it is stopped now.
    cg.kill_all();
    let id = cg.id;
    let removed = tokio::task::spawn_blocking(move || cg.remove()).await;
    let observed = reader.observe(id)?;
    match removed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("{e}"),
        Err(e) => tracing::warn!("cgroup removal task failed: {e}"),
    }
    let (exit_code, signal) = exit_of(status);
    let mut ctx = report::BuildContext::new(own_bounding_set());
    // The command ran as root with capmon's own bounding set.
    ctx.uid = Some(0);
    let report = report::build(&ctx, opts.command.clone(), exit_code, signal, &observed);
    let written = match &opts.output_dir {
        Some(dir) => write_outputs(dir, &opts.name, &report)?,
        None => Vec::new(),
    };
    Ok(Recorded { report, written })
}

/// Starts `program` inside `cg` and waits for it, draining the ring buffer whenever it has
/// records. Like `time` and `strace`, survives Ctrl-C (the command gets it too).
async fn run_in(
    cg: &RecordCgroup,
    program: &str,
    args: &[String],
    reader: &mut KernelReader,
) -> Result<ExitStatus, RecordError> {
    // SAFETY: the fd belongs to the reader's ring buffer, which outlives `ready` (`ready` is
    // dropped at the end of this function; the reader lives in the caller).
    let ready = unsafe {
        AsyncFd::register_with_interest(reader.events_fd(), tokio::io::Interest::READABLE)
    }
    .map_err(|e| RecordError::Io(e.into()))?;
    let mut child = spawn_in(cg, program, args)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(RecordError::Io)?;
    loop {
        tokio::select! {
            status = child.wait() => return status.map_err(RecordError::Io),
            guard = ready.readable() => {
                let mut guard = guard.map_err(RecordError::Io)?;
                reader.drain();
                guard.clear_ready();
            }
            _ = sigint.recv() => tracing::info!("interrupted; waiting for the command to exit"),
        }
    }
}

/// Spawns `program` so that it joins `cg` before it executes.
fn spawn_in(
    cg: &RecordCgroup,
    program: &str,
    args: &[String],
) -> Result<tokio::process::Child, RecordError> {
    let procs = CString::new(cg.procs_file().as_os_str().as_bytes()).map_err(|_| {
        RecordError::Cgroup(CgroupError::Io {
            action: "NUL byte in path",
            path: cg.procs_file(),
            source: io::ErrorKind::InvalidInput.into(),
        })
    })?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
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
    cmd.spawn().map_err(|source| RecordError::Spawn {
        command: program.to_owned(),
        source,
    })
}

/// (exit code, signal): 128 + the signal when a signal killed it, as shells report it.
fn exit_of(status: ExitStatus) -> (i32, Option<i32>) {
    match (status.code(), status.signal()) {
        (Some(code), _) => (code, None),
        (None, Some(sig)) => (128 + sig, Some(sig)),
        (None, None) => (1, None),
    }
}

/// capmon's own bounding set (`CAP_*`, by number): what a recorded command holds.
fn own_bounding_set() -> Vec<String> {
    caps::read(None, caps::CapSet::Bounding)
        .map(|set| {
            let mut v: Vec<_> = set.into_iter().collect();
            v.sort_by_key(|c| c.index());
            v.into_iter().map(|c| c.to_string()).collect()
        })
        .unwrap_or_default()
}
