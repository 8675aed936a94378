//! Bearer-token access control over HTTP against a real `annal serve`: who may call
//! what, the token's name as the events' actor, the open routes, the refusals at start
//! (a tokens file others may read, a public address without tokens), and secrets kept
//! out of the server's log.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::server;

use server::Server;

const WRITER: &str = "w-0123456789abcdef-secret";
const READER: &str = "r-fedcba9876543210-secret";

fn tokens_file(dir: &Path, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("tokens");
    std::fs::write(&path, format!("# who may do what\nalice:write:{WRITER}\nbob:read:{READER}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// A request with an optional bearer token and extra headers: status, body, and the
/// `WWW-Authenticate` header.
fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let url = format!("{}{}", server.base, path);
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut response = match method {
        "GET" => {
            let mut r = server.agent.get(&url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.call()
        }
        "POST" => {
            let mut r = server.agent.post(&url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.send_json(body.unwrap_or(Value::Null))
        }
        _ => unreachable!(),
    }
    .unwrap();
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), challenge)
}

#[test]
fn tokens_decide_who_may_read_and_write_and_name_the_actor_of_each_event() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path(), 0o600);
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &["--auth-tokens-file", tokens.to_str().unwrap()]);

    // Open routes.
    assert_eq!(call(&server, "GET", "/healthz", None, &[], None).0, 200);
    assert_eq!(call(&server, "GET", "/readyz", None, &[], None).0, 200);
    // Everything else needs a token: none, a malformed header, an unknown one.
    for (token, header) in
        [(None, None), (Some("not-a-token-at-all-really"), None), (None, Some("Basic YWxpY2U6eA=="))]
    {
        let headers: Vec<(&str, &str)> = header.map(|h| ("authorization", h)).into_iter().collect();
        let (status, body, challenge) = call(&server, "GET", "/vectors/index", token, &headers, None);
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "unauthorized");
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"annal\""));
    }
    assert_eq!(call(&server, "GET", "/metrics", None, &[], None).0, 401, "metrics follow --public-metrics");
    assert_eq!(call(&server, "GET", "/metrics", Some(READER), &[], None).0, 200);
    // A prefix of a secret is not the secret.
    assert_eq!(call(&server, "GET", "/vectors/index", Some(&WRITER[..WRITER.len() - 1]), &[], None).0, 401);

    // The writer writes; its name is the actor, whatever header it sends.
    let create = json!({"name": "docs", "dimension": 2, "distance": "l2"});
    let (status, body, _) =
        call(&server, "POST", "/vectors/index", Some(WRITER), &[("x-annal-actor", "mallory")], Some(create));
    assert_eq!(status, 201, "{body}");
    let add = json!({"items": [{"id": "a", "vector": [1.0, 0.0]}]});
    assert_eq!(call(&server, "POST", "/vectors/index/docs/add", Some(WRITER), &[], Some(add.clone())).0, 200);
    let (_, events, _) = call(&server, "GET", "/admin/events?from=1", Some(READER), &[], None);
    let actors: Vec<&str> =
        events["events"].as_array().unwrap().iter().map(|e| e["actor"].as_str().unwrap()).collect();
    assert_eq!(actors, ["alice", "alice"], "{events}");

    // The reader reads and searches, and may not write: 403, nothing appended.
    let last = server.last_seq();
    assert_eq!(call(&server, "GET", "/vectors/index/docs", Some(READER), &[], None).0, 200);
    let (status, hits, _) = call(
        &server,
        "POST",
        "/vectors/index/docs/search",
        Some(READER),
        &[],
        Some(json!({"vector": [1.0, 0.0], "k": 1})),
    );
    assert_eq!((status, hits["results"][0]["id"].as_str()), (200, Some("a")));
    // Listing and counting by filter are reads too; changing metadata or deleting by
    // filter is not.
    let by_filter = json!({"filter": {"id": {"$exists": false}}});
    assert_eq!(
        call(&server, "POST", "/vectors/index/docs/items", Some(READER), &[], Some(by_filter.clone())).0,
        200
    );
    let (status, count, _) =
        call(&server, "POST", "/vectors/index/docs/count", Some(READER), &[], Some(by_filter.clone()));
    assert_eq!((status, count["count"].as_u64()), (200, Some(1)));
    assert_eq!(
        call(&server, "POST", "/vectors/index/docs/delete", Some(READER), &[], Some(by_filter)).0,
        403
    );
    let set = json!({"items": [{"id": "a", "metadata": {"x": 1}}]});
    assert_eq!(call(&server, "POST", "/vectors/index/docs/metadata", Some(READER), &[], Some(set)).0, 403);
    // The scheme is case-insensitive (RFC 9110).
    let lower = format!("bearer {READER}");
    let (status, _, _) =
        call(&server, "GET", "/vectors/index/docs", None, &[("authorization", &lower)], None);
    assert_eq!(status, 200);
    // A path that merely ends in /search is no search route, and no route at all: 404,
    // as for a writer (a reader is not told "forbidden" about a route that is not there).
    for token in [READER, WRITER] {
        let (status, body, _) =
            call(&server, "POST", "/vectors/index/docs/add/search", Some(token), &[], Some(json!({})));
        assert_eq!(status, 404, "{body}");
    }
    let (status, body, _) = call(&server, "POST", "/vectors/index/docs/add", Some(READER), &[], Some(add));
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("\"bob\" may read and search only"), "{body}");
    assert_eq!(call(&server, "POST", "/admin/snapshots", Some(READER), &[], Some(json!({}))).0, 403);
    assert_eq!(server.last_seq(), last, "a refused request appends nothing");

    // The command line takes the token too.
    let tail = Command::new(env!("CARGO_BIN_EXE_annal"))
        .args(["log", "tail", "--server", &server.base, "--from", "1", "--limit", "2", "--json"])
        .env("ANNAL_TOKEN", READER)
        .output()
        .unwrap();
    assert!(tail.status.success(), "{}", String::from_utf8_lossy(&tail.stderr));
    assert_eq!(String::from_utf8_lossy(&tail.stdout).lines().count(), 2);
    let refused = Command::new(env!("CARGO_BIN_EXE_annal"))
        .args(["log", "tail", "--server", &server.base, "--from", "1", "--limit", "2"])
        .env_remove("ANNAL_TOKEN")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("answered 401"));
}

#[test]
fn metrics_can_be_public_while_the_rest_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path(), 0o600);
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--auth-tokens-file", tokens.to_str().unwrap(), "--public-metrics"],
    );
    assert_eq!(call(&server, "GET", "/metrics", None, &[], None).0, 200);
    assert_eq!(call(&server, "GET", "/vectors/index", None, &[], None).0, 401);
}

/// Run `annal serve` expecting it to refuse to start; its stderr.
fn refused_start(data: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_annal"))
        .args(["serve", "--data"])
        .arg(data)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "it must refuse to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_server_refuses_to_start_unsafely_and_never_logs_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let loose = tokens_file(dir.path(), 0o644);
    let stderr = refused_start(
        &data,
        &["--listen", "127.0.0.1:0", "--auth-tokens-file", loose.to_str().unwrap()],
        &[],
    );
    assert!(stderr.contains("mode 644") && stderr.contains("chmod 600"), "{stderr}");
    let stderr = refused_start(&data, &["--listen", "0.0.0.0:0"], &[]);
    assert!(stderr.contains("without authentication") && stderr.contains("--insecure-no-auth"), "{stderr}");
    let bad = format!("alice:admin:{WRITER}");
    let stderr = refused_start(&data, &["--listen", "127.0.0.1:0"], &[("ANNAL_AUTH_TOKENS", bad.as_str())]);
    assert!(stderr.contains("ANNAL_AUTH_TOKENS, entry 1: access \"admin\""), "{stderr}");
    assert!(!stderr.contains(WRITER), "a secret in the log: {stderr}");

    // Tokens from the variable; a public address with them is fine, and the log
    // names the tokens, never their secrets.
    let good = format!("alice:write:{WRITER},bob:read:{READER}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_annal"))
        .args(["serve", "--data"])
        .arg(&data)
        .args(["--listen", "0.0.0.0:0"])
        .env("ANNAL_AUTH_TOKENS", &good)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.contains("listening") {
            break;
        }
        line.clear();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen.contains("bearer-token authentication on") && seen.contains("alice:Write"), "{seen}");
    assert!(!seen.contains(WRITER) && !seen.contains(READER), "a secret in the log: {seen}");
    // And with the explicit flag, no tokens on a public address.
    let mut open = Command::new(env!("CARGO_BIN_EXE_annal"))
        .args(["serve", "--data"])
        .arg(&data)
        .args(["--listen", "0.0.0.0:0", "--insecure-no-auth"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(open.stderr.take().unwrap());
    let mut started = false;
    line.clear();
    while std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0 {
        if line.contains("listening") {
            started = true;
            break;
        }
        line.clear();
    }
    open.kill().unwrap();
    open.wait().unwrap();
    assert!(started, "--insecure-no-auth starts on 0.0.0.0");
}
