//! `capmon run`: the node daemon, and the wiring of its parts.
//!
//! ```text
//! probe thread (owns the probes)  --newest snapshot-->  model worker  --> model <-- HTTP API, /metrics
//!   reads every map each poll,       (handoff; older       attribution,     |        (api, metrics)
//!                                     superseded)
//!   forgets cgroups that are gone                       posture, names    |
//!   (probe_thread)                                      (worker)          |
//!                                      store thread <-- batch every interval
//!                                      (store_thread, store: SQLite, one transaction per batch)
//! ```
//!
//! The kernel's counts are cumulative, so a snapshot superseded before the model took it
//! loses nothing: the next one carries the same counts and more (and its lifecycle records).
//!
//! | module | owns |
//! | --- | --- |
//! | [`container`] | one container: typed identity, check sites, denials, its report |
//! | [`model`] | all containers, by id and cgroup; the state shared with the API |
//! | [`health`] | the daemon's own health (stages, kernel losses, store writes) |
//! | [`probe_thread`], [`handoff`] | the kernel reader; the newest snapshot, for the worker |
//! | [`worker`] | snapshots -> containers; housekeeping |
//! | [`store`], [`store_thread`] | SQLite, and the thread that writes it |
//! | [`api`], [`metrics`] | HTTP JSON and the Prometheus exposition, reading the model |
//! | [`server`], [`auth`] | serving them: limits, the bearer token |
//! | [`memory`] | giving the allocator's freed peaks back to the kernel |

pub mod api;
pub mod auth;
pub mod container;
pub mod handoff;
pub mod health;
pub mod identity;
pub mod learners;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod probe_thread;
pub mod server;
pub mod store;
pub mod store_thread;
pub mod worker;
pub mod workloads;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use capmon_core::config::{Config, Overrides};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::oneshot,
};

use self::{
    auth::{ApiToken, Guard, TokenCell, TokenError},
    health::Health,
    model::{Model, Shared},
    probe_thread::ProbeRequest,
    server::{Limits, Server},
    store::{Store, StoreError},
    store_thread::StoreThread,
    worker::ModelWorker,
};
use crate::{
    containers::cgroup::{self, CgroupError, CgroupIndex},
    kernel::reader::{KernelError, KernelReader},
};

/// Errors that stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The probes.
    #[error(transparent)]
    Probes(#[from] KernelError),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The API address.
    #[error(
        "cannot listen on {addr}: {source} (another process uses it? choose one with --listen)"
    )]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// cgroup2.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The handlers of SIGTERM, SIGINT and SIGHUP.
    #[error("cannot install the handler of {signal}: {source}")]
    Signal {
        /// The signal.
        signal: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A thread of the daemon.
    #[error("cannot start the {thread} thread: {source}")]
    Thread {
        /// Which.
        thread: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The daemon's own metrics.
    #[error("cannot create the daemon's health metrics: {0}")]
    HealthMetrics(#[source] prometheus::Error),
    /// The API's token file.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// The signals the daemon answers.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> Result<Signals, DaemonError> {
        let sig = |kind, name| {
            signal(kind).map_err(|source| DaemonError::Signal {
                signal: name,
                source,
            })
        };
        Ok(Signals {
            term: sig(SignalKind::terminate(), "SIGTERM")?,
            int: sig(SignalKind::interrupt(), "SIGINT")?,
            hup: sig(SignalKind::hangup(), "SIGHUP")?,
        })
    }
}

/// Opens the store, loads it, starts the probes and the API; runs until SIGTERM/SIGINT.
pub async fn run(
    config: Config,
    config_file: Option<PathBuf>,
    overrides: Overrides,
) -> Result<(), DaemonError> {
    // Signals first: once the API answers, a SIGHUP or SIGTERM must find its handler (their
    // default action would end the process without a flush).
    let mut signals = Signals::install()?;
    memory::tune();
    let token: TokenCell = Arc::new(RwLock::new(read_token(&config)?));
    let store = Store::open(&config.state_dir)?;
    let stored = store.load()?;
    tracing::info!(path = %store.path().display(), containers = stored.len(), "store opened");
    let listener = server::bind(config.listen).map_err(|source| DaemonError::Listen {
        addr: config.listen,
        source,
    })?;
    warn_exposure(&config, &token);
    let mount = cgroup::find_cgroup2_mount()?;
    let startup_cgroups: HashSet<u64> = cgroup::all_cgroup_ids(&mount).into_iter().collect();
    let requested = crate::kernel::loader::parse_mode(&config.probe_mode)
        .map_err(crate::kernel::reader::KernelError::from)?;
    let recorder = KernelReader::start_with(requested)?;
    // Loading parsed the kernel's BTF and symbol table (tens of MB, now freed): give the
    // memory back to the system rather than keep it in the allocator's free lists.
    #[cfg(target_env = "gnu")]
    // SAFETY: plain glibc call without pointers.
    unsafe {
        libc::malloc_trim(0);
    }
    let mode = recorder.probes().mode().name();
    let attached = recorder.probes().attached() as u64;
    let mut health = Health::new(mode, attached).map_err(DaemonError::HealthMetrics)?;
    health.mode_reason = recorder.probes().why().to_owned();
    health.skipped = recorder.probes().skipped().to_vec();
    let low = crate::kernel::inlined::probe_low_mmap(recorder.probes());
    if low.counted() {
        tracing::info!("low mmap checks: {}", low.describe());
    } else {
        tracing::warn!("low mmap checks: {}", low.describe());
    }
    health.low_mmap = low.describe();
    let shared = Arc::new(Shared {
        model: Mutex::new(Model::from_store(stored)),
        health,
        db_path: store.path().to_owned(),
        config: RwLock::new(config.clone()),
    });
    tracing::info!(mode, why = %shared.health.mode_reason, listen = %config.listen, "capmon running");

    let handoff = Arc::new(handoff::Handoff::default());
    let (req_tx, req_rx) = std::sync::mpsc::channel();
    let thread = |thread| move |source| DaemonError::Thread { thread, source };
    let probe = probe_thread::spawn(recorder, shared.clone(), handoff.clone(), req_rx)
        .map_err(thread("probe"))?;
    let names = learners::spawn_name_lookups(shared.clone());
    let events = learners::spawn_event_follower(shared.clone());
    let bundles = learners::BundleWatcher::spawn(shared.clone()).map_err(thread("bundles"))?;
    let store = StoreThread::spawn(store, shared.clone()).map_err(thread("store"))?;
    let api = serve(listener, shared.clone(), &config, token.clone());
    let index = CgroupIndex::new(mount);
    let worker = ModelWorker::new(
        shared.clone(),
        index,
        startup_cgroups,
        req_tx.clone(),
        names,
    );
    let mut daemon = Running {
        shared,
        worker,
        handoff,
        store,
        probe,
        probe_requests: req_tx,
        api,
        token,
        events,
        bundles,
    };
    daemon
        .until_stopped(&mut signals, &config, config_file.as_deref(), &overrides)
        .await;
    daemon.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// The token `config` names, if any.
fn read_token(config: &Config) -> Result<Option<ApiToken>, TokenError> {
    config
        .api_token_file
        .as_deref()
        .map(ApiToken::read)
        .transpose()
}

/// Serves the API (and `/metrics`) on `listener` with the configured limits and `token`.
fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    config: &Config,
    token: TokenCell,
) -> Server {
    let mut limits = Limits::of(config);
    limits.max_connections = server::fit_open_file_limit(limits.max_connections);
    let stats = shared.health.api.clone();
    let guard = Guard {
        token,
        max_body: limits.max_body_bytes,
        body_timeout: limits.header_timeout,
        stats: stats.clone(),
    };
    server::serve(
        listener,
        auth::guarded(api::router(shared), guard),
        limits,
        stats,
    )
}

/// Says who can read the API: a warning for any address but loopback, saying whether a token
/// is needed.
fn warn_exposure(config: &Config, token: &TokenCell) {
    let needed = token.read().is_ok_and(|t| t.is_some());
    if config.listen.ip().is_loopback() {
        if needed {
            tracing::info!(
                "the API needs a bearer token (api_token_file) for everything but /healthz"
            );
        }
    } else if needed {
        tracing::warn!(
            "the API listens on {}, not loopback; a bearer token (api_token_file) is required \
             for everything but /healthz, but it travels in clear text (plain HTTP): keep the \
             port behind a firewall or network policy too",
            config.listen
        );
    } else {
        tracing::warn!(
            "the API listens on {}, not loopback, and no token is required: whoever reaches \
             the port sees what every container on this host does; set api_token_file, or keep \
             the port behind a firewall or network policy",
            config.listen
        );
    }
}

/// The running daemon's parts.
struct Running {
    shared: Arc<Shared>,
    worker: ModelWorker,
    handoff: Arc<handoff::Handoff>,
    store: StoreThread,
    probe: std::thread::JoinHandle<()>,
    probe_requests: std::sync::mpsc::Sender<ProbeRequest>,
    api: Server,
    token: TokenCell,
    events: tokio::task::JoinHandle<()>,
    bundles: learners::BundleWatcher,
}

impl Running {
    /// Applies snapshots, writes batches, keeps house, reloads on SIGHUP; returns on SIGTERM
    /// or SIGINT.
    async fn until_stopped(
        &mut self,
        signals: &mut Signals,
        config: &Config,
        config_file: Option<&Path>,
        overrides: &Overrides,
    ) {
        let mut batch_timer = tokio::time::interval(config.batch_interval());
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        let mut trim = tokio::time::interval(memory::TRIM_EVERY);
        loop {
            tokio::select! {
                snap = self.handoff.take() => self.worker.apply(snap),
                _ = batch_timer.tick() => self.store.offer(&self.shared),
                _ = housekeeping.tick() => self.worker.housekeeping(),
                _ = trim.tick() => memory::trim(),
                _ = signals.hup.recv() => reload(&self.shared, &self.token, config_file, overrides),
                _ = signals.term.recv() => {
                    tracing::info!("SIGTERM: flushing and stopping");
                    return;
                }
                _ = signals.int.recv() => {
                    tracing::info!("SIGINT: flushing and stopping");
                    return;
                }
            }
        }
    }

    /// Detaches the probes, takes what they last saw, writes it, stops the API.
    async fn stop(mut self) {
        let (done_tx, done_rx) = oneshot::channel();
        let _ = self.probe_requests.send(ProbeRequest::Stop(done_tx));
        let _ = tokio::time::timeout(Duration::from_secs(1), done_rx).await;
        if let Some(snap) = self.handoff.try_take() {
            self.worker.apply(snap);
        }
        self.store.flush_and_stop(&self.shared).await;
        self.api.stop().await;
        let _ = self.probe.join();
        self.events.abort();
        self.bundles.stop();
    }
}

/// SIGHUP: re-reads the config file (flags and environment still override it) and the token
/// file; settings that need a restart are reported.
fn reload(shared: &Shared, token: &TokenCell, file: Option<&Path>, overrides: &Overrides) {
    match Config::load(file, overrides) {
        Ok(new) => {
            match read_token(&new) {
                Ok(t) => {
                    let had = token.read().is_ok_and(|t| t.is_some());
                    if had != t.is_some() {
                        tracing::info!(
                            "SIGHUP: the API {} a bearer token",
                            if t.is_some() {
                                "now needs"
                            } else {
                                "no longer needs"
                            }
                        );
                    }
                    if let Ok(mut cur) = token.write() {
                        *cur = t;
                    }
                }
                Err(e) => tracing::error!("SIGHUP: {e}; keeping the current token"),
            }
            let Ok(mut cur) = shared.config.write() else {
                return;
            };
            if new.listen != cur.listen || new.state_dir != cur.state_dir {
                tracing::warn!("listen and state_dir changes take effect at the next start");
            }
            if Limits::of(&new) != Limits::of(&cur) {
                tracing::warn!(
                    "changes of the API's limits (api_max_*, api_*_timeout_secs) take effect at \
                     the next start"
                );
            }
            cur.api_token_file = new.api_token_file;
            cur.poll_interval_ms = new.poll_interval_ms;
            cur.retention_hours = new.retention_hours;
            cur.metrics_exited_secs = new.metrics_exited_secs;
            cur.docker_socket = new.docker_socket;
            cur.workload_syscall_series = new.workload_syscall_series;
            tracing::info!(
                poll_interval_ms = cur.poll_interval_ms,
                retention_hours = cur.retention_hours,
                "SIGHUP: configuration reloaded"
            );
        }
        Err(e) => tracing::error!("SIGHUP: {e}; keeping the current configuration"),
    }
}
