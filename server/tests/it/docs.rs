//! What docs/OPERATIONS.md lists (routes, flags) against what the server serves and
//! accepts, both ways.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::common::server;

use server::Server;

fn operations_doc() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/OPERATIONS.md")).unwrap()
}

/// `(METHOD, /template)` of every row of the HTTP API table: ``| `GET /path` | ...``.
fn documented_routes() -> BTreeSet<(String, String)> {
    let doc = operations_doc();
    let section = doc.split("\n## HTTP API\n").nth(1).expect("docs/OPERATIONS.md has a ## HTTP API section");
    let section = section.split("\n## ").next().unwrap();
    let routes: BTreeSet<(String, String)> = section
        .lines()
        .filter_map(|line| {
            let cell = line.strip_prefix("| `")?.split('`').next()?;
            let (method, path) = cell.split_once(' ')?;
            Some((method.to_owned(), path.to_owned()))
        })
        .collect();
    assert!(routes.len() >= 10, "the route table was not found: {routes:?}");
    routes
}

/// `(METHOD, /template)` of every `.route(...)` in the router's source (a route's
/// arguments may span lines).
fn routed() -> BTreeSet<(String, String)> {
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/router.rs")).unwrap();
    let router = source.split("pub fn router(").nth(1).expect("a router function");
    let router = router.split(".fallback(").next().unwrap();
    let mut routes = BTreeSet::new();
    for call in router.split(".route(").skip(1) {
        let rest = call.trim_start().strip_prefix('"').expect("a route starts with its path");
        let (path, handlers) = rest.split_once('"').unwrap();
        for method in ["get", "post", "put", "patch", "delete"] {
            for (i, _) in handlers.match_indices(&format!("{method}(")) {
                let before = handlers[..i].chars().last();
                if before.is_some_and(|c| c.is_whitespace() || c == '.' || c == ',') {
                    routes.insert((method.to_uppercase(), path.to_owned()));
                }
            }
        }
    }
    assert!(routes.len() >= 10, "no routes found in the router's source: {routes:?}");
    routes
}

#[test]
fn every_documented_route_is_served_and_every_served_route_is_documented() {
    let documented = documented_routes();
    assert_eq!(documented, routed(), "docs/OPERATIONS.md's route table against the router");

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(server.post("/vectors/index", json!({"name": "docs", "dimension": 2})).0, 201);
    for (method, template) in &documented {
        let path = template.replace("{name}", "docs").replace("{bucket}", "primary").replace("{*key}", "k");
        let (status, body) = match method.as_str() {
            "GET" => server.get(&path),
            "POST" => server.post(&path, json!({})),
            "PUT" => server.put_bytes(&path, b"x"),
            "PATCH" => server.call("PATCH", &path, Some(json!({}))),
            "DELETE" => continue, // dropping the index would hide the routes after it
            other => panic!("no client call for {other}"),
        };
        assert_ne!(status, 405, "{method} {template}: {body}");
    }
    // Each request was counted under its route's template, which only a matched route has.
    let metrics = server.metrics();
    for (method, template) in documented.iter().filter(|(m, _)| m != "DELETE") {
        let series = format!("method=\"{method}\",route=\"{template}\"");
        assert!(metrics.contains(&series), "{method} {template} did not match a route:\n{metrics}");
    }
    let (status, _) = server.call("DELETE", "/vectors/index/docs", None);
    assert_eq!(status, 200);
}

/// The `--flags` and `ANNAL_*` variables of the configuration table.
fn documented_flags() -> (BTreeSet<String>, BTreeSet<String>) {
    let doc = operations_doc();
    let section = doc.split("\n## Configuration\n").nth(1).expect("a ## Configuration section");
    let section = section.split("\n## ").next().unwrap();
    let mut flags = BTreeSet::new();
    let mut vars = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if let Some(flag) = cells.get(1).and_then(|c| c.strip_prefix("`--")) {
            flags.insert(format!("--{}", flag.split([' ', '`']).next().unwrap()));
        }
        if let Some(var) = cells.get(2).and_then(|c| c.strip_prefix("`ANNAL_")) {
            vars.insert(format!("ANNAL_{}", var.trim_end_matches('`')));
        }
    }
    (flags, vars)
}

#[test]
fn every_serve_flag_and_its_variable_are_documented_and_no_more() {
    let help = Command::new(env!("CARGO_BIN_EXE_annal")).args(["serve", "--help"]).output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    let words = || help.split(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | ',' | '=' | ':'));
    let flags: BTreeSet<String> =
        words().filter(|w| w.starts_with("--") && *w != "--help").map(str::to_owned).collect();
    let vars: BTreeSet<String> = words().filter(|w| w.starts_with("ANNAL_")).map(str::to_owned).collect();
    let (documented_flags, documented_vars) = documented_flags();
    assert_eq!(flags, documented_flags, "`annal serve --help` against docs/OPERATIONS.md");
    // ANNAL_LOG is read by the logger, not by a flag.
    let vars: BTreeSet<String> = vars.into_iter().chain(["ANNAL_LOG".to_owned()]).collect();
    assert_eq!(vars, documented_vars, "environment variables against docs/OPERATIONS.md");
}

#[test]
fn the_openapi_description_covers_every_route_of_the_router_and_describes_the_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (status, doc) = server.get("/openapi.json");
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut described = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            described.insert((method.to_uppercase(), path.clone()));
        }
    }
    let routed: BTreeSet<(String, String)> =
        routed().into_iter().map(|(m, p)| (m, p.replace("{*", "{"))).collect();
    assert_eq!(described, routed, "/openapi.json against the router");
    // Bodies come from the handlers' types: the add body names its items and a vector
    // that is an array or base64.
    let add = &doc["paths"]["/vectors/index/{name}/add"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    let name = add["$ref"].as_str().expect("a component").rsplit('/').next().unwrap();
    let schemas = &doc["components"]["schemas"];
    assert!(schemas[name]["properties"]["items"].is_object(), "{}", schemas[name]);
    assert!(schemas["Vector"]["oneOf"].as_array().is_some_and(|v| v.len() == 2), "{}", schemas["Vector"]);
    let search = &doc["paths"]["/vectors/index/{name}/search"]["post"]["parameters"];
    let names: Vec<&str> = search.as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(names.contains(&"min_seq") && names.contains(&"as_of") && names.contains(&"name"), "{names:?}");
}

/// Subcommand names listed under `Commands:` in a `--help` text.
fn subcommands(help: &str) -> Vec<String> {
    let Some(list) = help.split("Commands:\n").nth(1) else { return Vec::new() };
    list.lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

fn help_of(path: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_annal")).args(path).arg("--help").output().unwrap();
    assert!(out.status.success(), "{path:?} --help");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_command_line_command_and_its_flags_are_documented() {
    let doc = operations_doc();
    let mut leaves = Vec::new();
    for command in subcommands(&help_of(&[])) {
        let nested = subcommands(&help_of(&[&command]));
        if nested.is_empty() {
            leaves.push(vec![command]);
        } else {
            leaves.extend(nested.into_iter().map(|sub| vec![command.clone(), sub]));
        }
    }
    assert!(leaves.len() >= 15, "{leaves:?}");
    for path in leaves.iter().filter(|p| p[0] != "serve") {
        let name = format!("`annal {}", path.join(" "));
        // Each line naming the command, with its continuation lines (up to a blank
        // line, the next bullet or the next table row).
        let lines: Vec<&str> = doc.lines().collect();
        let mut described = String::new();
        for (i, line) in lines.iter().enumerate().filter(|(_, l)| l.contains(&name)) {
            described.push_str(line);
            for next in &lines[i + 1..] {
                let t = next.trim_start();
                if t.is_empty() || t.starts_with("* ") || t.starts_with("| ") || t.starts_with("#") {
                    break;
                }
                described.push_str(next);
            }
        }
        assert!(!described.is_empty(), "{name}` is not in docs/OPERATIONS.md");
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        let help = help_of(&refs);
        let options = help.split("Options:\n").nth(1).unwrap_or("");
        let flags = options.lines().filter_map(|l| {
            let l = l.trim_start();
            let l = if l.starts_with("-") && !l.starts_with("--") { l.get(4..)? } else { l };
            l.starts_with("--").then(|| l.split([' ', '=', '<', '[']).next().unwrap_or(l))
        });
        for flag in flags.filter(|f| *f != "--help" && *f != "--version") {
            assert!(described.contains(flag), "{name}`: {flag} is not documented where the command is");
        }
    }
}

/// Every `engine/...`, `server/...`, `fuzz/...` or `benches/...` source path the docs
/// and the README name (`engine/src/recovery.rs`, `server/tests/it/docs.rs`).
fn named_source_paths() -> BTreeSet<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.push(root.join("README.md"));
    let mut named = BTreeSet::new();
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        let name = doc.file_name().unwrap().to_string_lossy().into_owned();
        for start in ["engine/", "server/", "fuzz/", "benches/"] {
            for (at, _) in text.match_indices(start) {
                // Only whole paths: not the middle of a longer one (`engine/src/engine/x.rs`).
                if at > 0 && matches!(text.as_bytes()[at - 1], b'/' | b'_' | b'.' | b'-' | b'a'..=b'z') {
                    continue;
                }
                let path: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-'))
                    .collect();
                if path.ends_with(".rs") {
                    named.insert((name.clone(), path));
                }
            }
        }
    }
    named
}

#[test]
fn every_source_file_the_docs_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let named = named_source_paths();
    assert!(named.len() > 20, "the scan finds the paths the docs name: {named:?}");
    let missing: Vec<_> = named.iter().filter(|(_, path)| !root.join(path).is_file()).collect();
    assert!(missing.is_empty(), "named in the docs but not in the tree: {missing:?}");
}
