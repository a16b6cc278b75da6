//! Privileged tier: the API of a real `capmon run` under abuse. Thousands of connections that
//! send half a request do not keep `/healthz` and `/metrics` from answering and are closed by
//! the header timeout; a flood of requests leaves the daemon's memory flat; oversize requests
//! are refused; the bearer token (`--api-token-file`) is asked for, by the daemon and the
//! clients alike.
//! `#[ignore]`d: needs root (`cargo xtask test` runs them).

use nix::{
    sys::{
        resource::{Resource, getrlimit, setrlimit},
        signal::{Signal, kill},
    },
    unistd::Pid,
};
use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

mod common;

use common::*;

const CAPMON: &str = env!("CARGO_BIN_EXE_capmon");

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("capmon-abuse-{}-{name}", container_id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn need_root() {
    assert!(nix::unistd::geteuid().is_root(), "needs root");
}

/// Sends `raw` on a new connection; (status, the whole answer) once the daemon closes it
/// (status 0 when it closed without answering).
fn exchange(port: u16, raw: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(raw).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn get(path: &str, headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n")
        .into_bytes()
}

/// A sample of the daemon's `/metrics` (`series` with its labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Raises this process's open-file limit (soft and hard: root may) to at least `want`.
fn raise_open_files(want: u64) -> u64 {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let hard = hard.max(want);
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    hard
}

/// `n` connections (from 4 threads) that each send half a request, then nothing.
fn half_requests(port: u16, n: usize) -> Vec<TcpStream> {
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..n / 4)
                        .map(|_| {
                            let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                            c.write_all(
                                b"GET /v1/containers HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ",
                            )
                            .expect("half a request");
                            c
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("opener"))
            .collect()
    })
}

#[test]
#[ignore = "needs root: run `cargo xtask test`"]
fn half_requests_starve_nothing_and_are_closed_by_the_header_timeout() {
    need_root();
    let n = scaled(2000);
    let hard = raise_open_files(16384);
    let dir = scratch("slow");
    let port = free_port();
    // The daemon starts with a soft limit of 1024 (the usual default): it raises it itself.
    let daemon = Daemon::start_wrapped(
        &["sh", "-c", "ulimit -S -n 1024 && exec \"$0\" \"$@\""],
        CAPMON,
        &dir.join("state"),
        port,
        &[],
    );
    let log = fs::read_to_string(&daemon.log).unwrap_or_default();
    assert!(
        log.contains(&format!(
            "raised the open-file limit (RLIMIT_NOFILE) from 1024 to its hard limit {hard}"
        )),
        "{log}"
    );
    let limits = fs::read_to_string(format!("/proc/{}/limits", daemon.child.id())).expect("limits");
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    assert_eq!(
        open_files.split_whitespace().nth(3),
        Some(hard.to_string().as_str()),
        "{open_files}"
    );

    // n connections that send half a request, then nothing.
    let idle_rss = rss_kib(daemon.child.id());
    let first = Instant::now();
    let mut slow = half_requests(port, n);
    let opened = first.elapsed();
    let n = slow.len();

    // The daemon still answers, at once.
    let t = Instant::now();
    let (status, _) = http_get(port, "/healthz").expect("/healthz answers");
    let healthz = t.elapsed();
    assert_eq!(status, 200);
    let t = Instant::now();
    let (status, metrics) = http_get(port, "/metrics").expect("/metrics answers");
    let scrape = t.elapsed();
    assert_eq!(status, 200);
    let mut open = sample(&metrics, "capmon_api_connections").expect("capmon_api_connections");
    // Connections the kernel completed may still wait in the listen backlog for the accept
    // loop (seen under qemu TCG: 186 of 200 at the first scrape): give it a bounded moment.
    let deadline = Instant::now() + common::bound(Duration::from_secs(5));
    while open <= n as f64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let (_, m) = http_get(port, "/metrics").expect("/metrics answers");
        open = sample(&m, "capmon_api_connections").expect("capmon_api_connections");
    }
    eprintln!(
        "{n} half requests opened in {opened:?}; then /healthz answered in {healthz:?}, \
         /metrics in {scrape:?}, with {open} connections open; daemon RSS {idle_rss} KiB \
         before, {} KiB with them open",
        rss_kib(daemon.child.id())
    );
    assert!(
        open > n as f64,
        "the half requests are not all open: {open}"
    );
    let within = common::bound(Duration::from_secs(1));
    assert!(healthz < within, "/healthz took {healthz:?}");
    assert!(scrape < within, "/metrics took {scrape:?}");

    // Every one is closed by the daemon (EOF or reset), within 30 s of the first.
    let deadline = first + common::bound(Duration::from_secs(30));
    let closed: Vec<Duration> = std::thread::scope(|s| {
        let workers: Vec<_> = slow
            .chunks_mut(n.div_ceil(4))
            .map(|chunk| {
                s.spawn(move || {
                    let mut buf = [0u8; 512];
                    chunk
                        .iter_mut()
                        .map(|c| {
                            let left = deadline.saturating_duration_since(Instant::now());
                            c.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                                .expect("timeout");
                            loop {
                                match c.read(&mut buf) {
                                    Ok(0) => break,
                                    Ok(_) => continue,
                                    Err(e)
                                        if matches!(
                                            e.kind(),
                                            std::io::ErrorKind::WouldBlock
                                                | std::io::ErrorKind::TimedOut
                                        ) =>
                                    {
                                        panic!("a half request still open after 30 s")
                                    }
                                    Err(_) => break,
                                }
                            }
                            first.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("reader"))
            .collect()
    });
    let earliest = closed.iter().min().expect("closed");
    let last = closed.iter().max().expect("closed");
    eprintln!(
        "the daemon closed them {earliest:?} to {last:?} after the first was opened; its RSS \
         then: {} KiB",
        rss_kib(daemon.child.id())
    );
    assert_eq!(closed.len(), n);
    let (_, metrics) = http_get(port, "/metrics").expect("/metrics");
    let timed_out = sample(
        &metrics,
        r#"capmon_api_refused_total{reason="header_timeout"}"#,
    )
    .expect("header_timeout");
    assert!(timed_out >= n as f64, "{timed_out} header timeouts");
    assert!(daemon.child_alive());

    // SIGTERM with as many open: a clean exit, as quick as without.
    let again = half_requests(port, n);
    let deadline = Instant::now() + common::bound(Duration::from_secs(5));
    while http_get(port, "/metrics")
        .and_then(|(_, m)| sample(&m, "capmon_api_connections"))
        .is_none_or(|open| open <= again.len() as f64)
    {
        assert!(
            Instant::now() < deadline,
            "the new half requests are not all open"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, took) = daemon.terminate();
    eprintln!(
        "SIGTERM with {} half requests open: exit in {took:?}",
        again.len()
    );
    assert!(status.success(), "{status:?}");
    assert!(
        took < common::bound(Duration::from_secs(2)),
        "took {took:?}"
    );
}

/// `n` requests from 4 threads: two keep their connection (HTTP/1.1 keep-alive), two open one
/// per request; every answer read in full. The statuses seen.
fn flood(port: u16, n: usize) -> Vec<u16> {
    const PATHS: [&str; 5] = [
        "/healthz",
        "/metrics",
        "/v1/containers",
        "/v1/workloads",
        "/no/such/path",
    ];
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                s.spawn(move || {
                    let mut statuses = Vec::new();
                    let mut conn: Option<BufReader<TcpStream>> = None;
                    for i in 0..n / 4 {
                        let path = PATHS[i % PATHS.len()];
                        if w % 2 == 1 {
                            statuses.push(exchange(port, &get(path, "")).0);
                            continue;
                        }
                        let c = conn.get_or_insert_with(|| {
                            let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                            s.set_nodelay(true).expect("nodelay");
                            BufReader::new(s)
                        });
                        // One write: a request in pieces would wait for delayed ACKs.
                        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
                        c.get_mut().write_all(req.as_bytes()).expect("write");
                        let mut status = 0;
                        let mut length = 0usize;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            c.read_line(&mut line).expect("head");
                            if line == "\r\n" || line.is_empty() {
                                break;
                            }
                            if status == 0 {
                                status = line
                                    .split_whitespace()
                                    .nth(1)
                                    .and_then(|s| s.parse().ok())
                                    .unwrap_or(0);
                            } else if let Some((k, v)) = line.split_once(':')
                                && k.eq_ignore_ascii_case("content-length")
                            {
                                length = v.trim().parse().expect("length");
                            }
                        }
                        let mut body = vec![0u8; length];
                        c.read_exact(&mut body).expect("body");
                        statuses.push(status);
                    }
                    statuses
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("flooder"))
            .collect()
    })
}

#[test]
#[ignore = "needs root: run `cargo xtask test`"]
fn a_flood_leaves_memory_flat_and_oversize_requests_are_refused() {
    need_root();
    let n = scaled(10_000);
    let dir = scratch("flood");
    let port = free_port();
    // Retention 0: containers that other tests start and stop while this one runs are pruned
    // at once rather than kept (the model's growth is not the API's).
    let daemon = Daemon::start(
        CAPMON,
        &dir.join("state"),
        port,
        &["--retention-hours", "0"],
    );
    let pid = daemon.child.id();
    let containers = || {
        let (_, h) = get_json(port, "/healthz");
        h["containers"]["running"].as_u64().unwrap_or(0)
            + h["containers"]["exited"].as_u64().unwrap_or(0)
    };
    let check = |statuses: &[u16]| {
        assert_eq!(statuses.len(), n / 4 * 4);
        let odd: Vec<_> = statuses
            .iter()
            .filter(|s| !matches!(s, 200 | 404))
            .collect();
        assert!(odd.is_empty(), "statuses {odd:?}");
        assert_eq!(
            statuses.iter().filter(|s| **s == 404).count(),
            statuses.len() / 5
        );
    };
    let t = Instant::now();
    check(&flood(port, n));
    let warm_up = t.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    // A leak grows the RSS on every flood; a daemon still settling (a qemu guest's scaled-down
    // warm-up of 1,000 requests can end before the allocator's arenas and the daemon's first
    // polls have) grows it once. So: up to three measured floods, and the last one must stay
    // within the allowance; each is printed.
    let mut rounds = Vec::new();
    let mut before = rss_kib(pid);
    for round in 1..=3 {
        let known = containers();
        let t = Instant::now();
        check(&flood(port, n));
        let took = t.elapsed();
        std::thread::sleep(Duration::from_secs(1));
        let after = rss_kib(pid);
        let known = (known, containers());
        let allowed = before + (before / 10).max(5 * 1024);
        eprintln!(
            "flood {round} of {n} requests: {took:?} (warm-up {warm_up:?}); daemon RSS {before} \
             KiB before, {after} KiB after (allowed: {allowed} KiB); containers known before \
             and after: {known:?}"
        );
        rounds.push((before, after, known));
        if after <= allowed {
            break;
        }
        before = after;
    }
    let (before, after, known) = *rounds.last().expect("a round");
    assert!(
        after <= before + (before / 10).max(5 * 1024),
        "RSS grew on each of {} floods of {n} requests, last from {before} KiB to {after} KiB \
         (containers known before and after: {known:?}; all rounds: {rounds:?})",
        rounds.len()
    );

    // A request head over api_max_header_bytes (16 KiB): 431; a body over
    // api_max_body_bytes (4 KiB): 413 before a byte of it is read.
    let pad = format!("X-Pad: {}\r\n", "a".repeat(20 * 1024));
    assert_eq!(exchange(port, &get("/healthz", &pad)).0, 431);
    let (status, text) = exchange(port, &get("/v1/containers", "Content-Length: 1048576\r\n"));
    assert_eq!(status, 413, "{text}");
    assert!(
        text.contains("request body larger than 4096 bytes"),
        "{text}"
    );
    let fits = format!("X-Pad: {}\r\n", "a".repeat(8 * 1024));
    assert_eq!(exchange(port, &get("/healthz", &fits)).0, 200);
    let (_, metrics) = http_get(port, "/metrics").expect("/metrics");
    for reason in ["header_too_large", "body_too_large"] {
        let series = format!(r#"capmon_api_refused_total{{reason="{reason}"}}"#);
        assert_eq!(sample(&metrics, &series), Some(1.0), "{series}");
    }
    let (status, _) = daemon.terminate();
    assert!(status.success());
}

fn token_file(dir: &Path, token: &str, mode: u32) -> PathBuf {
    let path = dir.join("token");
    fs::write(&path, format!("{token}\n")).expect("write token");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(CAPMON).args(args).output().expect("capmon");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `capmon run` with `args`, waits for `needle` in its log (20 s), kills it.
fn log_of_start(dir: &Path, args: &[&str], needle: &str) -> String {
    let log = dir.join("start.log");
    let mut child = Command::new(CAPMON)
        .arg("run")
        .args([
            "--state-dir",
            dir.join("state-start").to_str().expect("utf8"),
        ])
        .args(args)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log"))
        .spawn()
        .expect("capmon run");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = fs::read_to_string(&log).unwrap_or_default();
        if text.contains(needle) || child.try_wait().is_ok_and(|s| s.is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    text
}

#[test]
#[ignore = "needs root: run `cargo xtask test`"]
fn the_bearer_token_is_asked_for_and_sent_by_the_clients() {
    need_root();
    let dir = scratch("token");
    let file = token_file(&dir, "s3cret-token", 0o600);
    let file_arg = file.to_str().expect("utf8");
    let port = free_port();
    let daemon = Daemon::start(
        CAPMON,
        &dir.join("state"),
        port,
        &["--api-token-file", file_arg],
    );
    let log = fs::read_to_string(&daemon.log).unwrap_or_default();
    assert!(
        log.contains("the API needs a bearer token (api_token_file) for everything but /healthz"),
        "{log}"
    );

    // /healthz is open; everything else needs the token.
    assert_eq!(http_get(port, "/healthz").expect("healthz").0, 200);
    for path in [
        "/v1/containers",
        "/metrics",
        "/v1/workloads",
        "/no/such/path",
    ] {
        let (status, text) = exchange(port, &get(path, ""));
        assert_eq!(status, 401, "{path}: {text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("www-authenticate: bearer realm=\"capmon\""),
            "{text}"
        );
        let (status, text) = exchange(port, &get(path, "Authorization: Bearer s3cret-tokem\r\n"));
        assert_eq!(status, 401, "{path}: {text}");
        assert!(text.contains("error=\"invalid_token\""), "{text}");
    }
    let right = "Authorization: Bearer s3cret-token\r\n";
    assert_eq!(exchange(port, &get("/v1/containers", right)).0, 200);
    let (status, metrics) = exchange(port, &get("/metrics", right));
    assert_eq!(status, 200);
    assert!(
        metrics.contains("capmon_api_refused_total{reason=\"unauthorized\"} 8"),
        "{metrics}"
    );

    // The clients send it (flag or environment); without it they say what is missing.
    let addr = format!("127.0.0.1:{port}");
    let (code, out, err) = cli(&["report", "--addr", &addr, "--api-token-file", file_arg]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("ID "), "{out}");
    let with_env = Command::new(CAPMON)
        .args(["report", "--workloads", "--json", "--addr", &addr])
        .env("CAPMON_API_TOKEN_FILE", &file)
        .output()
        .expect("capmon report");
    assert!(with_env.status.success(), "{with_env:?}");
    let (code, _, err) = cli(&[
        "profile",
        "--addr",
        &addr,
        "--api-token-file",
        file_arg,
        "--format",
        "docker",
        "nosuch",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("nosuch") && !err.contains("bearer"),
        "the token passed, the container is unknown: {err}"
    );
    let (code, _, err) = cli(&["report", "--addr", &addr]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("needs a bearer token") && err.contains("--api-token-file"),
        "{err}"
    );

    // SIGHUP re-reads the file: the new token replaces the old one.
    token_file(&dir, "n3w-token", 0o600);
    let _ = kill(Pid::from_raw(daemon.child.id() as i32), Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    let new = "Authorization: Bearer n3w-token\r\n";
    while exchange(port, &get("/v1/containers", new)).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the new token is not taken after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(exchange(port, &get("/v1/containers", right)).0, 401);
    let (status, _) = daemon.terminate();
    assert!(status.success());

    // A token file that group or others can read is refused, by the daemon and the clients.
    let open = token_file(&dir, "s3cret-token", 0o644);
    let open_arg = open.to_str().expect("utf8");
    let too_open = format!("api_token_file {open_arg}: permissions 0644 are too open");
    let out = Command::new(CAPMON)
        .args(["run", "--listen", &format!("127.0.0.1:{}", free_port())])
        .args([
            "--state-dir",
            dir.join("state-open").to_str().expect("utf8"),
        ])
        .args(["--api-token-file", open_arg])
        .output()
        .expect("capmon run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&too_open) && err.contains("chmod 600"),
        "{err}"
    );
    let (code, _, err) = cli(&["report", "--addr", &addr, "--api-token-file", open_arg]);
    assert_eq!(code, Some(1));
    assert!(err.contains(&too_open), "{err}");

    // Any address but loopback: a warning that says whether the token is needed.
    token_file(&dir, "s3cret-token", 0o400);
    let everywhere = format!("0.0.0.0:{}", free_port());
    let with = log_of_start(
        &dir,
        &["--listen", &everywhere, "--api-token-file", file_arg],
        "not loopback",
    );
    assert!(
        with.contains(&format!(
            "the API listens on {everywhere}, not loopback; a bearer token (api_token_file) is \
             required for everything but /healthz, but it travels in clear text"
        )),
        "{with}"
    );
    let without = log_of_start(&dir, &["--listen", &everywhere], "not loopback");
    assert!(
        without.contains(&format!(
            "the API listens on {everywhere}, not loopback, and no token is required: whoever \
             reaches the port sees what every container on this host does"
        )),
        "{without}"
    );
}
