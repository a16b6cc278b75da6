//! The short-lived cgroup that `capmon record` runs a command in: created under the cgroup2
//! mount, emptied (what the command left running is killed) and removed afterwards.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::containers::cgroup::{CgroupError, cgroup_id, kill_all, kill_and_remove};

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

    /// Kills what is left in the cgroup (children the command left behind).
    pub fn kill_all(&self) {
        kill_all(&self.path);
    }

    /// Waits (up to 5 s) for the cgroup to empty, then removes it.
    pub fn remove(self) -> Result<(), CgroupError> {
        kill_and_remove(&self.path)
    }
}
