//! What can go wrong in `capmon record`, and the exit code for each.

use std::{io, path::PathBuf};

use crate::{containers::cgroup::CgroupError, kernel::reader::KernelError};

/// Exit code when the command cannot be started (as a shell does).
pub const EXIT_CANNOT_START: i32 = 127;

/// Errors of `capmon record`.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// No command after `--`.
    #[error("no command given: use `capmon record [--json] [--output-dir DIR] -- CMD [ARGS...]`")]
    NoCommand,
    /// The probes cannot be loaded (not root, no BTF, ...).
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The output directory cannot be used.
    #[error("output directory {path} is not writable: {source}; choose another with --output-dir")]
    OutputDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// cgroup trouble (`record` creates a cgroup for the command).
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
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
