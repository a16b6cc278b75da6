//! `capmon record -- CMD`: run one command in a fresh cgroup with the probes attached, wait for
//! it (and for whatever it left running, which is killed), and report only what happened in
//! that cgroup. Built on the kernel reader ([`crate::kernel::reader`]).

mod cgroup;
mod error;
pub mod filter;
mod launch;
mod outputs;
mod verify;

use std::{io, os::unix::process::ExitStatusExt, path::PathBuf, process::ExitStatus};

use capmon_core::{
    report::{
        self, RecordReport,
        verify::{Digest, Outcome},
    },
    seccomp::ArchList,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    task::JoinHandle,
};

pub use self::{
    cgroup::RecordCgroup,
    error::{EXIT_CANNOT_START, RecordError},
    outputs::write_outputs,
    verify::VerifyOptions,
};
use crate::{
    containers::cgroup::find_cgroup2_mount,
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
    /// Prove the recommendation by running the command again (`--verify`).
    pub verify: Option<VerifyOptions>,
    /// Architectures the seccomp outputs are written for (`--arch`); `None`: the one
    /// recorded on.
    pub arch: Option<ArchList>,
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

/// Runs the command under the probes and reports what it did; with `verify`, proves the
/// recommendation by running it again ([`verify`]).
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
    let compared = opts.verify.is_some();
    let (status, streams) =
        match run_in(&cg, program, &opts.command[1..], compared, &mut reader).await {
            Ok(ran) => ran,
            Err(e) => {
                let _ = cg.remove();
                return Err(e);
            }
        };
    // What the command left running is part of the recording; it is stopped now.
    cg.kill_all();
    let (stdout, stderr) = match streams {
        Some((out, err)) => (out.await.unwrap_or_default(), err.await.unwrap_or_default()),
        None => Default::default(),
    };
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
    let mut report = report::build(&ctx, opts.command.clone(), exit_code, signal, &observed);
    if let Some(verify_opts) = opts.verify.clone() {
        let recorded = Outcome {
            exit_code,
            signal,
            timed_out: false,
            stdout,
            stderr,
        };
        let (command, for_runs) = (opts.command.clone(), report.clone());
        let verification = tokio::task::spawn_blocking(move || {
            verify::verify(&mount, &command, recorded, &for_runs, &verify_opts, reader)
        })
        .await
        .map_err(|e| RecordError::Io(io::Error::other(e)))?;
        report = report.verified(&ctx, verification);
    }
    let written = match &opts.output_dir {
        Some(dir) => {
            let arches = opts.arch.clone().unwrap_or(ArchList::native(report.arch));
            write_outputs(dir, &opts.name, &report, &arches)?
        }
        None => Vec::new(),
    };
    Ok(Recorded { report, written })
}

/// The digests of a run's standard output and error, being read.
type Streams = (JoinHandle<Digest>, JoinHandle<Digest>);

/// Starts `program` inside `cg` and waits for it, draining the ring buffer whenever it has
/// records. Like `time` and `strace`, survives Ctrl-C (the command gets it too). With
/// `compared`, the command reads no input and its output is passed through and digested (the
/// streams end once nothing in the cgroup holds them).
async fn run_in(
    cg: &RecordCgroup,
    program: &str,
    args: &[String],
    compared: bool,
    reader: &mut KernelReader,
) -> Result<(ExitStatus, Option<Streams>), RecordError> {
    // SAFETY: the fd belongs to the reader's ring buffer, which outlives `ready` (`ready` is
    // dropped at the end of this function; the reader lives in the caller).
    let ready = unsafe {
        AsyncFd::register_with_interest(reader.events_fd(), tokio::io::Interest::READABLE)
    }
    .map_err(|e| RecordError::Io(e.into()))?;
    let mut cmd = launch::command(cg, program, args, launch::Setup::default())?;
    if compared {
        launch::piped(&mut cmd);
    }
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(|source| RecordError::Spawn {
            command: program.to_owned(),
            source,
        })?;
    let streams = match (child.stdout.take(), child.stderr.take()) {
        (Some(out), Some(err)) => Some((
            tokio::spawn(tee(out, tokio::io::stdout())),
            tokio::spawn(tee(err, tokio::io::stderr())),
        )),
        _ => None,
    };
    let mut sigint = signal(SignalKind::interrupt()).map_err(RecordError::Io)?;
    loop {
        tokio::select! {
            status = child.wait() => return Ok((status.map_err(RecordError::Io)?, streams)),
            guard = ready.readable() => {
                let mut guard = guard.map_err(RecordError::Io)?;
                reader.drain();
                guard.clear_ready();
            }
            _ = sigint.recv() => tracing::info!("interrupted; waiting for the command to exit"),
        }
    }
}

/// Copies `from` to `to` until it ends, returning its digest.
async fn tee(
    mut from: impl AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
) -> Digest {
    let mut digest = Digest::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return digest,
            Ok(n) => {
                digest.update(&buf[..n]);
                let _ = to.write_all(&buf[..n]).await;
                let _ = to.flush().await;
            }
        }
    }
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
