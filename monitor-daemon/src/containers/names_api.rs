//! Container names and images from a Docker-compatible API socket (Docker's
//! `/var/run/docker.sock`, or podman's `podman system service` at `/run/podman/podman.sock`):
//! `GET /containers/{id}/json`. A missing socket is normal (no names, no error); a socket that
//! hangs or answers garbage is bounded by a timeout and reported as an error, never a stall.

use std::{path::Path, time::Duration};

use capmon_core::runtime_api::{ContainerNames, parse_inspect};
use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;

/// Default sockets, tried in order.
pub const DEFAULT_SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/podman/podman.sock"];

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Connecting or talking to the socket failed.
    #[error("container API at {socket}: {source}")]
    Io {
        /// Socket path.
        socket: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// HTTP-level failure.
    #[error("container API at {socket}: {source}")]
    Http {
        /// Socket path.
        socket: String,
        /// Why.
        #[source]
        source: hyper::Error,
    },
    /// No answer within the timeout.
    #[error("container API at {socket} did not answer within {timeout:?}")]
    Timeout {
        /// Socket path.
        socket: String,
        /// The bound.
        timeout: Duration,
    },
    /// The answer was not the JSON expected.
    #[error("container API at {socket} answered status {status} with an unexpected body: {detail}")]
    Garbage {
        /// Socket path.
        socket: String,
        /// HTTP status.
        status: u16,
        /// What was wrong.
        detail: String,
    },
}

/// Asks the API at `socket` about container `id`. `Ok(None)`: the socket does not exist or
/// the container is unknown there (both normal).
pub async fn lookup(
    socket: &Path,
    id: &str,
    timeout: Duration,
) -> Result<Option<ContainerNames>, ApiError> {
    let sock = socket.display().to_string();
    if !socket.exists() {
        return Ok(None);
    }
    let work = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|source| ApiError::Io {
                socket: sock.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ApiError::Http {
                socket: sock.clone(),
                source,
            })?;
        let driver = tokio::spawn(conn);
        let req = Request::get(format!("/containers/{id}/json"))
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .map_err(|e| ApiError::Garbage {
                socket: sock.clone(),
                status: 0,
                detail: e.to_string(),
            })?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|source| ApiError::Http {
                socket: sock.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        // Container inspect answers are a few KiB; refuse to buffer an endless answer.
        let body = http_body_util::Limited::new(resp.into_body(), 4 << 20)
            .collect()
            .await
            .map_err(|e| ApiError::Garbage {
                socket: sock.clone(),
                status,
                detail: e.to_string(),
            })?
            .to_bytes();
        driver.abort();
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            return Err(ApiError::Garbage {
                socket: sock.clone(),
                status,
                detail: String::from_utf8_lossy(&body).chars().take(200).collect(),
            });
        }
        parse_inspect(&body)
            .map(Some)
            .map_err(|detail| ApiError::Garbage {
                socket: sock.clone(),
                status,
                detail,
            })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ApiError::Timeout {
            socket: sock.clone(),
            timeout,
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_socket_is_normal() {
        let r = lookup(
            Path::new("/nonexistent/capmon.sock"),
            "abc",
            Duration::from_millis(100),
        )
        .await;
        assert!(matches!(r, Ok(None)), "{r:?}");
    }

    #[tokio::test]
    async fn a_hanging_socket_is_bounded() {
        let path = std::env::temp_dir().join(format!("capmon-hang-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        // Accepts and never answers.
        let server = tokio::spawn(async move {
            let (_conn, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let start = std::time::Instant::now();
        let r = lookup(&path, "abc", Duration::from_millis(300)).await;
        assert!(matches!(r, Err(ApiError::Timeout { .. })), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(2));
        server.abort();
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn garbage_answers_are_errors() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let path = std::env::temp_dir().join(format!("capmon-garbage-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{\"Name\":1")
                .await;
        });
        let r = lookup(&path, "abc", Duration::from_secs(2)).await;
        assert!(
            matches!(r, Err(ApiError::Garbage { status: 200, .. })),
            "{r:?}"
        );
        server.abort();
        let _ = std::fs::remove_file(&path);
    }
}
