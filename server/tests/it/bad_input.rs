//! Malformed and hostile requests across every route, sent whole over HTTP to a real
//! `annal serve`: each is refused with the status a client can act on and a message
//! naming the field, and none of them moves the log's last sequence number.

use serde_json::Value;

use crate::common::server;

use server::Server;

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    /// Must appear in the answer's `detail` (or `error`).
    says: &'static str,
}

fn case(
    name: &'static str,
    method: &'static str,
    path: &str,
    body: &str,
    status: u16,
    says: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        content_type: "application/json",
        body: body.as_bytes().to_vec(),
        status,
        says,
    }
}

fn send(server: &Server, c: &Case) -> (u16, Value, String) {
    if c.body.len() > 64 * 1024 * 1024 {
        // The server answers before reading such a body and closes the connection, so
        // a client that insists on sending it all sees a broken pipe: declare it, send
        // the start, and read the answer.
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(server.host()).unwrap();
        let head = format!(
            "{} {} HTTP/1.1\r\nhost: x\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            c.method,
            c.path,
            c.content_type,
            c.body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        let _ = stream.write_all(&c.body[..4096]);
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        return (status, serde_json::from_str(&body).unwrap_or(Value::Null), body);
    }
    let url = format!("{}{}", server.base, c.path);
    let mut response = match c.method {
        "GET" => server.agent.get(&url).call(),
        "DELETE" => server.agent.delete(&url).call(),
        "POST" => server.agent.post(&url).content_type(c.content_type).send(&c.body[..]),
        "PUT" => server.agent.put(&url).content_type(c.content_type).send(&c.body[..]),
        other => panic!("method {other}"),
    }
    .unwrap_or_else(|e| panic!("{}: transport failed: {e}", c.name));
    let status = response.status().as_u16();
    let text = response.body_mut().with_config().limit(1 << 20).read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
}

fn nested(depth: usize) -> String {
    format!("{{\"name\": {}1{}, \"dimension\": 3}}", "[".repeat(depth), "]".repeat(depth))
}

fn cases() -> Vec<Case> {
    let big_id = "x".repeat(10 * 1024 * 1024);
    let items = |item: &str| format!("{{\"items\": [{item}]}}");
    let add = "/vectors/index/docs/add";
    let search = "/vectors/index/docs/search";
    let mut cases = vec![
        // Creating an index.
        case("truncated JSON", "POST", "/vectors/index", r#"{"name": "x", "#, 400, "body: not valid JSON"),
        case("not an object", "POST", "/vectors/index", r#"[1, 2]"#, 400, "body: must be a JSON object"),
        case("an empty body", "POST", "/vectors/index", "", 400, "body"),
        case(
            "dimension as a string",
            "POST",
            "/vectors/index",
            r#"{"name": "x", "dimension": "3"}"#,
            400,
            "dimension",
        ),
        case("dimension 0", "POST", "/vectors/index", r#"{"name": "x", "dimension": 0}"#, 400, "dimension"),
        case(
            "negative dimension",
            "POST",
            "/vectors/index",
            r#"{"name": "x", "dimension": -3}"#,
            400,
            "dimension",
        ),
        case(
            "huge dimension",
            "POST",
            "/vectors/index",
            r#"{"name": "x", "dimension": 1e12}"#,
            400,
            "dimension",
        ),
        case(
            "dimension over u64",
            "POST",
            "/vectors/index",
            r#"{"name": "x", "dimension": 99999999999999999999999}"#,
            400,
            "dimension",
        ),
        case("missing name", "POST", "/vectors/index", r#"{"dimension": 3}"#, 400, "name"),
        case("empty name", "POST", "/vectors/index", r#"{"name": "", "dimension": 3}"#, 400, "name"),
        case(
            "name with a slash",
            "POST",
            "/vectors/index",
            r#"{"name": "a/b", "dimension": 3}"#,
            400,
            "name",
        ),
        case("name with dots", "POST", "/vectors/index", r#"{"name": "..", "dimension": 3}"#, 400, "name"),
        case("unicode name", "POST", "/vectors/index", r#"{"name": "ïndex", "dimension": 3}"#, 400, "name"),
        case(
            "right-to-left override in a name",
            "POST",
            "/vectors/index",
            "{\"name\": \"a\u{202e}b\", \"dimension\": 3}",
            400,
            "name",
        ),
        case(
            "unknown field",
            "POST",
            "/vectors/index",
            r#"{"name": "x", "dimension": 3, "colour": "red"}"#,
            400,
            "colour",
        ),
        case(
            "unknown distance",
            "POST",
            "/vectors/index",
            r#"{"name": "x", "dimension": 3, "distance": "manhattan"}"#,
            400,
            "distance",
        ),
        case("m of 0", "POST", "/vectors/index", r#"{"name": "x", "dimension": 3, "m": 0}"#, 400, "m"),
        case(
            "an index that exists",
            "POST",
            "/vectors/index",
            r#"{"name": "docs", "dimension": 3}"#,
            409,
            "docs",
        ),
        case("deep nesting", "POST", "/vectors/index", &nested(100_000), 400, "name"),
        case(
            "unknown embedder",
            "POST",
            "/vectors/index",
            r#"{"name": "x", "embedder": "no-such-model"}"#,
            400,
            "embedder",
        ),
        // Adding vectors.
        case(
            "wrong dimension",
            "POST",
            add,
            &items(r#"{"id": "a", "vector": [1, 2]}"#),
            400,
            "items[0].vector",
        ),
        case(
            "NaN as a string",
            "POST",
            add,
            &items(r#"{"id": "a", "vector": ["NaN", 1, 2]}"#),
            400,
            "items[0].vector",
        ),
        case(
            "Infinity as a string",
            "POST",
            add,
            &items(r#"{"id": "a", "vector": [1, "Infinity", 2]}"#),
            400,
            "items[0].vector",
        ),
        case(
            "a number beyond f32",
            "POST",
            add,
            &items(r#"{"id": "a", "vector": [1, 2, 1e39]}"#),
            400,
            "items[0].vector",
        ),
        case("empty id", "POST", add, &items(r#"{"id": "", "vector": [1, 2, 3]}"#), 400, "items[0].id"),
        case("id as a number", "POST", add, &items(r#"{"id": 7, "vector": [1, 2, 3]}"#), 400, "id"),
        case(
            "10 MB id",
            "POST",
            add,
            &items(&format!(r#"{{"id": "{big_id}", "vector": [1, 2, 3]}}"#)),
            400,
            "items[0].id",
        ),
        case(
            "duplicate ids",
            "POST",
            add,
            &items(r#"{"id": "a", "vector": [1, 2, 3]}, {"id": "a", "vector": [3, 2, 1]}"#),
            400,
            "items[1].id",
        ),
        case("no items", "POST", add, r#"{"items": []}"#, 400, "items"),
        case("items not a list", "POST", add, r#"{"items": {"id": "a"}}"#, 400, "items"),
        case(
            "invalid base64",
            "POST",
            add,
            &items(r#"{"id": "a", "vector": "!!!not base64"}"#),
            400,
            "items[0].vector",
        ),
        case(
            "base64 of the wrong length",
            "POST",
            add,
            &items(r#"{"id": "a", "vector": "AAAAAAAA"}"#),
            400,
            "items[0].vector",
        ),
        case(
            "metadata over 64 KiB",
            "POST",
            add,
            &items(&format!(r#"{{"id": "a", "vector": [1, 2, 3], "metadata": "{}"}}"#, "m".repeat(70_000))),
            400,
            "items[0].metadata",
        ),
        case(
            "an empty partition segment",
            "POST",
            add,
            &items(r#"{"id": "a", "vector": [1, 2, 3], "partition": "a//b"}"#),
            400,
            "items[0].partition",
        ),
        case(
            "unknown wait",
            "POST",
            add,
            r#"{"items": [{"id": "a", "vector": [1, 2, 3]}], "wait": "eventually"}"#,
            400,
            "wait",
        ),
        case(
            "unknown index",
            "POST",
            "/vectors/index/nope/add",
            &items(r#"{"id": "a", "vector": [1, 2, 3]}"#),
            404,
            "nope",
        ),
        case(
            "a partition climbing out",
            "POST",
            add,
            &items(r#"{"id": "a", "vector": [1, 2, 3], "partition": "../etc"}"#),
            400,
            "items[0].partition",
        ),
        case(
            "documents to a vector index",
            "POST",
            "/vectors/index/docs/documents",
            r#"{"items": [{"id": "a", "text": "hi"}]}"#,
            400,
            "embedder",
        ),
        // Deleting.
        case("no ids", "POST", "/vectors/index/docs/delete", r#"{"ids": []}"#, 400, "ids"),
        case("ids of numbers", "POST", "/vectors/index/docs/delete", r#"{"ids": [1, 2]}"#, 400, "ids"),
        // Searching.
        case("negative k", "POST", search, r#"{"vector": [1, 2, 3], "k": -1}"#, 400, "k"),
        case("k of 0", "POST", search, r#"{"vector": [1, 2, 3], "k": 0}"#, 400, "k"),
        case("huge k", "POST", search, r#"{"vector": [1, 2, 3], "k": 1e20}"#, 400, "k"),
        case("k over the limit", "POST", search, r#"{"vector": [1, 2, 3], "k": 100000}"#, 400, "k"),
        case("a query of the wrong dimension", "POST", search, r#"{"vector": [1, 2]}"#, 400, "vector"),
        case("NaN in a query", "POST", search, r#"{"vector": [1, "NaN", 3]}"#, 400, "vector"),
        case(
            "both vector and vectors",
            "POST",
            search,
            r#"{"vector": [1, 2, 3], "vectors": [[1, 2, 3]]}"#,
            400,
            "vector",
        ),
        case("no query", "POST", search, r#"{"k": 3}"#, 400, "vector"),
        case("text on a vector index", "POST", search, r#"{"text": "hello"}"#, 400, "embedder"),
        case(
            "as_of not a number",
            "POST",
            &format!("{search}?as_of=abc"),
            r#"{"vector": [1, 2, 3]}"#,
            400,
            "as_of",
        ),
        case(
            "as_of negative",
            "POST",
            &format!("{search}?as_of=-1"),
            r#"{"vector": [1, 2, 3]}"#,
            400,
            "as_of",
        ),
        case(
            "as_of in the future",
            "POST",
            &format!("{search}?as_of=999999"),
            r#"{"vector": [1, 2, 3]}"#,
            400,
            "999999",
        ),
        case("min_seq never appended", "GET", "/vectors/index/docs?min_seq=999999", "", 400, "min_seq"),
        // Promotions, trials, schemes, migrations.
        case(
            "promotion with m as text",
            "POST",
            "/vectors/index/docs/promote",
            r#"{"m": "big", "ef_construction": 80, "ef_search": 64}"#,
            400,
            "m",
        ),
        case(
            "promotion citing an unknown trial",
            "POST",
            "/vectors/index/docs/promote",
            r#"{"m": 16, "ef_construction": 80, "ef_search": 64, "trial_id": "t-none"}"#,
            400,
            "t-none",
        ),
        case("rollback with nothing promoted", "POST", "/vectors/index/docs/rollback", "{}", 409, "docs"),
        // Quantized storage.
        case(
            "unknown storage",
            "POST",
            "/vectors/index",
            r#"{"name": "x", "dimension": 4, "storage": "int2"}"#,
            400,
            "storage",
        ),
        case(
            "refine of 0",
            "POST",
            "/vectors/index",
            r#"{"name": "x", "dimension": 4, "storage": "sq8", "refine": 0}"#,
            400,
            "refine",
        ),
        case(
            "refine over 16",
            "POST",
            "/vectors/index",
            r#"{"name": "x", "dimension": 4, "storage": "sq8", "refine": 17}"#,
            400,
            "refine",
        ),
        case(
            "refine of flat storage",
            "POST",
            "/vectors/index",
            r#"{"name": "x", "dimension": 4, "refine": 2}"#,
            400,
            "refine",
        ),
        case(
            "pq sub-quantizers not dividing the dimension",
            "POST",
            "/vectors/index",
            r#"{"name": "x", "dimension": 4, "storage": "pq", "pq_m": 3}"#,
            400,
            "pq_m",
        ),
        case(
            "pq without sub-quantizers",
            "POST",
            "/vectors/index",
            r#"{"name": "x", "dimension": 4, "storage": "pq"}"#,
            400,
            "pq_m",
        ),
        case(
            "pq_m with sq8",
            "POST",
            "/vectors/index",
            r#"{"name": "x", "dimension": 4, "storage": "sq8", "pq_m": 2}"#,
            400,
            "pq_m",
        ),
        case(
            "promotion to pq not dividing the index's dimension",
            "POST",
            "/vectors/index/docs/promote",
            r#"{"m": 16, "ef_construction": 80, "ef_search": 64, "storage": "pq", "pq_m": 2}"#,
            400,
            "pq_m",
        ),
        case(
            "a trial of a storage the index has too few vectors to train",
            "POST",
            "/vectors/index/docs/trials",
            r#"{"eval_id": "e-none", "m": 16, "ef_construction": 80, "ef_search": 64, "storage": "sq8"}"#,
            400,
            "storage",
        ),
        case(
            "a trial with refine of flat storage",
            "POST",
            "/vectors/index/docs/trials",
            r#"{"eval_id": "e-none", "m": 16, "ef_construction": 80, "ef_search": 64, "refine": 2}"#,
            400,
            "refine",
        ),
        case(
            "autotune with two budgets",
            "POST",
            "/vectors/index/docs/autotune",
            r#"{"eval_id": "e-none", "recall_floor": 0.9, "max_bytes_per_vector": 600, "max_resident_mb": 100}"#,
            400,
            "max_resident_mb",
        ),
        case(
            "autotune with a budget of 0",
            "POST",
            "/vectors/index/docs/autotune",
            r#"{"eval_id": "e-none", "recall_floor": 0.9, "max_bytes_per_vector": 0}"#,
            400,
            "max_bytes_per_vector",
        ),
        case(
            "a trial of an unknown evaluation set",
            "POST",
            "/vectors/index/docs/trials",
            r#"{"eval_id": "e-none", "m": 16, "ef_construction": 80, "ef_search": 64}"#,
            404,
            "e-none",
        ),
        case(
            "autotune against an unknown evaluation set",
            "POST",
            "/vectors/index/docs/autotune",
            r#"{"eval_id": "e-none", "recall_floor": 0.9}"#,
            404,
            "e-none",
        ),
        case(
            "autotune with a recall floor over 1",
            "POST",
            "/vectors/index/docs/autotune",
            r#"{"eval_id": "e-none", "recall_floor": 1.5}"#,
            400,
            "recall_floor",
        ),
        case(
            "a malformed template",
            "POST",
            "/vectors/index/docs/scheme",
            r#"{"template": "tenant={tenant"}"#,
            400,
            "template",
        ),
        case(
            "migration batch of 0",
            "POST",
            "/vectors/index/docs/migrate",
            r#"{"template": "t={t}", "batch_size": 0}"#,
            400,
            "batch_size",
        ),
        case(
            "migration without a scheme to migrate from",
            "DELETE",
            "/vectors/index/docs/migration",
            "",
            409,
            "docs",
        ),
        // Storage and paths.
        case(
            "object key climbing out",
            "GET",
            "/storage/buckets/primary/objects/..%2F..%2Fetc%2Fpasswd",
            "",
            400,
            "key",
        ),
        case("unknown bucket", "GET", "/storage/buckets/nope/objects/a", "", 404, "nope"),
        case(
            "index name climbing out",
            "POST",
            "/vectors/index/..%2F..%2Fx/add",
            &items(r#"{"id": "a", "vector": [1, 2, 3]}"#),
            404,
            "x",
        ),
        case(
            "unknown route",
            "POST",
            "/vectors/index/docs/explode",
            "{}",
            404,
            "POST /vectors/index/docs/explode",
        ),
        case("wrong method", "PUT", "/vectors/index/docs/search", "{}", 405, "method"),
        // Metadata filters: the path of the offending clause, nothing appended.
        case(
            "an unknown filter operator",
            "POST",
            search,
            r#"{"vector": [1, 2, 3], "filter": {"$and": [{"a": 1}, {"b": {"$regex": "x"}}]}}"#,
            400,
            "filter.$and[1].b.$regex: unknown operator",
        ),
        case(
            "a range on the string of an integer payload index",
            "POST",
            search,
            r#"{"vector": [1, 2, 3], "filter": {"$and": [{"a": 1}, {"price": {"$gt": "2024-01-01T00:00:00Z"}}]}}"#,
            400,
            "filter.$and[1].price.$gt: the field has a payload index of type integer",
        ),
        case(
            "a range operand that is neither a number nor a timestamp",
            "POST",
            "/vectors/index/docs/count",
            r#"{"filter": {"price": {"$lt": "cheap"}}}"#,
            400,
            "filter.price.$lt: takes a number or an RFC 3339 timestamp",
        ),
        case(
            "a filter nested too deep",
            "POST",
            "/vectors/index/docs/items",
            &format!("{{\"filter\": {}{{\"a\": 1}}{}}}", "{\"$not\": ".repeat(20), "}".repeat(20)),
            400,
            "nested deeper than 16",
        ),
        case(
            "a delete by a filter of the wrong type",
            "POST",
            "/vectors/index/docs/delete",
            r#"{"filter": {"price": "ten"}}"#,
            400,
            "filter.price: the field has a payload index of type integer",
        ),
        case(
            "a filter that is an array",
            "POST",
            "/vectors/index/docs/count",
            r#"{"filter": [1]}"#,
            400,
            "filter",
        ),
        case(
            "a delete by an empty filter (every record)",
            "POST",
            "/vectors/index/docs/delete",
            r#"{"filter": {}}"#,
            400,
            "filter: an empty filter selects every record",
        ),
        case(
            "ids and a filter at once",
            "POST",
            "/vectors/index/docs/delete",
            r#"{"ids": ["a"], "filter": {}}"#,
            400,
            "ids",
        ),
        case(
            "an unknown payload index type",
            "POST",
            "/vectors/index/docs/payload-indexes",
            r#"{"field": "tenant", "type": "text"}"#,
            400,
            "type: unknown payload index type",
        ),
        case(
            "a payload index on an empty path part",
            "POST",
            "/vectors/index/docs/payload-indexes",
            r#"{"field": "a..b", "type": "keyword"}"#,
            400,
            "field",
        ),
        case(
            "a payload index that exists",
            "POST",
            "/vectors/index/docs/payload-indexes",
            r#"{"field": "price", "type": "keyword"}"#,
            409,
            "price",
        ),
        case(
            "dropping a payload index that does not exist",
            "DELETE",
            "/vectors/index/docs/payload-indexes/nope",
            "",
            404,
            "nope",
        ),
        case(
            "metadata for a record that does not exist",
            "POST",
            "/vectors/index/docs/metadata",
            r#"{"items": [{"id": "seed", "metadata": {}}, {"id": "ghost", "metadata": {}}]}"#,
            404,
            "items[1].id",
        ),
        case("an items page of 0", "POST", "/vectors/index/docs/items", r#"{"limit": 0}"#, 400, "limit"),
        case(
            "an unknown include",
            "POST",
            "/vectors/index/docs/items",
            r#"{"ids": ["seed"], "include": ["text"]}"#,
            400,
            "include[0]",
        ),
    ];
    let mut wrong_type = case(
        "wrong content type",
        "POST",
        add,
        &items(r#"{"id": "a", "vector": [1, 2, 3]}"#),
        415,
        "content-type",
    );
    wrong_type.content_type = "text/plain";
    cases.push(wrong_type);
    // Over the 64 MiB body cap: refused before it is read.
    let mut huge = case("a body over the cap", "POST", add, "", 413, "payload");
    huge.body = vec![b' '; 65 * 1024 * 1024];
    cases.push(huge);
    cases
}

#[test]
fn every_malformed_request_is_refused_naming_the_field_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(
        server
            .post("/vectors/index", serde_json::json!({"name": "docs", "dimension": 3, "distance": "l2"}))
            .0,
        201
    );
    let seed = serde_json::json!({"items": [{"id": "seed", "vector": [0.0, 0.0, 1.0]}]});
    assert_eq!(server.post("/vectors/index/docs/add", seed).0, 200);
    let price = serde_json::json!({"field": "price", "type": "integer"});
    assert_eq!(server.post("/vectors/index/docs/payload-indexes", price).0, 201);
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let before = server.last_seq();
        let (status, body, text) = send(&server, c);
        let after = server.last_seq();
        let said =
            format!("{} {}", body["error"].as_str().unwrap_or(""), body["detail"].as_str().unwrap_or(&text));
        let shown: String = said.chars().take(300).collect();
        if status != c.status {
            failures.push(format!("{}: status {status}, expected {}: {shown}", c.name, c.status));
        } else if !said.to_lowercase().contains(&c.says.to_lowercase()) {
            failures.push(format!("{}: the answer does not name {:?}: {shown}", c.name, c.says));
        }
        if after != before {
            failures.push(format!("{}: the log moved from {before} to {after}", c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Still serving, and nothing but the seed in the index.
    let (status, index) = server.get("/vectors/index/docs");
    assert_eq!((status, index["length"].as_u64()), (200, Some(1)));
}
