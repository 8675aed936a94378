//! Access control: optional bearer tokens, each with a name and an access level
//! (`read` or `write`). With tokens configured every route but `/healthz` and
//! `/readyz` (and `/metrics` with `--public-metrics`) needs `Authorization: Bearer
//! SECRET`; a `read` token may `GET` and search, a `write` token everything. The
//! token's name becomes the actor of the events the request appends (the
//! `x-annal-actor` header is replaced), so the audit trail says who did what.
//!
//! Secrets are compared as SHA-256 digests with a constant-time equality over every
//! configured token (no early exit, no length leak); they are never logged, and
//! [`Tokens`] prints only names.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::actor::ACTOR_HEADER;

/// Shortest secret accepted.
pub const SECRET_BYTES_MIN: usize = 16;
/// Longest token name (it becomes an actor).
pub const NAME_BYTES_MAX: usize = 64;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `GET` routes and searches.
    Read,
    /// Everything.
    Write,
}

struct Token {
    name: String,
    access: Access,
    digest: [u8; 32],
}

/// The configured tokens. `Debug` shows names and access only.
pub struct Tokens {
    tokens: Vec<Token>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.tokens.iter().map(|t| format!("{}:{:?}", t.name, t.access))).finish()
    }
}

/// A token configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// The tokens file cannot be read.
    #[error("tokens file {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tokens file may be read by others.
    #[error("tokens file {path} has mode {mode:o}: it must be readable by its owner only (chmod 600)")]
    Mode {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// An entry is malformed; `entry` counts from 1, the secret is not repeated.
    #[error("{source_name}, entry {entry}: {reason}")]
    Entry {
        /// The file or the variable.
        source_name: String,
        /// Which entry.
        entry: usize,
        /// What is wrong.
        reason: String,
    },
    /// Tokens were configured but none is there.
    #[error("{source_name}: no token (expected NAME:ACCESS:SECRET entries)")]
    Empty {
        /// The file or the variable.
        source_name: String,
    },
}

impl Tokens {
    /// Parse entries `NAME:ACCESS:SECRET` (ACCESS `read` or `write`), one per line or
    /// separated by commas; blank lines and lines starting with `#` are skipped.
    ///
    /// # Errors
    /// [`AuthConfigError::Entry`] naming the entry and what is wrong with it;
    /// [`AuthConfigError::Empty`].
    pub fn parse(text: &str, source_name: &str) -> Result<Self, AuthConfigError> {
        let mut tokens: Vec<Token> = Vec::new();
        let entries = text.split(['\n', ',']).map(str::trim).filter(|e| !e.is_empty() && !e.starts_with('#'));
        for (i, entry) in entries.enumerate() {
            let bad = |reason: String| AuthConfigError::Entry {
                source_name: source_name.to_owned(),
                entry: i + 1,
                reason,
            };
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(access), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad("expected NAME:ACCESS:SECRET".into()));
            };
            if name.is_empty()
                || name.len() > NAME_BYTES_MAX
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(bad(format!("name {name:?}: 1 to {NAME_BYTES_MAX} of A-Z a-z 0-9 - _ .")));
            }
            let access = match access {
                "read" => Access::Read,
                "write" => Access::Write,
                other => return Err(bad(format!("access {other:?}: read or write"))),
            };
            if secret.len() < SECRET_BYTES_MIN || !secret.chars().all(|c| c.is_ascii_graphic() && c != ',') {
                // Not naming the entry's first field: in a mis-ordered entry it is the secret.
                return Err(bad(format!(
                    "the secret must be at least {SECRET_BYTES_MIN} printable ASCII characters without spaces or commas"
                )));
            }
            let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
            if tokens.iter().any(|t| t.name == name) {
                return Err(bad(format!("name {name:?} is given twice")));
            }
            if tokens.iter().any(|t| t.digest == digest) {
                return Err(bad(format!("the secret of {name:?} is also another token's")));
            }
            tokens.push(Token { name: name.to_owned(), access, digest });
        }
        if tokens.is_empty() {
            return Err(AuthConfigError::Empty { source_name: source_name.to_owned() });
        }
        Ok(Self { tokens })
    }

    /// Read a tokens file, which must be readable by its owner only.
    ///
    /// # Errors
    /// [`AuthConfigError::Read`], [`AuthConfigError::Mode`], or as [`Tokens::parse`].
    pub fn load(path: &Path) -> Result<Self, AuthConfigError> {
        let display = path.display().to_string();
        let read = |source| AuthConfigError::Read { path: display.clone(), source };
        let metadata = std::fs::metadata(path).map_err(read)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(AuthConfigError::Mode { path: display, mode });
            }
        }
        #[cfg(not(unix))]
        let _ = metadata;
        let text = std::fs::read_to_string(path).map_err(read)?;
        Self::parse(&text, &display)
    }

    /// The token whose secret is `presented`: every token is compared, in constant
    /// time, whatever matches.
    fn find(&self, presented: &str) -> Option<&Token> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for token in &self.tokens {
            if bool::from(token.digest.ct_eq(&digest)) {
                found = Some(token);
            }
        }
        found
    }

    /// Names and access of the tokens, for the start-up log.
    pub fn names(&self) -> Vec<String> {
        self.tokens.iter().map(|t| format!("{}:{:?}", t.name, t.access)).collect()
    }
}

/// The server's access policy.
#[derive(Debug, Default)]
pub struct Auth {
    /// `None`: no authentication (loopback, or `--insecure-no-auth`).
    pub tokens: Option<Tokens>,
    /// `/metrics` without a token.
    pub public_metrics: bool,
}

/// Whether the server may start on `listen` with `auth`.
///
/// # Errors
/// A message saying why not: a non-loopback address without tokens, unless
/// `insecure_no_auth`.
pub fn check_listen(listen: SocketAddr, auth: &Auth, insecure_no_auth: bool) -> Result<(), String> {
    if auth.tokens.is_none() && !listen.ip().is_loopback() && !insecure_no_auth {
        return Err(format!(
            "refusing to listen on {listen} without authentication: give tokens (--auth-tokens-file, \
             ANNAL_AUTH_TOKENS), listen on a loopback address, or pass --insecure-no-auth"
        ));
    }
    Ok(())
}

/// The search route, a `POST` a `read` token may call.
pub const SEARCH_ROUTE: &str = "/vectors/index/{name}/search";

/// The `POST` routes that only read (their query is a body): search, items, count.
pub const READ_POSTS: [&str; 3] =
    [SEARCH_ROUTE, "/vectors/index/{name}/items", "/vectors/index/{name}/count"];

/// Whether a call only reads: every `GET` and `HEAD`, and a `POST` the router matched
/// to one of [`READ_POSTS`] (a search, a listing or a count carries its query in a body). The decision is on the
/// route the router matched, never on the raw path, so no spelling of a path reaches a
/// write route as a "search". A `read` token may make such calls, and calls to a path
/// no route matches, which [`authorize`] lets through to the 404 fallback.
fn is_read(method: &Method, matched: Option<&str>) -> bool {
    method == Method::GET
        || method == Method::HEAD
        || (method == Method::POST && matched.is_some_and(|m| READ_POSTS.contains(&m)))
}

/// The secret of an `Authorization` value: the scheme `Bearer` in any case (RFC 9110
/// makes schemes case-insensitive), then the token.
fn bearer(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?;
    let (scheme, secret) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim()).filter(|s| !s.is_empty())
}

fn refuse(status: StatusCode, error: &'static str, detail: &str) -> Response {
    let mut response = (status, Json(json!({"error": error, "detail": detail}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"annal\""));
    }
    response
}

/// The middleware: lets open routes through, checks the bearer token of the others,
/// and sets the request's actor to the token's name.
pub async fn authorize(State(auth): State<Arc<Auth>>, mut request: Request, next: Next) -> Response {
    let Some(tokens) = &auth.tokens else { return next.run(request).await };
    let path = request.uri().path();
    if path == "/healthz" || path == "/readyz" || (auth.public_metrics && path == "/metrics") {
        return next.run(request).await;
    }
    let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authorization: Bearer TOKEN is required (once)",
        );
    };
    let Some(presented) = bearer(value) else {
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized", "Authorization: expected `Bearer TOKEN`");
    };
    let Some(token) = tokens.find(presented) else {
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized", "Authorization: unknown token");
    };
    let matched = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    // No route matched: the fallback answers 404 and writes nothing, whoever asks.
    if token.access == Access::Read && matched.is_some() && !is_read(request.method(), matched) {
        let detail = format!("token {:?} may read and search only; this route writes", token.name);
        return refuse(StatusCode::FORBIDDEN, "forbidden", &detail);
    }
    let actor = HeaderValue::from_str(&token.name);
    let headers = request.headers_mut();
    headers.remove(ACTOR_HEADER);
    headers.remove(header::AUTHORIZATION);
    if let Ok(actor) = actor {
        headers.insert(ACTOR_HEADER, actor);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_a_secret_is_found_only_whole() {
        let tokens =
            Tokens::parse("# ops\nalice:write:0123456789abcdef0123\n\nbob:read:fedcba9876543210ffff", "t")
                .unwrap();
        assert_eq!(tokens.names(), ["alice:Write", "bob:Read"]);
        assert_eq!(tokens.find("0123456789abcdef0123").map(|t| t.name.as_str()), Some("alice"));
        assert_eq!(tokens.find("fedcba9876543210ffff").map(|t| t.access), Some(Access::Read));
        assert!(tokens.find("0123456789abcdef012").is_none());
        assert!(tokens.find("").is_none());
        assert!(!format!("{tokens:?}").contains("0123"), "Debug never shows a secret");
        let comma = Tokens::parse("a:read:aaaaaaaaaaaaaaaaaaaa,b:write:bbbbbbbbbbbbbbbbbbbb", "env").unwrap();
        assert_eq!(comma.names().len(), 2);
    }

    #[test]
    fn a_bad_entry_is_refused_naming_it_without_its_secret() {
        for (text, reason) in [
            ("alice:write", "expected NAME:ACCESS:SECRET"),
            ("alice:admin:0123456789abcdef0123", "access \"admin\""),
            ("alice:write:short", "at least 16"),
            ("al ice:write:0123456789abcdef0123", "name \"al ice\""),
            ("a:read:0123456789abcdef0123\na:write:1123456789abcdef0123", "given twice"),
            ("a:read:0123456789abcdef0123\nb:write:0123456789abcdef0123", "also another token's"),
        ] {
            let error = Tokens::parse(text, "tokens.txt").unwrap_err().to_string();
            assert!(error.contains(reason) && error.starts_with("tokens.txt, entry"), "{error}");
            assert!(!error.contains("0123456789abcdef0123"), "{error}");
        }
        assert!(matches!(Tokens::parse("# nothing\n", "f"), Err(AuthConfigError::Empty { .. })));
    }

    #[test]
    fn a_tokens_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "alice:write:0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = Tokens::load(&path).unwrap_err().to_string();
        assert!(error.contains("mode 644") && error.contains("chmod 600"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Tokens::load(&path).unwrap().names(), ["alice:Write"]);
    }

    #[test]
    fn a_public_address_needs_tokens_or_the_insecure_flag() {
        let open = Auth::default();
        assert!(check_listen("127.0.0.1:7700".parse().unwrap(), &open, false).is_ok());
        assert!(check_listen("[::1]:7700".parse().unwrap(), &open, false).is_ok());
        let error = check_listen("0.0.0.0:7700".parse().unwrap(), &open, false).unwrap_err();
        assert!(error.contains("--insecure-no-auth"), "{error}");
        assert!(check_listen("0.0.0.0:7700".parse().unwrap(), &open, true).is_ok());
        let with = Auth {
            tokens: Some(Tokens::parse("a:read:0123456789abcdef0123", "t").unwrap()),
            public_metrics: false,
        };
        assert!(check_listen("0.0.0.0:7700".parse().unwrap(), &with, false).is_ok());
    }

    #[test]
    fn reads_are_gets_and_the_matched_search_route() {
        assert!(is_read(&Method::GET, Some("/vectors/index/{name}")));
        assert!(is_read(&Method::GET, None));
        assert!(is_read(&Method::POST, Some(SEARCH_ROUTE)));
        assert!(is_read(&Method::POST, Some("/vectors/index/{name}/items")));
        assert!(is_read(&Method::POST, Some("/vectors/index/{name}/count")));
        assert!(!is_read(&Method::POST, Some("/vectors/index/{name}/metadata")));
        assert!(!is_read(&Method::PATCH, Some("/vectors/index/{name}/items/{id}")));
        assert!(!is_read(&Method::POST, Some("/vectors/index/{name}/add")));
        assert!(!is_read(&Method::POST, Some("/vectors/index")));
        assert!(!is_read(&Method::POST, None), "an unmatched POST is no search");
        assert!(!is_read(&Method::DELETE, Some("/vectors/index/{name}")));
        assert!(!is_read(&Method::PUT, Some("/storage/buckets/{bucket}/objects/{*key}")));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_needs_a_secret() {
        let secret = |v: &'static str| bearer(&HeaderValue::from_static(v)).map(str::to_owned);
        assert_eq!(secret("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(secret("bearer abc").as_deref(), Some("abc"));
        assert_eq!(secret("BEARER   abc  ").as_deref(), Some("abc"));
        assert_eq!(secret("Basic abc"), None);
        assert_eq!(secret("Bearer "), None);
        assert_eq!(secret("Bearerabc"), None);
        assert_eq!(secret("abc"), None);
    }
}
