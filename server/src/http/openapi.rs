//! The OpenAPI 3.1 description of the HTTP API, served at `/openapi.json`: every route
//! of the router (a test compares the two), with the JSON schemas of the request bodies
//! and query strings generated from the types the handlers parse them into.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::{admin, documents, filters, partitions, promotions, routes, storage, tuning};

/// How a route takes its input.
enum Input {
    None,
    Json(fn(&mut SchemaGenerator) -> Schema),
    Query(fn(&mut SchemaGenerator) -> Schema),
    JsonAndQuery(fn(&mut SchemaGenerator) -> Schema, fn(&mut SchemaGenerator) -> Schema),
    Bytes,
}

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// Every route: method, path (axum's syntax), what it does, what it takes.
const ROUTES: &[(&str, &str, &str, Input)] = &[
    ("post", "/vectors/index", "Create an index", Input::Json(schema::<routes::CreateIndex>)),
    ("get", "/vectors/index", "List indexes", Input::Query(schema::<routes::AsOf>)),
    (
        "get",
        "/vectors/index/{name}",
        "An index's params, length and applied/last seq",
        Input::Query(schema::<routes::AsOf>),
    ),
    ("delete", "/vectors/index/{name}", "Drop an index", Input::None),
    (
        "post",
        "/vectors/index/{name}/add",
        "Insert or replace vectors",
        Input::Json(schema::<routes::Add<'static>>),
    ),
    (
        "post",
        "/vectors/index/{name}/delete",
        "Delete vectors by id, or by filter and/or partition",
        Input::Json(schema::<routes::Delete>),
    ),
    (
        "post",
        "/vectors/index/{name}/search",
        "Search (one query or a batch)",
        Input::JsonAndQuery(schema::<routes::Search>, schema::<routes::AsOf>),
    ),
    (
        "post",
        "/vectors/index/{name}/payload-indexes",
        "Create a payload index on a metadata field",
        Input::Json(schema::<filters::CreatePayloadIndex>),
    ),
    (
        "get",
        "/vectors/index/{name}/payload-indexes",
        "The payload indexes, with their sizes",
        Input::Query(schema::<routes::AsOf>),
    ),
    ("delete", "/vectors/index/{name}/payload-indexes/{field}", "Drop a payload index", Input::None),
    (
        "post",
        "/vectors/index/{name}/items",
        "Records by id, or a page of those a filter selects",
        Input::JsonAndQuery(schema::<filters::Items>, schema::<routes::AsOf>),
    ),
    ("get", "/vectors/index/{name}/items/{id}", "One record", Input::Query(schema::<routes::AsOf>)),
    (
        "patch",
        "/vectors/index/{name}/items/{id}",
        "Merge into one record's metadata (JSON merge patch)",
        Input::Json(schema::<filters::PatchItem<'static>>),
    ),
    (
        "post",
        "/vectors/index/{name}/count",
        "Count the records a filter selects",
        Input::JsonAndQuery(schema::<filters::CountBody>, schema::<routes::AsOf>),
    ),
    (
        "post",
        "/vectors/index/{name}/metadata",
        "Replace or merge records' metadata, keeping their vectors",
        Input::Json(schema::<filters::SetMetadata<'static>>),
    ),
    (
        "post",
        "/vectors/index/{name}/documents",
        "Insert or replace documents (index with an embedder)",
        Input::Json(schema::<documents::Documents<'static>>),
    ),
    ("get", "/vectors/index/{name}/embedding", "Embedder, queue and drain report", Input::None),
    (
        "put",
        "/vectors/index/{name}/embedding",
        "Change the embedder (re-embeds every document)",
        Input::Json(schema::<documents::SetEmbedder>),
    ),
    (
        "post",
        "/vectors/index/{name}/promote",
        "Promote an HNSW configuration",
        Input::Json(schema::<promotions::Promote>),
    ),
    ("post", "/vectors/index/{name}/rollback", "Roll back the promotion in effect", Input::None),
    ("get", "/vectors/index/{name}/promotion", "Promotion state and graph work", Input::None),
    ("get", "/vectors/promotions", "Every index with a promotion", Input::None),
    (
        "post",
        "/vectors/index/{name}/evals",
        "Create an evaluation set (a job)",
        Input::Json(schema::<tuning::CreateEval>),
    ),
    ("post", "/vectors/index/{name}/trials", "Run a trial (a job)", Input::Json(schema::<tuning::RunTrial>)),
    ("get", "/vectors/index/{name}/trials", "Evaluation sets and trials", Input::None),
    (
        "get",
        "/vectors/index/{name}/trials/best",
        "The best trial for an objective",
        Input::Query(schema::<tuning::BestQuery>),
    ),
    ("post", "/vectors/index/{name}/autotune", "Autotune (a job)", Input::Json(schema::<tuning::Autotune>)),
    ("get", "/jobs/{id}", "A job's progress and result", Input::None),
    (
        "post",
        "/vectors/index/{name}/scheme",
        "Set the first partition scheme",
        Input::Json(schema::<partitions::SetScheme>),
    ),
    (
        "post",
        "/vectors/index/{name}/migrate",
        "Migrate to a new scheme (a job)",
        Input::Json(schema::<partitions::Migrate>),
    ),
    ("get", "/vectors/index/{name}/migration", "Scheme and migrations", Input::None),
    ("delete", "/vectors/index/{name}/migration", "Clear the finished migration", Input::None),
    ("get", "/vectors/index/{name}/partitions", "Records per partition", Input::None),
    ("get", "/healthz", "Liveness and replay progress", Input::None),
    ("get", "/readyz", "Readiness", Input::None),
    ("get", "/metrics", "Prometheus metrics", Input::None),
    ("get", "/openapi.json", "This description", Input::None),
    ("get", "/storage/buckets", "Buckets", Input::None),
    ("post", "/storage/buckets/{bucket}/probe", "Probe a bucket", Input::None),
    ("get", "/storage/buckets/{bucket}/objects", "List objects", Input::Query(schema::<storage::ListQuery>)),
    ("get", "/storage/buckets/{bucket}/objects/", "An empty key: 400", Input::None),
    ("put", "/storage/buckets/{bucket}/objects/", "An empty key: 400", Input::None),
    ("delete", "/storage/buckets/{bucket}/objects/", "An empty key: 400", Input::None),
    ("get", "/storage/buckets/{bucket}/objects/{*key}", "Read an object (streamed)", Input::None),
    ("put", "/storage/buckets/{bucket}/objects/{*key}", "Write an object", Input::Bytes),
    ("delete", "/storage/buckets/{bucket}/objects/{*key}", "Delete an object", Input::None),
    ("get", "/storage/errors", "The bucket error journal", Input::Query(schema::<storage::ErrorsQuery>)),
    ("post", "/admin/snapshots", "Take a snapshot", Input::None),
    ("get", "/admin/snapshots", "Known snapshots", Input::None),
    ("get", "/admin/log", "The log's extent and archive", Input::None),
    ("get", "/admin/cluster", "This node's place in its cluster: copy of the stream, lag", Input::None),
    (
        "get",
        "/admin/events",
        "Events from a sequence number, as JSON (long poll with wait_ms)",
        Input::Query(schema::<admin::EventsQuery>),
    ),
    ("get", "/storage/bucket-health", "Errors per bucket", Input::Query(schema::<storage::HealthQuery>)),
];

/// `(METHOD, path)` of every described route, in axum's path syntax.
pub fn described() -> Vec<(String, String)> {
    ROUTES.iter().map(|(m, p, _, _)| (m.to_uppercase(), (*p).to_owned())).collect()
}

/// The query parameters of a query-string schema: one per property.
fn query_parameters(schema: &Value, components: &Map<String, Value>) -> Vec<Value> {
    let resolved = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
        .and_then(|name| components.get(name))
        .unwrap_or(schema);
    let properties = resolved.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    properties
        .into_iter()
        .map(|(name, schema)| json!({"name": name, "in": "query", "required": false, "schema": schema}))
        .collect()
}

/// The whole document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut paths = Map::new();
    let mut operations = Vec::new();
    for (method, path, summary, input) in ROUTES {
        let (body, query) = match input {
            Input::None => (None, None),
            Input::Json(f) => (Some(json!({"application/json": {"schema": f(&mut generator)}})), None),
            Input::Query(f) => (None, Some(f(&mut generator))),
            Input::JsonAndQuery(b, q) => {
                (Some(json!({"application/json": {"schema": b(&mut generator)}})), Some(q(&mut generator)))
            }
            Input::Bytes => (
                Some(json!({"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}})),
                None,
            ),
        };
        operations.push((method, path, summary, body, query));
    }
    let components: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    for (method, path, summary, body, query) in operations {
        // OpenAPI has no catch-all segment: `{*key}` is written `{key}` (it may hold '/').
        let openapi_path = path.replace("{*", "{");
        let mut parameters: Vec<Value> = openapi_path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if let Some(query) = query {
            parameters
                .extend(query_parameters(&serde_json::to_value(query).unwrap_or_default(), &components));
        }
        let mut operation = json!({
            "summary": summary,
            "parameters": parameters,
            "responses": {
                "default": {
                    "description": "See docs/OPERATIONS.md; errors are {error, detail}.",
                    "content": {"application/json": {}}
                }
            }
        });
        if let Some(content) = body {
            operation["requestBody"] = json!({"required": true, "content": content});
        }
        let entry = paths.entry(openapi_path).or_insert_with(|| json!({}));
        entry[*method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "annal", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Event-sourced vector store. Routes, statuses and limits: docs/OPERATIONS.md."},
        "paths": paths,
        "components": {"schemas": components},
    })
}

/// `GET /openapi.json`.
pub async fn serve() -> axum::Json<Value> {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    axum::Json(DOCUMENT.get_or_init(document).clone())
}
