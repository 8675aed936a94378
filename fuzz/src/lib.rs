//! The fuzz targets' bodies, as functions: `fuzz_targets/*` run them under libFuzzer
//! (`cargo +nightly fuzz run NAME`, see `scripts/fuzz.sh`), and `tests/corpus.rs` runs
//! them on every CI run over the committed corpus and generated inputs, so a crash
//! once found stays a regression test.
//!
//! Each function panics (the fuzzer's finding) only when the property it checks does
//! not hold: decoding never panics and what it accepts re-encodes stably; no HTTP body
//! makes a route answer 500; the engine driven by arbitrary operations always agrees
//! with a `BTreeMap` model of what it should hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use annal_engine::event::{decode, encode, SnapshotTaken, VectorItem, FRAME_VERSION};
use annal_engine::Replay;
use annal_engine::{Engine, EngineConfig, Error, HnswConfig, Metric, PromoteRequest, SyncMode};
use arbitrary::{Arbitrary, Unstructured};

/// Arbitrary bytes into the frame decoder: an error or an event, never a panic, and
/// whatever it accepts re-encodes to the same bytes twice.
pub fn frame_decode(data: &[u8]) {
    if let Ok(event) = decode(0, data) {
        // Compare bytes, not events: a NaN component is not equal to itself.
        let once = encode(&event).expect("a decoded event re-encodes");
        let twice = encode(&decode(0, &once).expect("a re-encoded event decodes")).expect("re-encodes");
        assert_eq!(once, twice);
    }
}

/// Arbitrary bytes as a cluster commit message (docs/FORMAT.md, "Cluster commit
/// message"): refused, or frames that encode back into the same message; and the
/// message's bytes with a valid CRC appended, so the fuzzer reaches the frame walk.
pub fn commit_decode(data: &[u8]) {
    use annal_engine::cluster_commit::{decode as decode_commit, encode as encode_commit};
    for message in [data.to_vec(), {
        let mut m = data.to_vec();
        m.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        m
    }] {
        if let Ok(frames) = decode_commit(&message) {
            assert!(!frames.is_empty(), "an empty commit decoded");
            assert_eq!(encode_commit(&frames), message, "a decoded commit re-encodes to its bytes");
            for frame in &frames {
                frame_decode(frame);
            }
        }
    }
}

/// Arbitrary payloads behind a valid header and checksum, for every kind (and unknown
/// ones), so the fuzzer reaches rkyv's validation instead of stopping at the CRC.
pub fn payload_decode(data: &[u8]) {
    let Some((&kind, payload)) = data.split_first() else { return };
    let Ok(len) = u32::try_from(payload.len()) else { return };
    let mut frame = vec![FRAME_VERSION, kind % 32, 0, 0];
    frame.extend_from_slice(&len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&frame);
    crc.update(payload);
    frame.extend_from_slice(&crc.finalize().to_le_bytes());
    frame.extend_from_slice(payload);
    frame_decode(&frame);
}

/// The projections' snapshot section names, as a snapshot holds them.
pub const SECTIONS: [&str; 8] =
    ["documents", "vectors", "payload", "text", "journal", "promotions", "trials", "partitions"];

/// Arbitrary bytes as a snapshot object: the container check, then (if it passes)
/// every projection's restore. Never a panic.
pub fn snapshot_decode(data: &[u8]) {
    if let Ok(decoded) = annal_engine::decode_snapshot(data) {
        let taken = SnapshotTaken {
            seq: decoded.seq,
            bucket: "primary".into(),
            key: "fuzz".into(),
            bytes: data.len() as u64,
            crc32: decoded.crc32,
        };
        let _ = Replay::from_snapshot(data, &taken);
    }
}

/// Arbitrary section contents in a valid container (correct CRCs), so the fuzzer
/// reaches each projection's section decoder. The `vectors` section's FAISS index
/// bytes are left out: FAISS's own reader is not hardened against hostile input (a
/// snapshot's bytes are trusted once their CRC matches the registration).
pub fn snapshot_sections(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(seq) = u.arbitrary::<u64>() else { return };
    let mut sections = Vec::new();
    for name in SECTIONS {
        if name == "vectors" {
            // An empty catalog: `u64` count 0.
            sections.push((name.to_owned(), 0u64.to_le_bytes().to_vec()));
            continue;
        }
        let Ok(bytes) = u.arbitrary::<Vec<u8>>() else { return };
        sections.push((name.to_owned(), bytes));
    }
    let (chunks, _) = annal_engine::encode_snapshot(seq, sections);
    let object: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let decoded = annal_engine::decode_snapshot(&object).expect("what encode writes decodes");
    let taken = SnapshotTaken {
        seq,
        bucket: "primary".into(),
        key: "fuzz".into(),
        bytes: object.len() as u64,
        crc32: decoded.crc32,
    };
    let _ = Replay::from_snapshot(&object, &taken);
}

/// What an HTTP request of the `http_body` target goes to.
pub const ROUTES: [(&str, &str); 19] = [
    ("POST", "/vectors/index"),
    ("POST", "/vectors/index/docs/add"),
    ("POST", "/vectors/index/docs/delete"),
    ("POST", "/vectors/index/docs/search"),
    ("POST", "/vectors/index/docs/documents"),
    ("POST", "/vectors/index/docs/scheme"),
    ("POST", "/vectors/index/docs/promote"),
    ("POST", "/vectors/index/docs/rollback"),
    ("PUT", "/vectors/index/docs/embedding"),
    ("PUT", "/storage/buckets/primary/objects/fuzz"),
    ("GET", "/vectors/index/docs?"),
    ("GET", "/vectors/index?"),
    ("GET", "/admin/events?"),
    ("POST", "/vectors/index/docs/search?"),
    ("POST", "/vectors/index/docs/items"),
    ("POST", "/vectors/index/docs/count"),
    ("POST", "/vectors/index/docs/metadata"),
    ("POST", "/vectors/index/docs/payload-indexes"),
    ("PATCH", "/vectors/index/docs/items/a"),
];

struct App {
    _dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = EngineConfig { sync: SyncMode::Deferred, ..EngineConfig::default() };
        let engine = Arc::new(Engine::open(dir.path(), config).expect("open"));
        engine.create_index("fuzz", "docs", 3, Metric::L2, HnswConfig::default()).expect("create");
        let item =
            VectorItem { id: "seed".into(), vector: vec![0.0, 0.0, 1.0], metadata: None, partition: None };
        engine.upsert("fuzz", "docs", vec![item]).expect("seed");
        let state =
            annal_server::http::AppState::new(engine, annal_server::http::INFLIGHT_BODY_BYTES_DEFAULT)
                .expect("state");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        App { _dir: dir, runtime, router: annal_server::http::router(state) }
    })
}

/// The first byte picks a route, the rest is its body (or, for `GET` routes and the
/// last search, its query string): whatever it is, the answer is not a 500 and the
/// server does not panic.
pub fn http_body(data: &[u8]) {
    use tower::ServiceExt;
    let Some((&pick, rest)) = data.split_first() else { return };
    let (method, path) = ROUTES[pick as usize % ROUTES.len()];
    let (uri, body) = if path.ends_with('?') {
        let query: String = rest
            .iter()
            .map(|b| if b.is_ascii_alphanumeric() || b"=&_-.".contains(b) { char::from(*b) } else { '_' })
            .collect();
        let body = if method == "POST" { br#"{"vector": [1, 2, 3]}"#.to_vec() } else { Vec::new() };
        (format!("{path}{query}"), body)
    } else {
        (path.to_owned(), rest.to_vec())
    };
    let content_type =
        if path.contains("/objects/") { "application/octet-stream" } else { "application/json" };
    let request = axum::http::Request::builder()
        .method(method)
        .uri(uri.as_str())
        .header("content-type", content_type)
        .body(axum::body::Body::from(body))
        .expect("request");
    let app = app();
    let response = app.runtime.block_on(app.router.clone().oneshot(request)).expect("infallible");
    let status = response.status().as_u16();
    if status == 500 {
        let bytes =
            app.runtime.block_on(axum::body::to_bytes(response.into_body(), 1 << 20)).unwrap_or_default();
        panic!("{method} {uri}: 500: {}", String::from_utf8_lossy(&bytes));
    }
}

/// Documents a fuzzed filter is evaluated on.
fn filter_documents() -> &'static [serde_json::Value] {
    static DOCS: OnceLock<Vec<serde_json::Value>> = OnceLock::new();
    DOCS.get_or_init(|| {
        vec![
            serde_json::Value::Null,
            serde_json::json!({}),
            serde_json::json!({"a": 1, "b": "x", "c": [1, "x", {"d": true}], "t": "2024-01-01T00:00:00Z"}),
            serde_json::json!({"a": {"b": [{"c": 2.5}, {"c": null}]}, "x": [], "y": false}),
            serde_json::json!([1, 2, 3]),
        ]
    })
}

/// Arbitrary bytes as a filter's JSON: parsing never panics, and whatever parses is
/// evaluated on a few documents, where `{"$not": f}` always answers the opposite of `f`
/// and evaluating a document's text answers as evaluating the document.
pub fn filter_parse(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(filter) = annal_engine::Filter::parse("filter", &value) else { return };
    let negated = annal_engine::Filter::parse("filter", &serde_json::json!({ "$not": value }));
    for doc in filter_documents() {
        let matched = filter.matches(doc);
        assert_eq!(filter.matches_text(Some(&doc.to_string())), matched, "{value} on the text of {doc}");
        if let Ok(negated) = &negated {
            assert_eq!(negated.matches(doc), !matched, "{value} on {doc}");
        }
    }
}

/// An engine holding a document index with a full-text index over a few passages (the
/// embedder is configured but unavailable: keyword search needs none), for
/// `keyword_query`. Its temp directory lives as long as the process.
fn text_engine() -> &'static Engine {
    static ENGINE: OnceLock<(tempfile::TempDir, Engine)> = OnceLock::new();
    let (_, engine) = ENGINE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut embedders = annal_engine::Embedders::default();
        embedders.add_unavailable("none", 4, "keyword_query fuzz target: no embedding");
        let config = EngineConfig { sync: SyncMode::Deferred, embedders, ..EngineConfig::default() };
        let engine = Engine::open(dir.path(), config).expect("open");
        engine
            .create_document_index("fuzz", "docs", "none", None, Metric::Cosine, HnswConfig::default())
            .expect("create");
        let texts = [
            "A thread with CAP_SYS_NICE may raise its scheduling priority.",
            "FAN_REPORT_DIR_FID reports the directory of an event.",
            "Die Ärzte untersuchten 42 Patienten; naïve café (résumé) — 東京 ok?",
            "title:word AND \"a phrase\" +must -not (nested (parens)) ~2 ^3 * [a TO b]",
        ];
        let items = texts
            .iter()
            .enumerate()
            .map(|(i, t)| annal_engine::event::DocumentItem {
                id: format!("d{i}"),
                text: (*t).to_owned(),
                metadata: Some(format!(r#"{{"n": {i}}}"#)),
                partition: None,
            })
            .collect();
        engine.upsert_documents("fuzz", "docs", items, annal_engine::Wait::Applied).expect("documents");
        (dir, engine)
    });
    engine
}

/// Arbitrary text as a keyword query, as plain terms and in tantivy's query syntax:
/// hits or a refusal that names `text` (limits, no term, the parser's message), never
/// a panic or an internal error; every hit's score is finite and its coverage in
/// [0, 1]; hits come best first.
pub fn keyword_query(data: &[u8]) {
    let engine = text_engine();
    let text = String::from_utf8_lossy(data).into_owned();
    for syntax in [false, true] {
        let query = annal_engine::KeywordQuery { text: text.clone(), syntax };
        match engine.keyword("docs", &query, 10, &annal_engine::Select::default()) {
            Ok(hits) => {
                for hit in &hits {
                    assert!(hit.score.is_finite(), "{text:?} (syntax {syntax}): {hit:?}");
                    assert!((0.0..=1.0).contains(&hit.coverage), "{text:?} (syntax {syntax}): {hit:?}");
                }
                assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "{text:?}: {hits:?}");
            }
            Err(Error::Invalid(e)) => assert_eq!(e.field, "text", "{text:?} (syntax {syntax}): {e}"),
            Err(other) => panic!("{text:?} (syntax {syntax}): {other}"),
        }
    }
}

/// One step of the `engine_ops` target.
#[derive(Arbitrary, Debug)]
pub enum Op {
    /// Create index `i{index % 3}` (dimension 4), L2 or inner product.
    Create {
        /// Which index.
        index: u8,
        /// L2 when even.
        l2: bool,
    },
    /// Upsert items `v{id % 16}` with small integer components.
    Upsert {
        /// Which index.
        index: u8,
        /// Ids and vectors.
        items: Vec<(u8, [i8; 4])>,
    },
    /// Delete ids.
    Delete {
        /// Which index.
        index: u8,
        /// Ids.
        ids: Vec<u8>,
    },
    /// Search a stored vector: it is found at distance 0 (L2), and `k = len` finds all.
    Search {
        /// Which index.
        index: u8,
        /// Which record.
        probe: u8,
    },
    /// Drop the index.
    Drop {
        /// Which index.
        index: u8,
    },
    /// Take a snapshot.
    Snapshot,
    /// Promote another efSearch.
    Promote {
        /// Which index.
        index: u8,
        /// efSearch - 16.
        ef: u8,
    },
    /// Roll the last promotion back.
    Rollback {
        /// Which index.
        index: u8,
    },
    /// Close and open again (restoring the newest snapshot, replaying the rest).
    Reopen,
}

#[derive(Default, Debug)]
struct ModelIndex {
    l2: bool,
    records: BTreeMap<String, Vec<f32>>,
    promoted: Vec<u32>,
}

/// Where an `engine_ops` engine keeps its log and snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// In memory (redb's in-memory backend, object_store's `InMemory` as the primary
    /// bucket), shared across reopens: the same engine code above the storage, without
    /// a file to create, fsync and remove per input. What the fuzzer runs.
    Memory,
    /// A log file and a local bucket in a temporary directory, as `annal serve` has
    /// them. `cargo test -p annal-fuzz` replays the corpus this way too.
    Files,
}

/// Where one input's engine lives; kept across its reopens.
struct Home {
    dir: tempfile::TempDir,
    hooks: annal_engine::Hooks,
}

impl Home {
    fn new(backing: Backing) -> Self {
        let mut hooks = annal_engine::Hooks::default();
        if backing == Backing::Memory {
            hooks.log_in_memory = Some(annal_engine::MemoryBackend::new());
            let bucket: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
            hooks.wrap_store = Some(Arc::new(move |_, _| Arc::clone(&bucket)));
        }
        Self { dir: tempfile::tempdir().expect("temp dir"), hooks }
    }

    fn open(&self) -> Engine {
        let config =
            EngineConfig { sync: SyncMode::Deferred, hooks: self.hooks.clone(), ..EngineConfig::default() };
        Engine::open(self.dir.path(), config).expect("open")
    }
}

/// [`engine_ops_on`] in memory: the fuzz target.
pub fn engine_ops(data: &[u8]) -> usize {
    engine_ops_on(Backing::Memory, data)
}

/// Arbitrary operations on a fresh engine, each checked against a model: every
/// answer, every index's records (ids and vectors bit for bit), the promotion in
/// effect, and, after a reopen, all of it again. Returns how many operations changed
/// the model (so a test can tell that inputs reach past the first refusal).
pub fn engine_ops_on(backing: Backing, data: &[u8]) -> usize {
    // The first byte's low bit: start with the three indexes created (most inputs then
    // reach upserts, searches and promotions), or with none.
    let Some((&first, data)) = data.split_first() else { return 0 };
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < 24 {
        match u.arbitrary::<Op>() {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    if ops.is_empty() {
        return 0;
    }
    let mut changed = 0;
    let home = Home::new(backing);
    let mut engine = home.open();
    let mut model: BTreeMap<String, ModelIndex> = BTreeMap::new();
    if first & 1 == 1 {
        for (index, l2) in [(0, true), (1, false), (2, true)] {
            apply(&engine, &mut model, &Op::Create { index, l2 });
        }
    }
    for op in &ops {
        if let Op::Reopen = op {
            // The old engine lets go of the directory before the new one opens it.
            engine.close().expect("close");
            drop(engine);
            engine = home.open();
        } else {
            let before = format!("{model:?}");
            apply(&engine, &mut model, op);
            changed += usize::from(format!("{model:?}") != before);
        }
        check(&engine, &model, op);
    }
    engine.close().expect("close");
    changed
}

fn apply(engine: &Engine, model: &mut BTreeMap<String, ModelIndex>, op: &Op) {
    let name = |i: &u8| format!("i{}", i % 3);
    match op {
        Op::Create { index, l2 } => {
            let name = name(index);
            let metric = if *l2 { Metric::L2 } else { Metric::Ip };
            // The index byte's upper part picks the storage: flat, fp16 re-scored, or
            // sq8 re-scored (which serves flat until 1,000 vectors, more than an input
            // writes). Re-scored answers are exact, so the model's checks hold for all.
            let storage = match index / 3 % 3 {
                0 => annal_engine::GraphStorage::FLAT,
                1 => annal_engine::GraphStorage { kind: annal_engine::StorageKind::Fp16, pq_m: 0, refine: 2 },
                _ => annal_engine::GraphStorage { kind: annal_engine::StorageKind::Sq8, pq_m: 0, refine: 2 },
            };
            let config = HnswConfig { storage, ..HnswConfig::default() };
            let result = engine.create_index("fuzz", &name, 4, metric, config);
            match model.entry(name) {
                std::collections::btree_map::Entry::Occupied(_) => {
                    assert!(matches!(result, Err(Error::IndexExists { .. })), "{op:?}: {result:?}");
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    result.expect("create");
                    slot.insert(ModelIndex { l2: *l2, ..ModelIndex::default() });
                }
            }
        }
        Op::Upsert { index, items } => {
            let name = name(index);
            let items: Vec<VectorItem> = items
                .iter()
                .map(|(id, v)| VectorItem {
                    id: format!("v{}", id % 16),
                    vector: v.iter().map(|x| f32::from(*x)).collect(),
                    metadata: None,
                    partition: None,
                })
                .collect();
            let mut ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
            ids.sort_unstable();
            let repeated = ids.windows(2).any(|w| w[0] == w[1]);
            let result = engine.upsert("fuzz", &name, items.clone());
            match model.get_mut(&name) {
                None => assert!(matches!(result, Err(Error::IndexNotFound { .. })), "{op:?}: {result:?}"),
                Some(_) if items.is_empty() || repeated => {
                    assert!(matches!(result, Err(Error::Invalid(_))), "{op:?}: {result:?}");
                }
                Some(m) => {
                    result.expect("upsert");
                    for item in items {
                        m.records.insert(item.id, item.vector);
                    }
                }
            }
        }
        Op::Delete { index, ids } => {
            let name = name(index);
            let ids: Vec<String> = ids.iter().map(|id| format!("v{}", id % 16)).collect();
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            let repeated = sorted.windows(2).any(|w| w[0] == w[1]);
            let result = engine.delete("fuzz", &name, ids.clone());
            match model.get_mut(&name) {
                None => assert!(matches!(result, Err(Error::IndexNotFound { .. })), "{op:?}: {result:?}"),
                Some(_) if ids.is_empty() || repeated => {
                    assert!(matches!(result, Err(Error::Invalid(_))), "{op:?}: {result:?}");
                }
                Some(m) => {
                    result.expect("delete");
                    for id in ids {
                        m.records.remove(&id);
                    }
                }
            }
        }
        Op::Search { index, probe } => {
            let name = name(index);
            let Some(m) = model.get(&name) else {
                assert!(matches!(engine.search(&name, vec![0.0; 4], 1), Err(Error::IndexNotFound { .. })));
                return;
            };
            let Some((_, vector)) = m.records.iter().nth(*probe as usize % m.records.len().max(1)) else {
                return;
            };
            let hits = engine.search(&name, vector.clone(), m.records.len()).expect("search");
            let mut found: Vec<&str> = hits.iter().map(|h| &*h.id).collect();
            found.sort_unstable();
            let expected: Vec<&str> = m.records.keys().map(String::as_str).collect();
            assert_eq!(found, expected, "{op:?}: k = len finds every live record and nothing else");
            if m.l2 {
                assert_eq!(hits[0].distance, 0.0, "{op:?}: a stored vector is at distance 0 of itself");
            }
        }
        Op::Drop { index } => {
            let name = name(index);
            let result = engine.drop_index("fuzz", &name);
            if model.remove(&name).is_some() {
                result.expect("drop");
            } else {
                assert!(matches!(result, Err(Error::IndexNotFound { .. })), "{op:?}: {result:?}");
            }
        }
        Op::Snapshot => {
            annal_engine::block_on(engine.snapshot("fuzz")).expect("runtime").expect("snapshot");
        }
        Op::Promote { index, ef } => {
            let name = name(index);
            let ef_search = 16 + u32::from(*ef % 64);
            let request = PromoteRequest {
                config: HnswConfig { ef_search, ..HnswConfig::default() },
                trial_id: String::new(),
                promoted_by: "fuzz".into(),
                note: String::new(),
            };
            let result = engine.promote("fuzz", &name, request);
            match model.get_mut(&name) {
                None => assert!(matches!(result, Err(Error::IndexNotFound { .. })), "{op:?}: {result:?}"),
                Some(m) => {
                    result.expect("promote");
                    m.promoted.push(ef_search);
                }
            }
        }
        Op::Rollback { index } => {
            let name = name(index);
            let result = engine.rollback("fuzz", &name);
            match model.get_mut(&name) {
                None => assert!(matches!(result, Err(Error::IndexNotFound { .. })), "{op:?}: {result:?}"),
                Some(m) if m.promoted.is_empty() => {
                    assert!(matches!(result, Err(Error::NothingPromoted { .. })), "{op:?}: {result:?}");
                }
                Some(m) => {
                    result.expect("rollback");
                    m.promoted.pop();
                }
            }
        }
        Op::Reopen => unreachable!("handled by the caller"),
    }
}

fn check(engine: &Engine, model: &BTreeMap<String, ModelIndex>, op: &Op) {
    let names: Vec<String> = model.keys().cloned().collect();
    assert_eq!(engine.list_indexes(), names, "after {op:?}");
    for (name, m) in model {
        let records = engine.records(name).expect("records");
        let got: Vec<(&str, Vec<u32>)> =
            records.iter().map(|r| (r.id.as_str(), r.vector.iter().map(|x| x.to_bits()).collect())).collect();
        let want: Vec<(&str, Vec<u32>)> =
            m.records.iter().map(|(id, v)| (id.as_str(), v.iter().map(|x| x.to_bits()).collect())).collect();
        assert_eq!(got, want, "index {name} after {op:?}");
        let current = engine.promotion(name).expect("promotion").current.map(|p| p.config.ef_search);
        assert_eq!(current, m.promoted.last().copied(), "promotion of {name} after {op:?}");
    }
}
