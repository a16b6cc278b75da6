//! Reads a container's posture from one of its processes: `/proc/<pid>/status` and its LSM
//! label (`/proc/<pid>/attr/apparmor/current` or `/proc/<pid>/attr/current`), parsed by
//! [`capmon_core::posture`].

use std::{fs, io, path::Path};

use capmon_core::posture::{Posture, StatusError, from_status, is_runtime_setup};
use procfs_core::FromRead as _;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum PostureError {
    /// The status text could not be parsed.
    #[error(transparent)]
    Parse(#[from] StatusError),
    /// Reading failed for another reason than the process being gone.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn read_optional(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_end_matches(['\0', '\n']).to_owned())
        .filter(|s| !s.is_empty())
}

/// The host's bounding set (that of PID 1), 0 when unreadable.
pub fn host_bounding() -> u64 {
    fs::read_to_string("/proc/1/status")
        .ok()
        .and_then(|t| procfs_core::process::Status::from_read(t.as_bytes()).ok())
        .and_then(|s| s.capbnd)
        .unwrap_or(0)
}

/// The LSM label of a live process (AppArmor's, else the generic one); `None` when it has
/// none, no LSM reports one, or it is gone.
pub fn read_label(pid: i32) -> Option<String> {
    read_optional(&format!("/proc/{pid}/attr/apparmor/current"))
        .or_else(|| read_optional(&format!("/proc/{pid}/attr/current")))
}

/// Reads a live process; `Ok(None)` when it exited meanwhile (normal).
pub fn read_pid(pid: i32, host_bounding: u64) -> Result<Option<Posture>, PostureError> {
    let path = format!("/proc/{pid}/status");
    let status = match fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => return Ok(None),
        Err(source) => return Err(PostureError::Io { path, source }),
    };
    let label = read_label(pid);
    Ok(Some(from_status(
        pid,
        &status,
        label.as_deref(),
        host_bounding,
    )?))
}

/// Reads the first process of a cgroup that is still alive and is not the container runtime
/// setting it up; `Ok(None)` when it has none (yet).
pub fn read_cgroup(cgroup_dir: &Path, host_bounding: u64) -> Result<Option<Posture>, PostureError> {
    let procs = cgroup_dir.join("cgroup.procs");
    let text = match fs::read_to_string(&procs) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PostureError::Io {
                path: procs.display().to_string(),
                source,
            });
        }
    };
    for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        if read_optional(&format!("/proc/{pid}/comm")).is_none_or(|c| is_runtime_setup(&c)) {
            continue;
        }
        if let Some(p) = read_pid(pid, host_bounding)? {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_BND: u64 = 0x0000_01ff_feff_ffff;

    #[test]
    fn a_vanished_process_is_none() {
        // pid_max is at most 2^22, so this pid never exists.
        assert!(matches!(read_pid(i32::MAX, HOST_BND), Ok(None)));
        assert!(matches!(
            read_cgroup(Path::new("/nonexistent/cgroup"), HOST_BND),
            Ok(None)
        ));
    }
}
