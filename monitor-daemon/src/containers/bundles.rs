//! The OCI runtime spec (`config.json`) of each container, from its runtime's bundle, which
//! exists before the container's cgroup: containerd (Docker's own containers in namespace
//! `moby`, Kubernetes' in `k8s.io`) keeps `<tasks>/<namespace>/<id>/config.json`, CRI-O and
//! podman `<overlay-containers>/<id>/userdata/config.json`. A watcher thread follows new
//! bundles with inotify and hands each spec over as soon as it is written, so that a container
//! gone after milliseconds still has what its runtime applied; [`find`] reads one on demand
//! (containers that ran before the daemon, or one the watcher missed).

use std::{
    collections::HashMap,
    ffi::OsStr,
    fs, io,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
    time::Duration,
};

use capmon_core::oci::{Applied, SpecError};
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

/// containerd's task bundles.
pub const CONTAINERD_TASKS: &str = "/run/containerd/io.containerd.runtime.v2.task";
/// CRI-O's and podman's container storage.
pub const CONTAINERS_STORAGE: &str = "/run/containers/storage/overlay-containers";
/// A spec larger than this is refused (Docker's, with its seccomp profile, is ~40 KiB).
const MAX_SPEC: u64 = 4 << 20;

/// How a runtime lays its bundles out under its root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `<root>/<namespace>/<id>/config.json`.
    Containerd,
    /// `<root>/<id>/userdata/config.json`.
    ContainersStorage,
}

impl Layout {
    /// The container id of the folder at `rel` (names below the root), when that folder holds
    /// the spec.
    fn spec_dir_id(self, rel: &[&OsStr]) -> Option<String> {
        match (self, rel) {
            (Layout::Containerd, [_ns, id]) => id.to_str().map(str::to_owned),
            (Layout::ContainersStorage, [id, user]) if *user == "userdata" => {
                id.to_str().map(str::to_owned)
            }
            _ => None,
        }
    }
}

/// A runtime's bundle root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Root {
    /// The folder.
    pub path: PathBuf,
    /// Its layout.
    pub layout: Layout,
}

/// The roots of the runtimes capmon knows, at their default places.
pub fn default_roots() -> Vec<Root> {
    vec![
        Root {
            path: CONTAINERD_TASKS.into(),
            layout: Layout::Containerd,
        },
        Root {
            path: CONTAINERS_STORAGE.into(),
            layout: Layout::ContainersStorage,
        },
    ]
}

/// A spec that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Empty: not written yet.
    #[error("{path}: empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Too large to be a spec.
    #[error("{path}: {size} bytes is more than an OCI spec holds (limit {MAX_SPEC})")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// Not a spec capmon can use.
    #[error("{path}: {source}")]
    Spec {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: SpecError,
    },
}

/// Reads and parses the spec at `path`.
pub fn read(path: &Path) -> Result<Applied, BundleError> {
    let io = |source| BundleError::Io {
        path: path.to_owned(),
        source,
    };
    let size = fs::metadata(path).map_err(io)?.len();
    if size == 0 {
        return Err(BundleError::Empty {
            path: path.to_owned(),
        });
    }
    if size > MAX_SPEC {
        return Err(BundleError::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    let text = fs::read_to_string(path).map_err(io)?;
    Applied::parse(&text).map_err(|source| BundleError::Spec {
        path: path.to_owned(),
        source,
    })
}

/// Where the spec of container `id` is under `roots`, if anywhere.
pub fn find(roots: &[Root], id: &str) -> Option<PathBuf> {
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return None;
    }
    roots.iter().find_map(|root| match root.layout {
        Layout::Containerd => fs::read_dir(&root.path)
            .ok()?
            .flatten()
            .map(|ns| ns.path().join(id).join("config.json"))
            .find(|p| p.is_file()),
        Layout::ContainersStorage => {
            let p = root.path.join(id).join("userdata/config.json");
            p.is_file().then_some(p)
        }
    })
}

/// A folder being watched.
struct Watched {
    root: usize,
    /// Its path relative to the root, one name per level.
    rel: Vec<std::ffi::OsString>,
}

/// Follows new bundles under `roots` and calls `found(id, path of its config.json)` each time
/// its spec is written, until `found` says it took it (a runtime may write the file more than
/// once: containerd closes it empty before it writes it). Roots that do not exist yet are
/// looked for every few seconds.
pub struct Watcher<F: FnMut(String, PathBuf) -> bool> {
    roots: Vec<Root>,
    inotify: Inotify,
    watched: HashMap<WatchDescriptor, Watched>,
    root_watched: Vec<bool>,
    found: F,
}

const DIR_EVENTS: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::ONLYDIR);

impl<F: FnMut(String, PathBuf) -> bool> Watcher<F> {
    /// A watcher over `roots`.
    pub fn new(roots: Vec<Root>, found: F) -> io::Result<Self> {
        Ok(Watcher {
            root_watched: vec![false; roots.len()],
            roots,
            inotify: Inotify::init()?,
            watched: HashMap::new(),
            found,
        })
    }

    /// Watches until `stop` says so; polls at most `tick` before asking it.
    pub fn run(&mut self, tick: Duration, stop: impl Fn() -> bool) {
        let mut buf = vec![0u8; 64 << 10];
        let mut since_roots = Duration::MAX;
        while !stop() {
            if since_roots >= Duration::from_secs(2) {
                self.watch_roots();
                since_roots = Duration::ZERO;
            }
            if !self.wait(tick) {
                since_roots = since_roots.saturating_add(tick);
                continue;
            }
            self.drain(&mut buf);
        }
    }

    /// Waits for events at most `tick`; whether there are any.
    fn wait(&self, tick: Duration) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
        let ms = u16::try_from(tick.as_millis()).unwrap_or(u16::MAX);
        matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
    }

    /// Handles what inotify has.
    fn drain(&mut self, buf: &mut [u8]) {
        loop {
            let events: Vec<(WatchDescriptor, EventMask, Option<std::ffi::OsString>)> =
                match self.inotify.read_events(buf) {
                    Ok(events) => events
                        .map(|e| (e.wd, e.mask, e.name.map(OsStr::to_owned)))
                        .collect(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) => {
                        tracing::warn!("bundle watcher: {e}");
                        return;
                    }
                };
            if events.is_empty() {
                return;
            }
            for (wd, mask, name) in events {
                self.event(wd, mask, name);
            }
        }
    }

    fn event(&mut self, wd: WatchDescriptor, mask: EventMask, name: Option<std::ffi::OsString>) {
        if mask.contains(EventMask::IGNORED) {
            if let Some(w) = self.watched.remove(&wd)
                && w.rel.is_empty()
            {
                self.root_watched[w.root] = false;
            }
            return;
        }
        let Some(name) = name else { return };
        // containerd renames a bundle it deletes to `.<id>`.
        if name.as_encoded_bytes().starts_with(b".") {
            return;
        }
        let Some(w) = self.watched.get(&wd) else {
            return;
        };
        let (root, mut rel) = (w.root, w.rel.clone());
        if mask.contains(EventMask::ISDIR) {
            rel.push(name);
            self.enter(root, rel);
        } else if name == "config.json" {
            self.spec_written(root, &rel, &wd);
        }
    }

    /// A folder appeared at `rel` under root `root`: watch it when it can lead to a spec, and
    /// take a spec already written in it (it may have been written before the watch).
    fn enter(&mut self, root: usize, rel: Vec<std::ffi::OsString>) {
        if rel.len() > 2 {
            return;
        }
        let layout = self.roots[root].layout;
        let names: Vec<&OsStr> = rel.iter().map(|s| s.as_os_str()).collect();
        let spec_dir = layout.spec_dir_id(&names);
        // Below the second level only a spec folder matters.
        if rel.len() == 2 && spec_dir.is_none() {
            return;
        }
        let dir = rel
            .iter()
            .fold(self.roots[root].path.clone(), |p, n| p.join(n));
        match self.inotify.watches().add(&dir, DIR_EVENTS) {
            Ok(wd) => {
                self.watched.insert(
                    wd,
                    Watched {
                        root,
                        rel: rel.clone(),
                    },
                );
            }
            Err(e) => {
                tracing::debug!(dir = %dir.display(), "bundle watcher: {e}");
                return;
            }
        }
        if let Some(id) = spec_dir {
            let spec = dir.join("config.json");
            if spec.is_file() {
                let _ = self.deliver(id, spec);
            }
        } else if let Ok(children) = fs::read_dir(&dir) {
            // A folder made with its children already in it (mkdir -p).
            for c in children.flatten() {
                if c.file_type().is_ok_and(|t| t.is_dir()) {
                    let mut r = rel.clone();
                    r.push(c.file_name());
                    self.enter(root, r);
                }
            }
        }
    }

    /// `config.json` was written in the folder `rel` of root `root`.
    fn spec_written(&mut self, root: usize, rel: &[std::ffi::OsString], wd: &WatchDescriptor) {
        let names: Vec<&OsStr> = rel.iter().map(|s| s.as_os_str()).collect();
        let Some(id) = self.roots[root].layout.spec_dir_id(&names) else {
            return;
        };
        let dir = rel
            .iter()
            .fold(self.roots[root].path.clone(), |p, n| p.join(n));
        // Once taken, stop watching the folder (bounds the watches to bundles being set up).
        if self.deliver(id, dir.join("config.json"))
            && self.inotify.watches().remove(wd.clone()).is_ok()
        {
            self.watched.remove(wd);
        }
    }

    fn deliver(&mut self, id: String, spec: PathBuf) -> bool {
        tracing::debug!(id, spec = %spec.display(), "OCI spec written");
        (self.found)(id, spec)
    }

    /// Watches the roots that exist and are not watched yet, and their namespaces.
    fn watch_roots(&mut self) {
        for i in 0..self.roots.len() {
            if self.root_watched[i] || !self.roots[i].path.is_dir() {
                continue;
            }
            let path = self.roots[i].path.clone();
            match self.inotify.watches().add(&path, DIR_EVENTS) {
                Ok(wd) => {
                    self.watched.insert(
                        wd,
                        Watched {
                            root: i,
                            rel: Vec::new(),
                        },
                    );
                    self.root_watched[i] = true;
                    tracing::info!(root = %path.display(), "watching OCI bundles");
                }
                Err(e) => {
                    tracing::warn!(root = %path.display(), "cannot watch OCI bundles: {e}");
                    continue;
                }
            }
            // containerd's namespaces exist long before their containers: watch them.
            if self.roots[i].layout == Layout::Containerd
                && let Ok(children) = fs::read_dir(&path)
            {
                for ns in children.flatten() {
                    if ns.file_type().is_ok_and(|t| t.is_dir()) {
                        self.enter(i, vec![ns.file_name()]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex, atomic::AtomicBool};

    const SPEC: &str = r#"{"process":{"user":{"uid":0,"gid":0}},"annotations":{
        "io.kubernetes.cri.sandbox-name":"web-0","io.kubernetes.cri.sandbox-namespace":"shop"}}"#;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("capmon-bundles-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn roots(base: &Path) -> Vec<Root> {
        vec![
            Root {
                path: base.join("tasks"),
                layout: Layout::Containerd,
            },
            Root {
                path: base.join("storage"),
                layout: Layout::ContainersStorage,
            },
        ]
    }

    #[test]
    fn finds_and_reads_specs_of_both_layouts() {
        let base = temp("find");
        let r = roots(&base);
        let a = base.join("tasks/moby/aaaa");
        let b = base.join("storage/bbbb/userdata");
        for d in [&a, &b] {
            fs::create_dir_all(d).expect("dir");
            fs::write(d.join("config.json"), SPEC).expect("spec");
        }
        assert_eq!(find(&r, "aaaa"), Some(a.join("config.json")));
        assert_eq!(find(&r, "bbbb"), Some(b.join("config.json")));
        assert_eq!(find(&r, "cccc"), None);
        assert_eq!(find(&r, "../moby/aaaa"), None);
        let spec = read(&a.join("config.json")).expect("read");
        assert_eq!(
            spec.kubernetes.and_then(|k| k.pod).as_deref(),
            Some("web-0")
        );
        fs::write(a.join("config.json"), "{not json").expect("write");
        let e = read(&a.join("config.json")).expect_err("garbage");
        assert!(e.to_string().contains("aaaa/config.json"), "{e}");
        let _ = fs::remove_dir_all(&base);
    }

    /// The watcher sees bundles made after it started, under roots that appear late, in the
    /// order and shapes containerd and podman make them.
    #[test]
    fn the_watcher_sees_new_bundles() {
        let base = temp("watch");
        let r = roots(&base);
        let seen: Arc<Mutex<Vec<(String, PathBuf)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut w = Watcher::new(r, move |id, p: PathBuf| {
                    let written = fs::read(&p).is_ok_and(|t| !t.is_empty());
                    if written {
                        seen.lock().expect("lock").push((id, p));
                    }
                    written
                })
                .expect("inotify");
                w.run(Duration::from_millis(20), || {
                    stop.load(std::sync::atomic::Ordering::Relaxed)
                });
            })
        };
        let wait_for = |n: usize| {
            for _ in 0..300 {
                if seen.lock().expect("lock").len() >= n {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("saw {:?}", seen.lock().expect("lock"));
        };
        // Roots appear after the watcher started (containerd started later).
        fs::create_dir_all(base.join("tasks/moby")).expect("ns");
        fs::create_dir_all(base.join("storage")).expect("storage");
        std::thread::sleep(Duration::from_millis(2500));
        // containerd: the bundle folder, its spec closed empty first, then written.
        let a = base.join("tasks/moby/aaaa");
        fs::create_dir(&a).expect("bundle");
        fs::write(a.join("config.json"), "").expect("empty spec");
        std::thread::sleep(Duration::from_millis(100));
        fs::write(a.join("config.json"), SPEC).expect("spec");
        wait_for(1);
        // ... and renamed to `.<id>` when it is deleted: not a new bundle.
        fs::rename(&a, base.join("tasks/moby/.aaaa")).expect("rename");
        // A new namespace, then a bundle in it.
        let k = base.join("tasks/k8s.io/kkkk");
        fs::create_dir_all(&k).expect("bundle");
        fs::write(k.join("config.json"), SPEC).expect("spec");
        wait_for(2);
        // podman: the userdata folder and its spec.
        let p = base.join("storage/pppp/userdata");
        fs::create_dir_all(&p).expect("bundle");
        fs::write(p.join("config.json.tmp"), SPEC).expect("spec");
        fs::rename(p.join("config.json.tmp"), p.join("config.json")).expect("rename");
        wait_for(3);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        thread.join().expect("watcher");
        let mut ids: Vec<String> = seen
            .lock()
            .expect("lock")
            .iter()
            .map(|s| s.0.clone())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids, ["aaaa", "kkkk", "pppp"]);
        let _ = fs::remove_dir_all(&base);
    }
}
