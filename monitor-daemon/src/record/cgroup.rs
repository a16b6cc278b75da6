//! The short-lived cgroup that `capmon record` runs a command in: created under the cgroup2
//! mount, emptied (what the command left running is killed) and removed afterwards.

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::containers::cgroup::{CgroupError, cgroup_id};

/// A cgroup created for one recording, removed by [`RecordCgroup::remove`].
#[derive(Debug)]
pub struct RecordCgroup {
    /// Its directory.
    pub path: PathBuf,
    /// Its id.
    pub id: u64,
}

impl RecordCgroup {
    /// Creates `<mount>/<name>`.
    pub fn create(mount: &Path, name: &str) -> Result<Self, CgroupError> {
        let path = mount.join(name);
        fs::create_dir(&path).map_err(|source| CgroupError::Io {
            action: "cannot create cgroup",
            path: path.clone(),
            source,
        })?;
        let id = cgroup_id(&path).map_err(|source| CgroupError::Io {
            action: "cannot stat cgroup",
            path: path.clone(),
            source,
        })?;
        Ok(Self { path, id })
    }

    /// The `cgroup.procs` file a process writes `0` to, to join.
    pub fn procs_file(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// Pids still in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.procs_file())
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Kills what is left in the cgroup (children the command left behind).
    pub fn kill_all(&self) {
        // cgroup.kill exists since Linux 5.14; fall back to signalling each pid.
        if fs::write(self.path.join("cgroup.kill"), "1").is_err() {
            for pid in self.pids() {
                // A pid that already exited just fails.
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }

    /// Waits (up to 5 s) for the cgroup to empty, then removes it.
    pub fn remove(self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match fs::remove_dir(&self.path) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    self.kill_all();
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    return Err(CgroupError::Busy(self.path.clone()));
                }
                Err(source) => {
                    return Err(CgroupError::Io {
                        action: "cannot remove cgroup",
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
    }
}
