//! cgroup v2 on this host: its mount (from `/proc/self/mountinfo`), the index of cgroup ids to
//! paths and identities. A cgroup's id, as `bpf_get_current_cgroup_id()`
//! returns it, is the inode number of its directory.

use std::{
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `/proc/self/mountinfo` could not be read.
    #[error("cannot read /proc/self/mountinfo: {0}")]
    MountInfo(#[source] io::Error),
    /// No cgroup2 file system is mounted.
    #[error(
        "no cgroup2 file system is mounted (looked in /proc/self/mountinfo); mount one, e.g. \
         `mount -t cgroup2 none /sys/fs/cgroup/unified`"
    )]
    NoCgroup2,
    /// Creating, joining or removing a cgroup failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The cgroup still had processes after they were killed.
    #[error("cgroup {0} still has processes after 5 s; remove it by hand with rmdir")]
    Busy(PathBuf),
}

/// The cgroup2 mount of this host.
pub fn find_cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(CgroupError::MountInfo)?;
    capmon_core::mountinfo::parse_cgroup2_mount(&text).ok_or(CgroupError::NoCgroup2)
}

/// Kills every process in the cgroup at `path`: `cgroup.kill` (Linux 5.14), or SIGKILL to each
/// pid of its `cgroup.procs` where the kernel lacks it.
pub fn kill_all(path: &Path) {
    if fs::write(path.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let procs = fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse().ok()) {
        // A pid that already exited just fails.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Removes the cgroup at `path`; while it still has processes (EBUSY), kills them and tries
/// again every 20 ms, for up to 5 s (killed tasks take a moment to leave).
pub fn kill_and_remove(path: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                kill_all(path);
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(CgroupError::Busy(path.to_owned()));
            }
            Err(source) => {
                return Err(CgroupError::Io {
                    action: "cannot remove cgroup",
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
}

/// The id of the cgroup at `path` (its inode number).
pub fn cgroup_id(path: &Path) -> io::Result<u64> {
    Ok(fs::metadata(path)?.ino())
}

/// Every cgroup directory under the cgroup2 mount (the mount itself included), with its id,
/// down to `max_depth` levels. Directories that vanish during the walk are skipped.
fn walk(mount: &Path, max_depth: usize) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![(mount.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(meta) = fs::metadata(&dir) else {
            continue;
        };
        out.push((dir.clone(), meta.ino()));
        if depth >= max_depth {
            continue;
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((entry.path(), depth + 1));
            }
        }
    }
    out
}

/// How deep the walks go (real hierarchies are well under 16 levels).
const MAX_DEPTH: usize = 32;

/// Ids of every cgroup under the cgroup2 mount (the mount itself included).
pub fn all_cgroup_ids(mount: &Path) -> Vec<u64> {
    walk(mount, MAX_DEPTH)
        .into_iter()
        .map(|(_, id)| id)
        .collect()
}

/// A cgroup known to the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupEntry {
    /// Path relative to the cgroup2 mount, starting with `/` (lossy UTF-8 for odd names).
    pub path: String,
    /// Who runs there.
    pub identity: capmon_core::attribution::Identity,
    /// The directory is gone (the container exited); what was observed is kept.
    pub exited: bool,
}

/// What a scan changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanChanges {
    /// Ids seen for the first time.
    pub added: Vec<u64>,
    /// Ids whose directory disappeared.
    pub exited: Vec<u64>,
}

/// cgroup id -> path and identity, for attributing what the kernel side keys by cgroup id.
/// Filled by a scan at startup (so containers that already run are known) and by the kernel
/// side's records of cgroups created and removed ([`CgroupIndex::learn`],
/// [`CgroupIndex::mark_exited`]: a container that lived milliseconds is known though its
/// directory is gone), rescanned when an unknown id shows up (at most once per `min_rescan`);
/// cgroups that disappear are marked exited, and forgotten only when told
/// ([`CgroupIndex::remove`]).
#[derive(Debug)]
pub struct CgroupIndex {
    mount: PathBuf,
    by_id: std::collections::HashMap<u64, CgroupEntry>,
    last_scan: Option<Instant>,
    min_rescan: Duration,
    max_depth: usize,
}

impl CgroupIndex {
    /// An empty index over the cgroup2 mount; call [`CgroupIndex::scan`] to fill it.
    pub fn new(mount: PathBuf) -> Self {
        Self {
            mount,
            by_id: Default::default(),
            last_scan: None,
            min_rescan: Duration::from_millis(200),
            max_depth: MAX_DEPTH,
        }
    }

    /// The mount this index walks.
    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// Walks the hierarchy (bounded depth); vanishing directories are skipped.
    pub fn scan(&mut self) -> ScanChanges {
        let mut seen = std::collections::HashSet::new();
        let mut changes = ScanChanges::default();
        for (dir, id) in walk(&self.mount, self.max_depth) {
            seen.insert(id);
            let rel = dir
                .strip_prefix(&self.mount)
                .map(|r| format!("/{}", r.to_string_lossy()))
                .unwrap_or_else(|_| "/".into());
            let fresh = match self.by_id.get(&id) {
                Some(e) => e.exited || e.path != rel,
                None => true,
            };
            if fresh {
                if !self.by_id.contains_key(&id) {
                    changes.added.push(id);
                }
                let identity = capmon_core::attribution::identify(&rel);
                self.by_id.insert(
                    id,
                    CgroupEntry {
                        path: rel,
                        identity,
                        exited: false,
                    },
                );
            }
        }
        for (id, e) in self.by_id.iter_mut() {
            if !e.exited && !seen.contains(id) {
                e.exited = true;
                changes.exited.push(*id);
            }
        }
        changes.added.sort_unstable();
        changes.exited.sort_unstable();
        self.last_scan = Some(Instant::now());
        changes
    }

    /// The entry of an id, rescanning once if it is unknown and the last scan is old enough.
    pub fn lookup(&mut self, id: u64) -> Option<&CgroupEntry> {
        if !self.by_id.contains_key(&id)
            && self
                .last_scan
                .is_none_or(|t| t.elapsed() >= self.min_rescan)
        {
            self.scan();
        }
        self.by_id.get(&id)
    }

    /// Learns a cgroup the kernel side saw created, at `path` from the hierarchy's root.
    pub fn learn(&mut self, id: u64, path: &str) {
        let identity = capmon_core::attribution::identify(path);
        self.by_id.insert(
            id,
            CgroupEntry {
                path: path.to_owned(),
                identity,
                exited: false,
            },
        );
    }

    /// Marks a cgroup the kernel side saw removed as exited; `false` when it is unknown.
    pub fn mark_exited(&mut self, id: u64) -> bool {
        self.by_id.get_mut(&id).map(|e| e.exited = true).is_some()
    }

    /// Forgets a cgroup (one that exited and was dealt with), so that the index does not grow
    /// under churn.
    pub fn remove(&mut self, id: u64) {
        self.by_id.remove(&id);
    }

    /// Every known cgroup.
    pub fn entries(&self) -> impl Iterator<Item = (&u64, &CgroupEntry)> {
        self.by_id.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt as _;

    use super::*;

    #[test]
    fn index_finds_marks_exited_and_keeps() {
        // The walk only needs directories: a temporary tree stands in for the cgroup2 mount.
        let root = std::env::temp_dir().join(format!("capmon-index-test-{}", std::process::id()));
        let hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let leaf = root.join("docker").join(hex);
        fs::create_dir_all(&leaf).expect("mkdir");
        let odd = root.join("with space\nand\u{7f}");
        fs::create_dir_all(&odd).expect("mkdir odd");
        let not_utf8 = root.join(std::ffi::OsStr::from_bytes(b"bad-\xff\xfe-name"));
        fs::create_dir_all(&not_utf8).expect("mkdir non-UTF-8");
        let mut index = CgroupIndex::new(root.clone());
        let changes = index.scan();
        assert_eq!(changes.added.len(), 5, "{changes:?}");
        let bad = index
            .lookup(cgroup_id(&not_utf8).expect("ino"))
            .expect("non-UTF-8 name kept")
            .clone();
        assert_eq!(bad.path, "/bad-\u{fffd}\u{fffd}-name");
        assert_eq!(
            bad.identity.runtime,
            capmon_core::attribution::Runtime::Unknown
        );
        let id = cgroup_id(&leaf).expect("ino");
        let e = index.lookup(id).expect("known").clone();
        assert_eq!(e.path, format!("/docker/{hex}"));
        assert_eq!(
            e.identity.runtime,
            capmon_core::attribution::Runtime::Docker
        );
        assert_eq!(e.identity.container_id.as_deref(), Some(hex));
        assert!(!e.exited);
        fs::remove_dir(&leaf).expect("rmdir");
        let changes = index.scan();
        assert_eq!(changes.exited, vec![id]);
        let e = index.lookup(id).expect("kept after exit");
        assert!(e.exited);
        // Unknown ids trigger at most one rescan per interval.
        assert!(index.lookup(u64::MAX).is_none());
        let t = index.last_scan;
        assert!(index.lookup(u64::MAX - 1).is_none());
        assert_eq!(index.last_scan, t, "no second rescan within the interval");
        fs::remove_dir_all(&root).expect("cleanup");
    }

    #[test]
    fn learned_cgroups_are_known_without_their_directory() {
        let root = std::env::temp_dir().join(format!("capmon-learn-test-{}", std::process::id()));
        fs::create_dir_all(&root).expect("mkdir");
        let mut index = CgroupIndex::new(root.clone());
        index.scan();
        let hex = "ab".repeat(32);
        index.learn(7, &format!("/docker/{hex}"));
        let e = index.lookup(7).expect("learned").clone();
        assert_eq!(e.identity.container_id.as_deref(), Some(hex.as_str()));
        assert!(!e.exited);
        assert!(index.mark_exited(7));
        assert!(index.lookup(7).expect("kept").exited);
        assert!(!index.mark_exited(8), "unknown id");
        // A scan does not resurrect it, nor mark it twice.
        assert!(index.scan().exited.is_empty());
        index.remove(7);
        assert!(index.lookup(7).is_none());
        fs::remove_dir_all(&root).expect("cleanup");
    }
}
