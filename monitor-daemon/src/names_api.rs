//! Container names and images from a Docker-compatible API socket (Docker's
//! `/var/run/docker.sock`, or podman's `podman system service` at `/run/podman/podman.sock`):
//! `GET /containers/{id}/json`. A missing socket is normal (no names, no error); a socket that
//! hangs or answers garbage is bounded by a timeout and reported as an error, never a stall.

use std::{path::Path, time::Duration};

use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

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

/// Name and image of a container, and its Kubernetes names when its runtime labels carry them
/// (`io.kubernetes.pod.name`, `io.kubernetes.pod.namespace`, `io.kubernetes.container.name`,
/// as set by dockershim, cri-dockerd and podman's `play kube`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerNames {
    /// Container name without the leading `/`.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Kubernetes pod name.
    pub pod_name: Option<String>,
    /// Kubernetes namespace.
    pub pod_namespace: Option<String>,
    /// Kubernetes container name.
    pub k8s_container: Option<String>,
}

#[derive(Deserialize)]
struct Inspect {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Config")]
    config: InspectConfig,
}

#[derive(Deserialize)]
struct InspectConfig {
    #[serde(rename = "Image")]
    image: String,
    #[serde(rename = "Labels", default)]
    labels: Option<std::collections::HashMap<String, String>>,
}

/// Parses an inspect answer.
pub fn parse_inspect(body: &[u8]) -> Result<ContainerNames, String> {
    let i: Inspect = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let labels = i.config.labels.unwrap_or_default();
    Ok(ContainerNames {
        name: i.name.trim_start_matches('/').to_owned(),
        image: i.config.image,
        pod_name: labels.get("io.kubernetes.pod.name").cloned(),
        pod_namespace: labels.get("io.kubernetes.pod.namespace").cloned(),
        k8s_container: labels.get("io.kubernetes.container.name").cloned(),
    })
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

    #[test]
    fn parses_docker_and_podman_inspect() {
        let docker = br#"{"Id":"abc","Name":"/web","Config":{"Image":"nginx:1.27","Env":[],"Labels":null},"State":{}}"#;
        assert_eq!(
            parse_inspect(docker),
            Ok(ContainerNames {
                name: "web".into(),
                image: "nginx:1.27".into(),
                ..Default::default()
            })
        );
        // A container that cri-dockerd created for a pod.
        let k8s = br#"{"Name":"/k8s_app_web-7d4b9_shop_8a1c2b3d_0","Config":{"Image":"sha256:0f1e","Labels":{
            "io.kubernetes.pod.name":"web-7d4b9","io.kubernetes.pod.namespace":"shop",
            "io.kubernetes.container.name":"app","io.kubernetes.pod.uid":"8a1c2b3d"}}}"#;
        let n = parse_inspect(k8s).expect("parse");
        assert_eq!(n.pod_name.as_deref(), Some("web-7d4b9"));
        assert_eq!(n.pod_namespace.as_deref(), Some("shop"));
        assert_eq!(n.k8s_container.as_deref(), Some("app"));
        let podman = br#"{"Id":"abc","Name":"capmon-test","Config":{"Image":"localhost/capmon-test-busybox:latest"}}"#;
        assert_eq!(
            parse_inspect(podman).map(|n| n.image),
            Ok("localhost/capmon-test-busybox:latest".into())
        );
        assert!(parse_inspect(b"not json").is_err());
        assert!(parse_inspect(br#"{"Name":"x"}"#).is_err());
    }

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
