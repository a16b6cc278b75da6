//! Docker's event stream (`GET /events`, one JSON object per line), kept open: its create and
//! start events carry a container's name, image and labels (compose, Kubernetes) before the
//! container's first process runs, so a `--rm` container gone after milliseconds is still
//! named. The stream is reopened when it drops, asking for the events missed meanwhile
//! (`since`); a socket that does not exist (no Docker here) is looked for every few seconds.
//! Splitting the stream into lines and reading each is [`capmon_core::runtime_api`]'s.

use std::{path::Path, time::Duration};

use capmon_core::runtime_api::{ContainerEvent, complete_lines, parse_event};
use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;

/// Events asked for: containers only.
const FILTER: &str = "%7B%22type%22%3A%5B%22container%22%5D%7D";
/// A line longer than this is not an event: the stream is reopened.
const MAX_LINE: usize = 1 << 20;

/// Why a stream ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The socket could not be used.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// HTTP failed.
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// The API refused the request.
    #[error("answered status {0}")]
    Status(u16),
    /// A line too long to be an event.
    #[error("a line of more than {MAX_LINE} bytes")]
    LineTooLong,
    /// The request could not be built.
    #[error("{0}")]
    Request(String),
}

/// Where a stream resumes: the time of the last event seen (Unix nanoseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resume(pub i64);

impl Resume {
    /// The `since` parameter: seconds with nanoseconds, as Docker reads it.
    fn since(self) -> Option<String> {
        (self.0 > 0).then(|| format!("{}.{:09}", self.0 / 1_000_000_000, self.0 % 1_000_000_000))
    }
}

/// Reads the stream at `socket` until it ends, calling `on_event` for each container event;
/// `resume` moves with the events seen.
pub async fn stream(
    socket: &Path,
    resume: &mut Resume,
    on_event: &mut (dyn FnMut(ContainerEvent) + Send),
) -> Result<(), StreamError> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let mut uri = format!("/events?filters={FILTER}");
    if let Some(since) = resume.since() {
        uri.push_str(&format!("&since={since}"));
    }
    let req = Request::get(uri)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .map_err(|e| StreamError::Request(e.to_string()))?;
    let resp = sender.send_request(req).await?;
    if resp.status() != 200 {
        driver.abort();
        return Err(StreamError::Status(resp.status().as_u16()));
    }
    tracing::info!(socket = %socket.display(), "following the container API's events");
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let result = loop {
        let Some(frame) = body.frame().await else {
            break Ok(());
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => break Err(StreamError::Http(e)),
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        for line in complete_lines(&mut buf) {
            match parse_event(&line) {
                Ok(Some(e)) => {
                    resume.0 = resume.0.max(e.time_nano);
                    on_event(e);
                }
                Ok(None) => {}
                Err(e) => tracing::debug!("container API event not understood: {e}"),
            }
        }
        if buf.len() > MAX_LINE {
            break Err(StreamError::LineTooLong);
        }
    };
    driver.abort();
    result
}

/// Follows the stream at `socket` for ever: reopened a second after it ends, looked for every
/// few seconds while the socket does not exist. Errors are logged once until the stream works
/// again.
pub async fn follow(
    socket: impl Fn() -> std::path::PathBuf,
    mut on_event: impl FnMut(ContainerEvent) + Send,
) {
    let mut resume = Resume::default();
    let mut failing = false;
    loop {
        let path = socket();
        if !path.exists() {
            tokio::time::sleep(Duration::from_secs(3)).await;
            continue;
        }
        let started = resume;
        match stream(&path, &mut resume, &mut on_event).await {
            Ok(()) => {
                tracing::info!(socket = %path.display(), "container API event stream ended; reopening");
                failing = false;
            }
            Err(e) if !failing || resume != started => {
                tracing::warn!(socket = %path.display(), "container API event stream: {e}; reopening");
                failing = true;
            }
            Err(e) => tracing::debug!(socket = %path.display(), "container API event stream: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[test]
    fn since_is_seconds_with_nanoseconds() {
        assert_eq!(
            Resume(1_764_579_600_000_000_123).since().as_deref(),
            Some("1764579600.000000123")
        );
        assert_eq!(Resume(0).since(), None);
    }

    /// A server that answers one request with `chunks` (chunked encoding), then closes; sends
    /// back the request line it got.
    async fn serve_once(listener: &tokio::net::UnixListener, chunks: &[&str]) -> String {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut req = vec![0u8; 4096];
        let n = conn.read(&mut req).await.expect("read");
        let first = String::from_utf8_lossy(&req[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .expect("head");
        for c in chunks {
            conn.write_all(format!("{:x}\r\n{c}\r\n", c.len()).as_bytes())
                .await
                .expect("chunk");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        conn.write_all(b"0\r\n\r\n").await.expect("end");
        first
    }

    #[tokio::test]
    async fn events_split_across_chunks_are_read_and_the_stream_resumes() {
        let path = std::env::temp_dir().join(format!("capmon-events-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let start = r#"{"Type":"container","Action":"start","Actor":{"ID":"c1","Attributes":{"name":"web","image":"busybox","com.docker.compose.project":"shop"}},"timeNano":1764579600000000007}"#;
        let (a, b) = start.split_at(40);
        let server = tokio::spawn(async move {
            let first = serve_once(
                &listener,
                &[a, &format!("{b}\n{{\"Type\":\"network\",\"Action\":\"connect\",\"Actor\":{{\"ID\":\"n\"}}}}\n")],
            )
            .await;
            let second = serve_once(&listener, &["garbage\n"]).await;
            (first, second)
        });
        let mut seen = Vec::new();
        let mut resume = Resume::default();
        stream(&path, &mut resume, &mut |e| seen.push(e))
            .await
            .expect("first stream");
        assert_eq!(seen.len(), 1);
        let n = seen[0].names().expect("names");
        assert_eq!(
            (n.name.as_str(), n.compose_project.as_deref()),
            ("web", Some("shop"))
        );
        assert_eq!(resume, Resume(1_764_579_600_000_000_007));
        stream(&path, &mut resume, &mut |e| seen.push(e))
            .await
            .expect("second stream");
        let (first, second) = server.await.expect("server");
        assert!(first.starts_with("GET /events?filters="), "{first}");
        assert!(!first.contains("since"), "{first}");
        assert!(second.contains("&since=1764579600.000000007 "), "{second}");
        assert_eq!(seen.len(), 1, "a garbage line is skipped");
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn a_refusal_is_an_error() {
        let path =
            std::env::temp_dir().join(format!("capmon-events-404-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut req = vec![0u8; 4096];
            let _ = conn.read(&mut req).await;
            let _ = conn
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await;
        });
        let r = stream(&path, &mut Resume::default(), &mut |_| {}).await;
        assert!(matches!(r, Err(StreamError::Status(404))), "{r:?}");
        server.abort();
        let _ = std::fs::remove_file(&path);
    }
}
