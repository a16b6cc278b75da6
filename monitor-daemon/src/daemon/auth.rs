//! What the API asks of a request before a handler sees it: the optional bearer token
//! (`api_token_file`) on every path but `/healthz`, and a body no larger than
//! `api_max_body_bytes` (the API only has GETs).
//!
//! The token file is refused when group or others may access it at all, as ssh refuses such
//! private keys; the token is its content with surrounding white space trimmed: non-empty,
//! printable ASCII without spaces (it travels in a header). Tokens are compared in constant
//! time. The capmon clients read the same file (`--api-token-file`).

use std::{
    io::Read as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use axum::{
    Json,
    body::{Body, HttpBody as _},
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde_json::json;

use super::health::{ApiRefusal, ApiStats};

/// The longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 1024;

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// It cannot be opened or read.
    #[error("api_token_file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Group or others may access it.
    #[error(
        "api_token_file {path}: permissions {mode:04o} are too open: group and others must have \
         no access to a token (chmod 600 {path})"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Not a regular file.
    #[error("api_token_file {path}: not a regular file")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// Empty, or only white space.
    #[error("api_token_file {path}: empty (the file holds the token, on one line)")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Not something that can travel in a header.
    #[error(
        "api_token_file {path}: the token must be printable ASCII without spaces, at most \
         {MAX_TOKEN_BYTES} bytes"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
    },
}

/// A bearer token.
#[derive(Clone)]
pub struct ApiToken(Vec<u8>);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(..)")
    }
}

impl ApiToken {
    /// Reads the token file `path` (see the module's documentation for what is refused).
    pub fn read(path: &Path) -> Result<ApiToken, TokenError> {
        let read = |source| TokenError::Read {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(read)?;
        // The opened file's own metadata: what is checked is what is read.
        let meta = file.metadata().map_err(read)?;
        if !meta.is_file() {
            return Err(TokenError::NotAFile {
                path: path.to_owned(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(TokenError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let mut raw = Vec::new();
        file.by_ref()
            .take(MAX_TOKEN_BYTES as u64 + 64)
            .read_to_end(&mut raw)
            .map_err(read)?;
        let token = raw.trim_ascii();
        if token.is_empty() {
            return Err(TokenError::Empty {
                path: path.to_owned(),
            });
        }
        if token.len() > MAX_TOKEN_BYTES || !token.iter().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Malformed {
                path: path.to_owned(),
            });
        }
        Ok(ApiToken(token.to_vec()))
    }

    /// Whether `sent` is this token. Takes the same time whatever `sent` holds: every byte
    /// of the token is compared, and no comparison ends early.
    pub fn matches(&self, sent: &[u8]) -> bool {
        let mut diff = u8::from(sent.len() != self.0.len());
        for (i, b) in self.0.iter().enumerate() {
            diff |= b ^ sent.get(i).copied().unwrap_or(0);
        }
        std::hint::black_box(diff) == 0
    }

    /// The `Authorization` header that carries it.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", String::from_utf8_lossy(&self.0))
    }
}

/// The token in force (none: no token asked for); SIGHUP replaces it.
pub type TokenCell = Arc<RwLock<Option<ApiToken>>>;

/// What [`check`] needs.
#[derive(Clone)]
pub struct Guard {
    /// The token.
    pub token: TokenCell,
    /// The largest body.
    pub max_body: u64,
    /// How long a body may take to arrive.
    pub body_timeout: Duration,
    /// Where refusals are counted.
    pub stats: Arc<ApiStats>,
}

/// The one path answered without a token (liveness probes, load balancers).
pub const OPEN_PATH: &str = "/healthz";

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn unauthorized(message: &str, invalid: bool) -> Response {
    let mut r = refuse(StatusCode::UNAUTHORIZED, message);
    let challenge = if invalid {
        "Bearer realm=\"capmon\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"capmon\""
    };
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

/// A refusal after which the connection is closed (its body was not read to the end).
fn too_large(max: u64) -> Response {
    let mut r = refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body larger than {max} bytes (the API only has GETs)"),
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// `app` behind [`check`].
pub fn guarded(app: axum::Router, guard: Guard) -> axum::Router {
    app.layer(axum::middleware::from_fn_with_state(guard, check))
}

/// The middleware: the token, then the body's size; then the handler.
pub async fn check(State(g): State<Guard>, req: Request, next: Next) -> Response {
    if req.uri().path() != OPEN_PATH {
        let token = g.token.read().map(|t| t.clone()).unwrap_or_default();
        if let Some(token) = token {
            let sent = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes)
                .and_then(|v| {
                    let (scheme, rest) = v.split_at(v.len().min(7));
                    scheme
                        .eq_ignore_ascii_case(b"bearer ")
                        .then(|| rest.trim_ascii())
                });
            let refused = match sent {
                None => Some(unauthorized(
                    "this API needs a bearer token (Authorization: Bearer <token>; capmon \
                     clients: --api-token-file)",
                    false,
                )),
                Some(sent) if !token.matches(sent) => {
                    Some(unauthorized("the bearer token is not this API's", true))
                }
                Some(_) => None,
            };
            if let Some(r) = refused {
                g.stats.refused(ApiRefusal::Unauthorized);
                return r;
            }
        }
    }
    let (parts, body) = req.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    if body.size_hint().lower() > g.max_body {
        g.stats.refused(ApiRefusal::BodyTooLarge);
        return too_large(g.max_body);
    }
    // A body of unknown length (chunked): read up to the limit, in bounded time.
    let limited = Limited::new(body, usize::try_from(g.max_body).unwrap_or(usize::MAX));
    match tokio::time::timeout(g.body_timeout, limited.collect()).await {
        Ok(Ok(collected)) => {
            next.run(Request::from_parts(parts, Body::from(collected.to_bytes())))
                .await
        }
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            g.stats.refused(ApiRefusal::BodyTooLarge);
            too_large(g.max_body)
        }
        Ok(Err(e)) => refuse(StatusCode::BAD_REQUEST, &format!("request body: {e}")),
        Err(_) => {
            let mut r = refuse(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str, mode: u32) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("capmon-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn token_files_are_trimmed_and_refused_when_open_or_empty() {
        let t = ApiToken::read(&file("ok", "  s3cr3t-Token_1\n", 0o600)).expect("token");
        assert!(t.matches(b"s3cr3t-Token_1"));
        assert!(!t.matches(b"s3cr3t-Token_2"));
        assert!(!t.matches(b"s3cr3t-Token_1x"));
        assert!(!t.matches(b"s3cr3t"));
        assert!(!t.matches(b""));
        assert_eq!(t.authorization(), "Bearer s3cr3t-Token_1");
        assert!(ApiToken::read(&file("ro", "x", 0o400)).is_ok());
        let open = file("open", "x\n", 0o644);
        let err = ApiToken::read(&open).expect_err("0644");
        assert_eq!(
            err.to_string(),
            format!(
                "api_token_file {p}: permissions 0644 are too open: group and others must have \
                 no access to a token (chmod 600 {p})",
                p = open.display()
            )
        );
        assert!(ApiToken::read(&file("g", "x\n", 0o640)).is_err());
        assert!(ApiToken::read(&file("w", "x\n", 0o602)).is_err());
        let err = ApiToken::read(&file("empty", " \n\n", 0o600)).expect_err("empty");
        assert!(err.to_string().contains("empty"), "{err}");
        let err = ApiToken::read(&file("space", "a b\n", 0o600)).expect_err("space");
        assert!(err.to_string().contains("printable ASCII"), "{err}");
        let err = ApiToken::read(Path::new("/nonexistent/token")).expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("api_token_file /nonexistent/token: "),
            "{err}"
        );
        let dir = std::env::temp_dir();
        assert!(matches!(
            ApiToken::read(&dir),
            Err(TokenError::NotAFile { .. } | TokenError::TooOpen { .. })
        ));
    }
}
