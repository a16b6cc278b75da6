//! The server's limits, on loopback with short timeouts (the privileged tier's
//! `tests/api_abuse.rs` runs them against a real daemon with the defaults).

use std::{
    net::SocketAddr,
    sync::{RwLock, atomic::Ordering},
};

use axum::routing::get;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use super::*;
use crate::daemon::auth::{self, ApiToken, Guard, TokenCell};

const BIG: usize = 32 << 20;

fn app() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/x", get(|| async { "x" }))
        .route("/big", get(|| async { vec![b'b'; BIG] }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "slow"
            }),
        )
}

fn limits() -> Limits {
    Limits {
        max_connections: 64,
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(5),
        max_header_bytes: 16 * 1024,
        max_body_bytes: 4096,
    }
}

struct Running {
    addr: SocketAddr,
    server: Server,
    stats: Arc<ApiStats>,
    token: TokenCell,
}

async fn start(limits: Limits, token: Option<&str>) -> Running {
    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stats = Arc::new(ApiStats::default());
    let token: TokenCell = Arc::new(RwLock::new(token.map(token_of)));
    let guard = Guard {
        token: token.clone(),
        max_body: limits.max_body_bytes,
        body_timeout: limits.header_timeout,
        stats: stats.clone(),
    };
    let server = serve(listener, auth::guarded(app(), guard), limits, stats.clone());
    Running {
        addr,
        server,
        stats,
        token,
    }
}

fn token_of(t: &str) -> ApiToken {
    let dir = std::env::temp_dir().join(format!("capmon-server-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(t);
    std::fs::write(&path, t).expect("write");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    ApiToken::read(&path).expect("token")
}

/// Sends `raw` on a new connection and reads until the server closes it (5 s at most):
/// (status, headers and body).
async fn exchange(addr: SocketAddr, raw: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw).await.expect("write");
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "no end within 5 s");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn get_req(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n").into_bytes()
}

/// Reads until EOF or an error: when the server closed, and what came.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<usize> {
    let mut n = 0;
    let mut buf = vec![0u8; 1 << 16];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok().map(|()| n)
}

#[tokio::test]
async fn half_requests_are_closed_after_the_header_timeout_and_others_are_served() {
    let r = start(limits(), None).await;
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(r.addr).await.expect("connect");
        s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\n")
            .await
            .expect("write");
        slow.push(s);
    }
    // Never sends a byte.
    let mut silent = TcpStream::connect(r.addr).await.expect("connect");
    let (status, _) = exchange(r.addr, &get_req("/healthz", "")).await;
    assert_eq!(status, 200);
    for s in &mut slow {
        assert_eq!(closed_within(s, Duration::from_secs(3)).await, Some(0));
    }
    assert!(
        closed_within(&mut silent, Duration::from_secs(3))
            .await
            .is_some()
    );
    let refused = r.stats.refusals();
    assert_eq!(
        refused[ApiRefusal::HeaderTimeout as usize].1,
        51,
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(r.stats.open.load(Ordering::Relaxed), 0);
    r.server.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_close_after_the_header_timeout() {
    let r = start(limits(), None).await;
    let mut s = TcpStream::connect(r.addr).await.expect("connect");
    s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let t = Instant::now();
    let n = closed_within(&mut s, Duration::from_secs(3)).await;
    assert!(n.is_some_and(|n| n > 0), "{n:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    r.server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_after_the_idle_timeout() {
    let r = start(
        Limits {
            idle_timeout: Duration::from_secs(1),
            header_timeout: Duration::from_secs(10),
            ..limits()
        },
        None,
    )
    .await;
    let mut s = TcpStream::connect(r.addr).await.expect("connect");
    s.write_all(&get_req("/big", "")).await.expect("write");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let n = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(n.is_some_and(|n| n < BIG), "{n:?} of {BIG} bytes");
    assert_eq!(r.stats.refusals()[ApiRefusal::IdleTimeout as usize].1, 1);
    // A client that reads gets it all.
    let (status, body) = exchange(r.addr, &get_req("/big", "")).await;
    assert_eq!(status, 200);
    assert!(body.len() > BIG);
    r.server.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let r = start(
        Limits {
            max_connections: 3,
            header_timeout: Duration::from_secs(10),
            ..limits()
        },
        None,
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(r.addr).await.expect("connect");
        s.write_all(b"GET /x HTTP/1.1\r\n").await.expect("write");
        held.push(s);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while r.stats.open.load(Ordering::Relaxed) < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut extra = TcpStream::connect(r.addr).await.expect("connect");
    assert_eq!(
        closed_within(&mut extra, Duration::from_secs(1)).await,
        Some(0)
    );
    assert_eq!(
        r.stats.refusals()[ApiRefusal::ConnectionLimit as usize].1,
        1
    );
    // The ones held are still served.
    held[0]
        .write_all(b"Host: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    held[0].read_to_end(&mut out).await.expect("read");
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    r.server.stop().await;
}

#[tokio::test]
async fn oversize_heads_get_431_and_bodies_413() {
    let r = start(limits(), None).await;
    let pad = format!("X-Pad: {}\r\n", "a".repeat(20 * 1024));
    assert_eq!(exchange(r.addr, &get_req("/x", &pad)).await.0, 431);
    let small = format!("X-Pad: {}\r\n", "a".repeat(8 * 1024));
    assert_eq!(exchange(r.addr, &get_req("/x", &small)).await.0, 200);
    // Announced too large: refused before a byte of it is read.
    let (status, text) = exchange(r.addr, &get_req("/x", "Content-Length: 1000000\r\n")).await;
    assert_eq!(status, 413);
    assert!(text.contains("larger than 4096 bytes"), "{text}");
    // Chunked: read up to the limit.
    let chunk = "c".repeat(5000);
    let raw = format!(
        "GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    assert_eq!(exchange(r.addr, raw.as_bytes()).await.0, 413);
    let raw = "GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
               3\r\nabc\r\n0\r\n\r\n";
    assert_eq!(exchange(r.addr, raw.as_bytes()).await.0, 200);
    assert_eq!(
        exchange(r.addr, &get_req("/x", "Content-Length: 3\r\n\r\nabc"))
            .await
            .0,
        200
    );
    let refused = r.stats.refusals();
    assert_eq!(
        refused[ApiRefusal::HeaderTooLarge as usize].1,
        1,
        "{refused:?}"
    );
    assert_eq!(
        refused[ApiRefusal::BodyTooLarge as usize].1,
        2,
        "{refused:?}"
    );
    r.server.stop().await;
}

#[tokio::test]
async fn the_token_is_asked_for_everywhere_but_healthz() {
    let r = start(limits(), Some("right-token")).await;
    let (status, text) = exchange(r.addr, &get_req("/x", "")).await;
    assert_eq!(status, 401);
    assert!(
        text.to_ascii_lowercase()
            .contains("www-authenticate: bearer realm=\"capmon\"\r\n"),
        "{text}"
    );
    let (status, text) = exchange(r.addr, &get_req("/x", "Authorization: Bearer wrong\r\n")).await;
    assert_eq!(status, 401);
    assert!(text.contains("invalid_token"), "{text}");
    let auth = "Authorization: Bearer right-token\r\n";
    assert_eq!(exchange(r.addr, &get_req("/x", auth)).await.0, 200);
    let lower = "authorization: bearer right-token\r\n";
    assert_eq!(exchange(r.addr, &get_req("/x", lower)).await.0, 200);
    let basic = "Authorization: Basic cmlnaHQtdG9rZW4=\r\n";
    assert_eq!(exchange(r.addr, &get_req("/x", basic)).await.0, 401);
    assert_eq!(exchange(r.addr, &get_req("/healthz", "")).await.0, 200);
    assert_eq!(exchange(r.addr, &get_req("/nowhere", "")).await.0, 401);
    // A new token (SIGHUP) replaces the old one.
    *r.token.write().expect("lock") = Some(token_of("new-token"));
    assert_eq!(exchange(r.addr, &get_req("/x", auth)).await.0, 401);
    let new = "Authorization: Bearer new-token\r\n";
    assert_eq!(exchange(r.addr, &get_req("/x", new)).await.0, 200);
    assert_eq!(r.stats.refusals()[ApiRefusal::Unauthorized as usize].1, 5);
    r.server.stop().await;
}

#[tokio::test]
async fn stop_is_quick_with_connections_open() {
    let r = start(
        Limits {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            ..limits()
        },
        None,
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(r.addr).await.expect("connect");
        s.write_all(b"GET /x HTTP/1.1\r\n").await.expect("write");
        held.push(s);
    }
    let mut idle = TcpStream::connect(r.addr).await.expect("connect");
    idle.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    assert!(idle.read(&mut buf).await.expect("answer") > 0);
    let t = Instant::now();
    r.server.stop().await;
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert!(TcpStream::connect(r.addr).await.is_err());
    for s in [&mut idle].into_iter().chain(&mut held) {
        assert!(closed_within(s, Duration::from_secs(1)).await.is_some());
    }
}

#[tokio::test]
async fn stop_lets_a_request_in_flight_finish() {
    let r = start(limits(), None).await;
    let mut s = TcpStream::connect(r.addr).await.expect("connect");
    s.write_all(&get_req("/slow", "")).await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    let (_, ()) = tokio::join!(
        async {
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.expect("read");
            let text = String::from_utf8_lossy(&out);
            assert!(
                text.starts_with("HTTP/1.1 200") && text.ends_with("slow"),
                "{text}"
            );
        },
        r.server.stop()
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}
