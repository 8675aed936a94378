//! Documents and the embedding projection: with the local all-MiniLM-L6-v2 against the
//! shared data (`passages.txt` line i is base vector i), and with a remote embedder
//! stand-in that fails, hangs and recovers.

use crate::common;

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use annal_engine::event::{DocumentItem, EventBody};
use annal_engine::Secret;
use annal_engine::{
    Embedder, Embedders, LocalEmbedder, RemoteEmbedder, RemoteEmbedderConfig, LOCAL_MODEL_ID,
};
use annal_engine::{Engine, EngineConfig, Error, HnswConfig, Hooks, Metric, Wait};
use common::standin::{standin_vector, Mode, StandIn, STANDIN_DIMENSION};

const STANDIN_MODEL: &str = "standin";

fn remote(url: &str, model: &str, timeout: Duration) -> Arc<RemoteEmbedder> {
    Arc::new(RemoteEmbedder::new(RemoteEmbedderConfig {
        model: model.into(),
        dimension: STANDIN_DIMENSION,
        url: url.into(),
        api_key: None,
        timeout,
        concurrency: 2,
    }))
}

fn config_with(embedders: Embedders, hooks: Hooks) -> EngineConfig {
    EngineConfig { embedders, hooks, ..EngineConfig::default() }
}

fn standin_config(standin: &StandIn) -> EngineConfig {
    let mut embedders = Embedders::default();
    embedders.add(remote(&standin.url, STANDIN_MODEL, Duration::from_millis(500)));
    config_with(embedders, Hooks::default())
}

fn docs(prefix: &str, n: usize, text: impl Fn(usize) -> String) -> Vec<DocumentItem> {
    (0..n)
        .map(|i| DocumentItem {
            id: format!("{prefix}{i}"),
            text: text(i),
            metadata: Some(format!(r#"{{"n":{i}}}"#)),
            partition: None,
        })
        .collect()
}

fn create(engine: &Engine, model: &str) {
    engine
        .create_document_index("test", "texts", model, None, Metric::Cosine, HnswConfig::default())
        .expect("create a document index");
}

/// (id, doc_seq) of every embedded vector in the log.
fn embedded_in_log(engine: &Engine) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let last = engine.log().last_seq();
    for (_, event) in engine.log().read_range(1..=last, usize::MAX).expect("read the log") {
        if let EventBody::DocumentsEmbedded(e) = event.body {
            out.extend(e.items.into_iter().map(|i| (i.id, i.doc_seq)));
        }
    }
    out
}

fn assert_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-6, "vectors differ by {worst}: {a:?} vs {b:?}");
}

fn stored_vector(engine: &Engine, id: &str) -> Vec<f32> {
    let records = engine.records("texts").expect("records");
    records.into_iter().find(|r| r.id == id).unwrap_or_else(|| panic!("no record {id}")).vector
}

#[test]
fn a_remote_embedder_sends_its_api_key_as_a_bearer_token_and_never_shows_it_in_debug() {
    let standin = StandIn::start();
    let config = RemoteEmbedderConfig {
        model: STANDIN_MODEL.into(),
        dimension: STANDIN_DIMENSION,
        url: standin.url.clone(),
        api_key: Some(Secret::new("sk-standin-0123456789")),
        timeout: Duration::from_secs(5),
        concurrency: 1,
    };
    let dump = format!("{config:?}");
    assert!(!dump.contains("sk-standin") && dump.contains("<redacted>"), "{dump}");
    let vectors = RemoteEmbedder::new(config).embed(&["hello"]).expect("embed");
    assert_eq!(vectors, [standin_vector("hello")]);
    assert_eq!(standin.authorization().as_deref(), Some("Bearer sk-standin-0123456789"));
}

#[test]
fn local_embedder_documents_become_the_shared_base_vectors_and_text_search_finds_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut embedders = Embedders::default();
    let model = LocalEmbedder::load(&LocalEmbedder::default_dir())
        .unwrap_or_else(|e| panic!("run scripts/fetch-model.sh: {e}"));
    embedders.add(Arc::new(model));
    let engine = Engine::open(dir.path(), config_with(embedders, Hooks::default())).unwrap();
    create(&engine, LOCAL_MODEL_ID);
    assert_eq!(engine.get_index("texts").unwrap().params.dimension, 384);
    let passages = std::fs::read_to_string(common::data_dir().join("passages.txt")).unwrap();
    let lines: Vec<&str> = passages.lines().take(150).collect();
    let base = common::fvecs("base.fvecs");
    let items = docs("p", lines.len(), |i| lines[i].to_owned());
    engine.upsert_documents("test", "texts", items, Wait::Applied).unwrap();
    let info = engine.wait_embedded("texts", Duration::from_secs(300)).unwrap();
    assert_eq!(info.status.report.incremental_processed, 150);
    assert_eq!(engine.get_index("texts").unwrap().length, 150);
    for i in [0, 1, 77, 149] {
        let v = stored_vector(&engine, &format!("p{i}"));
        let cos: f32 = v.iter().zip(&base[i]).map(|(a, b)| a * b).sum();
        assert!(cos >= 0.9999, "p{i}: cosine {cos} to base vector {i}");
    }
    let query = engine.embed_queries("texts", &[lines[42]]).unwrap();
    let hits = engine.search("texts", query[0].clone(), 3).unwrap();
    assert_eq!(&*hits[0].id, "p42");
    assert_eq!(engine.document_text("texts", "p42").as_deref(), Some(lines[42]));
    // Vectors cannot be written to a document index, nor documents to a vector index.
    let vector =
        annal_engine::VectorItem { id: "v".into(), vector: vec![0.1; 384], metadata: None, partition: None };
    assert!(matches!(engine.upsert("test", "texts", vec![vector]), Err(Error::DocumentIndex { .. })));
    engine.create_index("test", "plain", 4, Metric::L2, HnswConfig::default()).unwrap();
    let refused = engine.upsert_documents("test", "plain", docs("x", 1, |_| "t".into()), Wait::Applied);
    assert!(matches!(refused, Err(Error::NotDocumentIndex { .. })), "{refused:?}");
}

#[test]
fn bad_documents_are_refused_naming_the_field_and_change_nothing() {
    let standin = StandIn::start();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), standin_config(&standin)).unwrap();
    let unknown = engine.create_document_index("t", "x", "nope", None, Metric::Cosine, HnswConfig::default());
    assert!(matches!(&unknown, Err(Error::Invalid(e)) if e.field == "embedder"), "{unknown:?}");
    let wrong =
        engine.create_document_index("t", "x", STANDIN_MODEL, Some(9), Metric::Cosine, HnswConfig::default());
    assert!(matches!(&wrong, Err(Error::Invalid(e)) if e.field == "dimension"), "{wrong:?}");
    create(&engine, STANDIN_MODEL);
    let last = engine.log().last_seq();
    let cases: Vec<(Vec<DocumentItem>, &str)> = vec![
        (docs("a", 2, |i| if i == 1 { "   ".into() } else { "ok".into() }), "items[1].text"),
        (
            docs("a", 2, |_| "same id".into())
                .into_iter()
                .map(|mut d| {
                    d.id = "dup".into();
                    d
                })
                .collect(),
            "items[1].id",
        ),
        (vec![], "items"),
        (docs("a", 1, |_| "x".repeat(70_000)), "items[0].text"),
        (
            docs("a", 1, |_| "t".into())
                .into_iter()
                .map(|mut d| {
                    d.metadata = Some("{".into());
                    d
                })
                .collect(),
            "items[0].metadata",
        ),
    ];
    for (items, field) in cases {
        match engine.upsert_documents("t", "texts", items, Wait::Applied) {
            Err(Error::Invalid(e)) => assert_eq!(e.field, field, "{e}"),
            other => panic!("{field}: expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(engine.log().last_seq(), last, "nothing appended");
    let scheme = engine.set_scheme("t", "texts", "{tenant}");
    assert!(matches!(scheme, Err(Error::SchemeConflict { .. })), "{scheme:?}");
}

#[test]
fn a_remote_embedder_that_fails_for_a_while_loses_nothing_and_applies_nothing_twice() {
    let standin = StandIn::start();
    standin.set_mode(Mode::Fail);
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), standin_config(&standin)).unwrap();
    create(&engine, STANDIN_MODEL);
    engine
        .upsert_documents("test", "texts", docs("d", 200, |i| format!("document {i}")), Wait::Applied)
        .unwrap();
    // Down: every claim fails and goes back; nothing is embedded.
    while standin.failed() < 3 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let during = engine.embedding("texts").unwrap().status;
    assert!(during.report.failed >= 64, "{during:?}");
    assert_eq!(during.report.incremental_processed, 0);
    assert_eq!(during.queue.incremental, 200, "nothing lost from the queue");
    assert_eq!(engine.get_index("texts").unwrap().length, 0);
    // Hanging: the client's timeout gives up, and the work goes back again.
    standin.set_mode(Mode::Hang);
    let failed_before = engine.embedding("texts").unwrap().status.report.failed;
    while engine.embedding("texts").unwrap().status.report.failed == failed_before {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(engine.embedding("texts").unwrap().status.report.last_error.is_some());
    // Back up: everything is embedded, once.
    standin.set_mode(Mode::Ok);
    let info = engine.wait_embedded("texts", Duration::from_secs(60)).unwrap();
    assert_eq!(info.status.report.incremental_processed, 200);
    assert_eq!(engine.get_index("texts").unwrap().length, 200);
    let in_log = embedded_in_log(&engine);
    assert_eq!(in_log.len(), 200, "each document's vector appended exactly once");
    for i in [0, 99, 199] {
        assert_close(&stored_vector(&engine, &format!("d{i}")), &standin_vector(&format!("document {i}")));
    }
}

#[test]
fn a_document_replaced_while_its_embedding_is_in_flight_ends_with_the_new_texts_vector_only() {
    let standin = StandIn::start();
    let dir = tempfile::tempdir().unwrap();
    let (reached, wait_reached) = mpsc::channel::<()>();
    let (go, wait_go) = mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new(Some((reached, wait_go))));
    let hooks = Hooks {
        before_embed: Some(Arc::new(move |_index: &str, texts: &[&str]| {
            if texts.contains(&"old text") {
                if let Some((reached, wait_go)) = gate.lock().unwrap().take() {
                    reached.send(()).unwrap();
                    wait_go.recv().unwrap();
                }
            }
        })),
        ..Hooks::default()
    };
    let mut embedders = Embedders::default();
    embedders.add(remote(&standin.url, STANDIN_MODEL, Duration::from_secs(5)));
    let engine = Engine::open(dir.path(), config_with(embedders, hooks)).unwrap();
    create(&engine, STANDIN_MODEL);
    let first =
        engine.upsert_documents("test", "texts", docs("x", 1, |_| "old text".into()), Wait::Applied).unwrap();
    wait_reached.recv_timeout(Duration::from_secs(30)).expect("the worker claimed the old text");
    let second =
        engine.upsert_documents("test", "texts", docs("x", 1, |_| "new text".into()), Wait::Applied).unwrap();
    go.send(()).unwrap();
    let info = engine.wait_embedded("texts", Duration::from_secs(30)).unwrap();
    assert_close(&stored_vector(&engine, "x0"), &standin_vector("new text"));
    assert_eq!(engine.document_text("texts", "x0").as_deref(), Some("new text"));
    assert_eq!(
        embedded_in_log(&engine),
        vec![("x0".to_owned(), second.seq)],
        "the old text's vector never reached the log"
    );
    assert!(first.seq < second.seq);
    assert_eq!(info.status.report.discarded_stale, 1);
    assert_eq!(info.status.report.incremental_processed, 1);
}

#[test]
fn a_restart_mid_queue_resumes_without_embedding_finished_work_again() {
    let dir = tempfile::tempdir().unwrap();
    let first_run: HashMap<String, u32>;
    {
        let standin = StandIn::start();
        // The worker gets through some slices, then the engine closes mid-queue.
        let engine = Engine::open(dir.path(), standin_config(&standin)).unwrap();
        create(&engine, STANDIN_MODEL);
        engine
            .upsert_documents("test", "texts", docs("d", 1000, |i| format!("text {i}")), Wait::Applied)
            .unwrap();
        while engine.embedding("texts").unwrap().status.report.incremental_processed < 128 {
            std::thread::sleep(Duration::from_millis(1));
        }
        standin.set_mode(Mode::Fail);
        engine.close().unwrap();
        first_run = standin.embedded();
        drop(engine);
    }
    assert!(first_run.len() < 1000, "the restart must come mid-queue ({} embedded)", first_run.len());
    let standin = StandIn::start();
    let engine = Engine::open(dir.path(), standin_config(&standin)).unwrap();
    let resumed = engine.embedding("texts").unwrap().status;
    assert!(resumed.queue.incremental > 0 && resumed.queue.incremental < 1000, "{resumed:?}");
    engine.wait_embedded("texts", Duration::from_secs(60)).unwrap();
    let second_run = standin.embedded();
    let in_log: HashMap<String, u64> = embedded_in_log(&engine).into_iter().collect();
    assert_eq!(in_log.len(), 1000, "every document embedded");
    assert_eq!(embedded_in_log(&engine).len(), 1000, "and each once");
    // What the first run appended is not embedded again; what it embedded but had not
    // appended when it closed may be.
    let applied_first = 1000 - resumed.queue.incremental as usize;
    let again = second_run.keys().filter(|t| first_run.contains_key(*t)).count();
    assert!(
        second_run.len() + applied_first == 1000,
        "second run embedded {} of the {} left",
        second_run.len(),
        1000 - applied_first
    );
    assert!(again <= first_run.len() - applied_first, "{again} finished texts embedded again");
    assert_eq!(engine.get_index("texts").unwrap().length, 1000);
}

#[test]
fn an_embedder_change_re_embeds_every_document_as_backfill_after_new_documents() {
    let standin = StandIn::start();
    let dir = tempfile::tempdir().unwrap();
    let mut embedders = Embedders::default();
    embedders.add(remote(&standin.url, STANDIN_MODEL, Duration::from_secs(5)));
    embedders.add(remote(&standin.url, "standin-2", Duration::from_secs(5)));
    let engine = Engine::open(dir.path(), config_with(embedders, Hooks::default())).unwrap();
    create(&engine, STANDIN_MODEL);
    engine.upsert_documents("test", "texts", docs("d", 100, |i| format!("doc {i}")), Wait::Applied).unwrap();
    engine.wait_embedded("texts", Duration::from_secs(30)).unwrap();
    let before = standin.embedded();
    engine.set_embedder("test", "texts", "standin-2").unwrap();
    let info = engine.wait_embedded("texts", Duration::from_secs(30)).unwrap();
    assert_eq!(info.status.embedder.model, "standin-2");
    assert_eq!(info.status.report.backfill_processed, 100);
    assert!(standin.embedded().iter().all(|(t, n)| *n == before[t] + 1), "each document embedded once more");
    assert_eq!(engine.get_index("texts").unwrap().length, 100);
    // Survives a reopen: the state (embedder, generation, nothing queued) is the log's.
    drop(engine);
    let engine = Engine::open(dir.path(), standin_config(&standin)).unwrap();
    let status = engine.embedding("texts").unwrap();
    assert_eq!(status.status.embedder.model, "standin-2");
    assert!(status.available.is_err(), "standin-2 is not configured in this open");
    assert_eq!((status.status.queue.incremental, status.status.queue.backfill), (0, 0));
}

#[test]
fn a_document_the_embedder_refuses_is_parked_and_does_not_hold_up_the_rest() {
    let standin = StandIn::start();
    standin.poison("poison");
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), standin_config(&standin)).unwrap();
    create(&engine, STANDIN_MODEL);
    let items = docs("d", 100, |i| if i == 3 { "a poison pill".into() } else { format!("fine {i}") });
    engine.upsert_documents("test", "texts", items, Wait::Applied).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = engine.embedding("texts").unwrap().status;
        if status.report.incremental_processed == 99 && status.queue.in_flight == 0 {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the rest never got through: {status:?}");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!((status.queue.incremental, status.queue.parked), (1, 1), "{status:?}");
    assert_eq!(status.report.failed, 1);
    assert!(status.report.last_error.as_deref().unwrap().contains("d3"), "{status:?}");
    // Replaced by a text it takes, the document is embedded at once.
    engine
        .upsert_documents(
            "test",
            "texts",
            docs("d", 1, |_| "cured".into())
                .into_iter()
                .map(|mut d| {
                    d.id = "d3".into();
                    d
                })
                .collect(),
            Wait::Applied,
        )
        .unwrap();
    let info = engine.wait_embedded("texts", Duration::from_secs(30)).unwrap();
    assert_eq!(info.status.queue.parked, 0);
    assert_eq!(engine.get_index("texts").unwrap().length, 100);
    assert_close(&stored_vector(&engine, "d3"), &standin_vector("cured"));
}
