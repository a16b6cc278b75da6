//! The daemon's HTTP API, as a client: `GET` with a timeout (and the bearer token when the
//! daemon asks for one), errors that say what to do.

use std::{path::Path, time::Duration};

use http_body_util::{BodyExt, Empty};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::daemon::auth::{ApiToken, TokenError};

/// A daemon's API: its address and the token it asks for.
pub struct Daemon {
    /// `host:port`.
    pub addr: String,
    /// The token, from `--api-token-file`.
    pub token: Option<ApiToken>,
}

impl Daemon {
    /// The daemon at `addr`; its token read from `token_file` (the checks of `capmon run`'s
    /// `api_token_file`).
    pub fn new(addr: String, token_file: Option<&Path>) -> Result<Daemon, TokenError> {
        let token = token_file.map(ApiToken::read).transpose()?;
        Ok(Daemon { addr, token })
    }

    /// `GET path`: the body on 2xx.
    pub async fn get(&self, path: &str) -> Result<String, ClientError> {
        get_with(&self.addr, path, self.token.as_ref()).await
    }
}

/// Errors of the clients.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon answers.
    #[error(
        "cannot reach capmon at {addr}: {source} (is `capmon run` running? --addr names another)"
    )]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// HTTP trouble.
    #[error("capmon at {addr}: {detail}")]
    Http {
        /// The address.
        addr: String,
        /// What happened.
        detail: String,
    },
    /// The daemon answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The daemon's `error`.
        message: String,
    },
}

/// `GET path` from the server at `addr` (`host:port`); the body on 2xx.
pub async fn get(addr: &str, path: &str) -> Result<String, ClientError> {
    get_with(addr, path, None).await
}

/// `GET path` from `addr`, with `token` as a bearer token when given.
async fn get_with(addr: &str, path: &str, token: Option<&ApiToken>) -> Result<String, ClientError> {
    let http = |detail: String| ClientError::Http {
        addr: addr.to_owned(),
        detail,
    };
    let work = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| http(e.to_string()))?;
        tokio::spawn(conn);
        let mut req = Request::get(path).header("host", addr);
        if let Some(t) = token {
            req = req.header("authorization", t.authorization());
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| http(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| http(e.to_string()))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if status.is_success() {
            Ok(text)
        } else {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(text);
            Err(ClientError::Api {
                status: status.as_u16(),
                message,
            })
        }
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| http("no answer within 10 s".into()))?
}

/// Percent-encodes a path segment (container names may hold anything).
pub fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
