//! Serving the API: an accept loop on hyper's HTTP/1 server with limits that hold under abuse.
//!
//! | limit | how |
//! | --- | --- |
//! | connections (`api_max_connections`) | a semaphore; a connection beyond it is closed as soon as accepted, so those served are never starved, and lowered to what the open-file limit allows |
//! | request headers' time (`api_header_timeout_secs`) | hyper's header read timeout: from the connection's start, or the end of the previous answer (so idle keep-alive connections close then too) |
//! | no byte moving (`api_idle_timeout_secs`) | [`IdleIo`] around the socket: a client that stops sending its body or reading its answer |
//! | request head size (`api_max_header_bytes`) | hyper's `max_header_size`: 431 |
//! | body size (`api_max_body_bytes`) | [`super::auth::check`]: 413 |
//!
//! On stop, the listener is closed, every connection is told to finish its request in flight
//! and close (hyper's graceful shutdown), and each is dropped a second later if it has not
//! (50 ms later when no request was in flight: an idle connection, or half a request).

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::Router;
use capmon_core::config::Config;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpListener,
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    task::JoinHandle,
    time::{Instant, Sleep},
};

use super::health::{ApiRefusal, ApiStats};

/// File descriptors kept for everything but API connections (probes, maps, the store, the
/// Docker socket, /proc reads).
pub const RESERVED_FDS: u64 = 256;

/// How long connections get to finish when the server stops.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The server's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections at once.
    pub max_connections: usize,
    /// Time to send a request's headers.
    pub header_timeout: Duration,
    /// Time without a byte moving.
    pub idle_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Largest body.
    pub max_body_bytes: u64,
}

impl Limits {
    /// The configured limits.
    pub fn of(cfg: &Config) -> Limits {
        Limits {
            max_connections: usize::try_from(cfg.api_max_connections).unwrap_or(usize::MAX),
            header_timeout: cfg.api_header_timeout(),
            idle_timeout: cfg.api_idle_timeout(),
            max_header_bytes: usize::try_from(cfg.api_max_header_bytes).unwrap_or(usize::MAX),
            max_body_bytes: cfg.api_max_body_bytes,
        }
    }
}

/// Raises the soft open-file limit to the hard one when it is below what `max_connections`
/// connections and [`RESERVED_FDS`] need (logged); returns the connections that fit, with a
/// warning when they are fewer than `max_connections`.
pub fn fit_open_file_limit(max_connections: usize) -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let wanted = max_connections as u64 + RESERVED_FDS;
    let Ok((mut soft, limit)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return max_connections;
    };
    // An unlimited hard limit: the kernel's ceiling for it.
    let hard = limit.min(
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(1 << 20),
    );
    if soft < wanted && soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, limit) {
            Ok(()) => {
                tracing::info!(
                    "raised the open-file limit (RLIMIT_NOFILE) from {soft} to its hard limit {hard}"
                );
                soft = hard;
            }
            Err(e) => tracing::warn!("cannot raise the open-file limit from {soft}: {e}"),
        }
    }
    let fits = usize::try_from(soft.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX);
    if fits < max_connections {
        tracing::warn!(
            "api_max_connections {max_connections} lowered to {fits}: the open-file limit is \
             {soft} ({RESERVED_FDS} kept for the rest; raise it: LimitNOFILE= in the systemd \
             unit, ulimit -n)"
        );
        return fits;
    }
    max_connections
}

/// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`, 4096 by
/// default): a burst of connections is not refused before the accept loop sees it.
pub const BACKLOG: u32 = 4096;

/// A listening socket on `addr`.
pub fn bind(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The running server.
pub struct Server {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Stops accepting, lets the requests in flight finish (up to a second), closes every
    /// connection.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(STOP_GRACE * 2, self.task).await;
    }
}

/// Serves `app` on `listener` with `limits` until [`Server::stop`].
pub fn serve(listener: TcpListener, app: Router, limits: Limits, stats: Arc<ApiStats>) -> Server {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, app, limits, stats, stopped));
    Server { stop, task }
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stats: Arc<ApiStats>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let http = Arc::new(http);
    let service = TowerToHyperService::new(app);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut last_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = told_to_stop(&mut stopped) => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors or memory: wait for connections to close rather
                // than spin.
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!("API: cannot accept a connection: {e}");
                    last_warning = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            stats.refused(ApiRefusal::ConnectionLimit);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(IdleIo::new(stream, limits.idle_timeout, stats.clone()));
        tokio::spawn(connection(
            io,
            http.clone(),
            service.clone(),
            stats.clone(),
            stopped.clone(),
            permit,
        ));
    }
    drop(listener);
    // Every connection gives its permit back when it ends.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let grace = STOP_GRACE + Duration::from_millis(200);
    let _ = tokio::time::timeout(grace, permits.acquire_many(all)).await;
}

/// Returns once the server is told to stop (or is gone).
async fn told_to_stop(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// One connection, until it ends, fails or the server stops.
async fn connection(
    io: TokioIo<IdleIo<tokio::net::TcpStream>>,
    http: Arc<http1::Builder>,
    service: TowerToHyperService<Router>,
    stats: Arc<ApiStats>,
    mut stopped: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) {
    use hyper::service::Service as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    stats.open.fetch_add(1, Ordering::Relaxed);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let counted = in_flight.clone();
    let service = hyper::service::service_fn(move |req| {
        let request = InFlight::new(&counted);
        let answer = service.call(req);
        async move {
            let r = answer.await;
            drop(request);
            r
        }
    });
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = told_to_stop(&mut stopped) => {
            // A request in flight gets to finish; a connection waiting for one (idle, or
            // with half a request) only to write what is already answered.
            conn.as_mut().graceful_shutdown();
            let grace = if in_flight.load(Ordering::Relaxed) > 0 {
                STOP_GRACE
            } else {
                Duration::from_millis(50)
            };
            tokio::time::timeout(grace, conn.as_mut()).await.unwrap_or(Ok(()))
        }
    };
    if let Err(e) = ended {
        if e.is_timeout() {
            stats.refused(ApiRefusal::HeaderTimeout);
        } else if e.is_parse_too_large() {
            stats.refused(ApiRefusal::HeaderTooLarge);
        }
    }
    stats.open.fetch_sub(1, Ordering::Relaxed);
    drop(permit);
}

/// A request in flight on a connection, while it lives.
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<std::sync::atomic::AtomicUsize>) -> InFlight {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A socket that fails with `TimedOut` once no byte has moved either way for `timeout` while
/// hyper waits on it. The timer is re-armed lazily: progress only records the time.
pub struct IdleIo<T> {
    io: T,
    timeout: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
    stats: Arc<ApiStats>,
    fired: bool,
}

impl<T> IdleIo<T> {
    /// Wraps `io`.
    pub fn new(io: T, timeout: Duration, stats: Arc<ApiStats>) -> IdleIo<T> {
        let now = Instant::now();
        IdleIo {
            io,
            timeout,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + timeout)),
            stats,
            fired: false,
        }
    }

    /// Called when the socket is not ready: `Pending`, or the idle error when it is due.
    fn poll_idle<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = self.last + self.timeout;
            if due > Instant::now() {
                self.timer.as_mut().reset(due);
                continue;
            }
            if !self.fired {
                self.fired = true;
                self.stats.refused(ApiRefusal::IdleTimeout);
            }
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no byte moved for {} s", self.timeout.as_secs()),
            )));
        }
    }

    /// After a poll of the socket: progress records the time; `Pending` checks the timer.
    fn after<R>(
        &mut self,
        cx: &mut Context<'_>,
        p: Poll<io::Result<R>>,
        moved: bool,
    ) -> Poll<io::Result<R>> {
        match p {
            Poll::Pending => self.poll_idle(cx),
            ready => {
                if moved {
                    self.last = Instant::now();
                }
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let p = Pin::new(&mut this.io).poll_read(cx, buf);
        let moved = buf.filled().len() > before;
        this.after(cx, p, moved)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_write(cx, buf);
        let moved = matches!(p, Poll::Ready(Ok(n)) if n > 0);
        this.after(cx, p, moved)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        let moved = matches!(p, Poll::Ready(Ok(n)) if n > 0);
        this.after(cx, p, moved)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_flush(cx);
        this.after(cx, p, false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_shutdown(cx);
        this.after(cx, p, false)
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
