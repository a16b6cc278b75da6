//! What the daemon learns about containers outside the kernel, each off the model's path:
//! names asked of the container API one container at a time (containers that ran before the
//! daemon), Docker's event stream (names before a container runs), and the OCI bundles'
//! watcher (what the runtime applied, Kubernetes names). Each hands what it learns to the
//! model, which keeps it until the container's cgroup is resolved.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use capmon_core::runtime_api::ContainerEvent;
use tokio::sync::mpsc;

use super::{
    identity::{Learned, Names},
    model::Shared,
};
use crate::containers::{bundles, docker_events, names_api, posture::host_bounding};

/// A container whose names to ask its runtime's API for, and the API's socket.
pub type NameLookup = (String, PathBuf);

/// Starts the task that looks container names up off the model's path.
pub fn spawn_name_lookups(shared: Arc<Shared>) -> mpsc::Sender<NameLookup> {
    let (tx, mut rx) = mpsc::channel::<NameLookup>(1024);
    tokio::spawn(async move {
        while let Some((id, socket)) = rx.recv().await {
            let timeout = Duration::from_secs(2);
            match names_api::lookup(&socket, &id, timeout).await {
                Ok(Some(names)) => learn(&shared, &id, Learned::names(Names::from_api(names))),
                Ok(None) => {}
                Err(e) => tracing::debug!("container names: {e}"),
            }
        }
    });
    tx
}

fn learn(shared: &Shared, id: &str, learned: Learned) {
    if let Ok(mut m) = shared.model.lock() {
        m.learn(id, learned);
    }
}

/// Starts following the container API's event stream (the configured socket).
pub fn spawn_event_follower(shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    let config = shared.clone();
    let socket = move || {
        config
            .config
            .read()
            .map(|c| c.docker_socket.clone())
            .unwrap_or_default()
    };
    tokio::spawn(docker_events::follow(socket, move |e| event(&shared, e)))
}

/// A container event: its names, when it carries them.
fn event(shared: &Shared, e: ContainerEvent) {
    if !matches!(e.action.as_str(), "create" | "start" | "rename") {
        return;
    }
    if let Some(names) = e.names() {
        learn(shared, &e.id, Learned::names(Names::from_api(names)));
    }
}

/// The bundle watcher's thread, and how to stop it.
pub struct BundleWatcher {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl BundleWatcher {
    /// Starts watching the runtimes' bundles.
    pub fn spawn(shared: Arc<Shared>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let bounding = host_bounding();
        let mut watcher = bundles::Watcher::new(bundles::default_roots(), move |id, path| {
            match bundles::read(&path) {
                Ok(spec) => {
                    learn(&shared, &id, Learned::from_spec(&spec, bounding));
                    true
                }
                // Not written yet (containerd closes it empty first): the next write tells.
                Err(bundles::BundleError::Empty { .. }) => false,
                // Gone already (a one-shot's bundle is deleted at its exit): the event stream
                // names it.
                Err(bundles::BundleError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    true
                }
                Err(e) => {
                    tracing::warn!("OCI spec: {e}");
                    false
                }
            }
        })?;
        let thread = std::thread::Builder::new()
            .name("capmon-bundles".into())
            .spawn(move || {
                watcher.run(Duration::from_millis(200), || {
                    stopped.load(Ordering::Relaxed)
                });
            })?;
        Ok(BundleWatcher { stop, thread })
    }

    /// Stops the watcher.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}
