//! `capmon report` and `capmon profile`: clients of the daemon's HTTP API.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;
use serde_json::Value;

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

/// `GET path` from the daemon at `addr` (`host:port`); the body on 2xx.
pub async fn get(addr: &str, path: &str) -> Result<String, ClientError> {
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
        let req = Request::get(path)
            .header("host", addr)
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

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The container list as a table.
pub fn render_list(body: &Value) -> String {
    let mut out = format!(
        "{:<12}  {:<20}  {:<10}  {:<7}  {:>7}  {:>4}  {:>6}  {:>6}  {:>8}  {}\n",
        "ID",
        "NAME",
        "RUNTIME",
        "STATE",
        "GRANTED",
        "USED",
        "UNUSED",
        "DENIED",
        "SYSCALLS",
        "POSTURE"
    );
    for c in body["containers"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or("-");
        let name: String = name.chars().take(20).collect();
        out.push_str(&format!(
            "{:<12}  {:<20}  {:<10}  {:<7}  {:>7}  {:>4}  {:>6}  {:>6}  {:>8}  {}\n",
            c["short_id"].as_str().unwrap_or("?"),
            name,
            c["runtime"].as_str().unwrap_or("?"),
            if c["running"].as_bool().unwrap_or(false) {
                "running"
            } else {
                "exited"
            },
            strs(&c["granted"]).len(),
            strs(&c["used"]).len(),
            strs(&c["unused"]).len(),
            strs(&c["denied"]).len(),
            c["syscalls_used"].as_u64().unwrap_or(0),
            strs(&c["posture"]).join(","),
        ));
    }
    out
}

/// One container as text.
pub fn render_one(body: &Value) -> String {
    let c = &body["container"];
    let a = &body["analysis"];
    let list = |v: &Value| {
        let s = strs(v);
        if s.is_empty() {
            "(none)".to_owned()
        } else {
            s.join(", ")
        }
    };
    let mut out = format!(
        "container {} ({}), {} {}\n",
        c["name"].as_str().unwrap_or("-"),
        c["id"].as_str().unwrap_or("?"),
        c["runtime"].as_str().unwrap_or("?"),
        if c["running"].as_bool().unwrap_or(false) {
            "running"
        } else {
            "exited"
        }
    );
    out.push_str(&format!("granted:        {}\n", list(&c["granted"])));
    out.push_str(&format!("used:           {}\n", list(&a["used"])));
    out.push_str(&format!("denied:         {}\n", list(&a["denied"])));
    out.push_str(&format!("unused (drop):  {}\n", list(&a["unused"])));
    out.push_str(&format!("add:            {}\n", list(&a["add"])));
    out.push_str(&format!("recommended:    {}\n", list(&a["recommended"])));
    for w in a["warnings"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "warning [{}]: {}\n",
            w["code"].as_str().unwrap_or("?"),
            w["message"].as_str().unwrap_or("")
        ));
    }
    out.push_str(&format!(
        "syscalls:       {} used\n",
        strs(&body["syscalls"]["used"]).len()
    ));
    for d in body["syscalls"]["denied"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "seccomp denied: {} {} x{}\n",
            d["name"].as_str().unwrap_or("?"),
            d["errno"].as_str().unwrap_or("?"),
            d["count"].as_u64().unwrap_or(0)
        ));
    }
    let would_deny: Vec<&str> = body["docker_default"]["replay"]["would_deny"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["name"].as_str())
        .collect();
    if !would_deny.is_empty() {
        out.push_str(&format!(
            "Docker's default seccomp profile would deny: {}\n",
            would_deny.join(", ")
        ));
    }
    if let Some(why) = body["seccomp_profile_error"].as_str() {
        out.push_str(&format!("no seccomp profile: {why}\n"));
    }
    out
}
