//! The full-text (BM25) projection and hybrid search: kept by upserts, deletes and
//! migrations, filtered like the dense side, the same after replay, a snapshot restore
//! and in a time-travel view, and refusing bad queries by field.

use crate::common;

use std::time::Duration;

use annal_engine::event::{DocumentItem, EventBody};
use annal_engine::{
    Embedders, Engine, EngineConfig, Error, Filter, Fusion, HnswConfig, KeywordQuery, Metric, RemoteEmbedder,
    RemoteEmbedderConfig, Select, SnapshotPolicy, TextSpec, TextTokenizer, Wait,
};
use common::standin::{Mode, StandIn, STANDIN_DIMENSION};
use serde_json::json;
use std::sync::Arc;

fn config(standin: &StandIn, restore: bool) -> EngineConfig {
    let mut embedders = Embedders::default();
    embedders.add(Arc::new(RemoteEmbedder::new(RemoteEmbedderConfig {
        model: "standin".into(),
        dimension: STANDIN_DIMENSION,
        url: standin.url.clone(),
        api_key: None,
        timeout: Duration::from_millis(500),
        concurrency: 2,
    })));
    let snapshots = SnapshotPolicy {
        on_close: false,
        every_events: None,
        keep: 10,
        restore,
        ..SnapshotPolicy::default()
    };
    EngineConfig { embedders, snapshots, ..EngineConfig::default() }
}

fn create(engine: &Engine, text: Option<TextSpec>) {
    engine
        .create_document_index_with("t", "docs", "standin", None, Metric::Cosine, HnswConfig::default(), text)
        .expect("create a document index");
}

fn doc(id: &str, text: &str, metadata: serde_json::Value, partition: Option<&str>) -> DocumentItem {
    DocumentItem {
        id: id.into(),
        text: text.into(),
        metadata: (!metadata.is_null()).then(|| metadata.to_string()),
        partition: partition.map(str::to_owned),
    }
}

/// An engine on `dir` with the corpus in a document index `docs` (the default text
/// index), every document embedded.
fn embedded_corpus(standin: &StandIn, dir: &std::path::Path) -> Engine {
    let engine = Engine::open(dir, config(standin, true)).unwrap();
    create(&engine, Some(TextSpec::default()));
    engine.upsert_documents("t", "docs", corpus(), Wait::Applied).unwrap();
    engine.wait_embedded("docs", Duration::from_secs(60)).unwrap();
    engine
}

/// Man-page-like passages, with exact identifiers only some of them hold.
fn corpus() -> Vec<DocumentItem> {
    vec![
        doc(
            "nice",
            "A thread with CAP_SYS_NICE may raise its scheduling priority.",
            json!({"section": 7, "title": "capabilities"}),
            Some("man/7"),
        ),
        doc(
            "fanotify",
            "FAN_REPORT_DIR_FID reports the directory of an event.",
            json!({"section": 2, "title": "fanotify_init"}),
            Some("man/2"),
        ),
        doc(
            "sched",
            "The scheduler picks the next thread by priority and policy.",
            json!({"section": 7, "title": "sched"}),
            Some("man/7"),
        ),
        doc(
            "nice2",
            "nice runs a program with a modified scheduling priority.",
            json!({"section": 1, "title": "nice", "tags": ["priority", "process"]}),
            Some("man/1"),
        ),
        doc(
            "mount",
            "mount attaches the filesystem found on some device to the tree.",
            json!({"section": 8, "title": "mount"}),
            Some("man/8"),
        ),
    ]
}

fn q(text: &str) -> KeywordQuery {
    KeywordQuery { text: text.into(), syntax: false }
}

fn ids(hits: &[annal_engine::KeywordHit]) -> Vec<String> {
    hits.iter().map(|h| h.id.to_string()).collect()
}

fn scored(hits: &[annal_engine::KeywordHit]) -> Vec<(String, u32)> {
    hits.iter().map(|h| (h.id.to_string(), h.score.to_bits())).collect()
}

fn filter(value: serde_json::Value) -> Select {
    Select { partition: None, filter: Some(Filter::parse("filter", &value).unwrap()) }
}

#[test]
fn keyword_search_finds_exact_identifiers_and_follows_upserts_and_deletes() {
    let standin = StandIn::start();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), config(&standin, true)).unwrap();
    create(&engine, Some(TextSpec::default()));
    engine.upsert_documents("t", "docs", corpus(), Wait::Applied).unwrap();
    let all = Select::default();
    // The tokenizer splits identifiers at `_`: every part must be there to rank first.
    assert_eq!(ids(&engine.keyword("docs", &q("CAP_SYS_NICE"), 1, &all).unwrap()), ["nice"]);
    assert_eq!(ids(&engine.keyword("docs", &q("fan_report_dir_fid"), 10, &all).unwrap()), ["fanotify"]);
    // English stemming: "priorities" finds "priority"; ranked by BM25, best first.
    let hits = engine.keyword("docs", &q("priorities"), 10, &all).unwrap();
    let mut found = ids(&hits);
    found.sort();
    assert_eq!(found, ["nice", "nice2", "sched"]);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "{hits:?}");
    assert!(hits.iter().all(|h| h.score > 0.0));
    assert!(hits[0].metadata.is_some());
    // An upsert replaces the text: the old term is gone, the new one found.
    engine
        .upsert_documents(
            "t",
            "docs",
            vec![doc("mount", "umount detaches the filesystem.", json!({"section": 8}), Some("man/8"))],
            Wait::Applied,
        )
        .unwrap();
    assert!(engine.keyword("docs", &q("attaches"), 10, &all).unwrap().is_empty());
    assert_eq!(ids(&engine.keyword("docs", &q("umount"), 10, &all).unwrap()), ["mount"]);
    // A delete removes it.
    engine.delete("t", "docs", vec!["fanotify".into()]).unwrap();
    assert!(engine.keyword("docs", &q("FAN_REPORT_DIR_FID"), 10, &all).unwrap().is_empty());
    // Documents not embedded yet are found by keyword all the same: no embedder needed.
    standin.set_mode(Mode::Fail);
    engine
        .upsert_documents(
            "t",
            "docs",
            vec![doc("new", "io_uring_enter submits IORING_OP_READ.", json!(null), None)],
            Wait::Applied,
        )
        .unwrap();
    assert_eq!(ids(&engine.keyword("docs", &q("IORING_OP_READ"), 10, &all).unwrap()), ["new"]);
    let semantic = engine.embed_queries("docs", &["IORING_OP_READ"]);
    assert!(semantic.is_err(), "the embedder is down: {semantic:?}");
    assert_eq!(engine.text_index("docs").unwrap().map(|(_, n)| n), Some(5));
}

#[test]
fn metadata_filters_partitions_and_configured_fields_apply_to_keyword_search() {
    let standin = StandIn::start();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), config(&standin, true)).unwrap();
    let spec = TextSpec { fields: vec!["title".into(), "tags".into()], ..TextSpec::default() };
    create(&engine, Some(spec));
    engine.upsert_documents("t", "docs", corpus(), Wait::Applied).unwrap();
    let priority = q("priority");
    let section7 = engine.keyword("docs", &priority, 10, &filter(json!({"section": 7}))).unwrap();
    let mut found = ids(&section7);
    found.sort();
    assert_eq!(found, ["nice", "sched"]);
    let in_man1 = Select { partition: Some("man/1".into()), filter: None };
    assert_eq!(ids(&engine.keyword("docs", &priority, 10, &in_man1).unwrap()), ["nice2"]);
    let prefix = Select {
        partition: Some("man/".into()),
        filter: Some(Filter::parse("filter", &json!({"section": {"$gte": 7}})).unwrap()),
    };
    assert_eq!(engine.keyword("docs", &priority, 10, &prefix).unwrap().len(), 2);
    // Configured metadata fields are searched too: the word is only in a title or a tag.
    assert_eq!(
        ids(&engine.keyword("docs", &q("fanotify_init"), 10, &Select::default()).unwrap()),
        ["fanotify"]
    );
    assert_eq!(ids(&engine.keyword("docs", &q("process"), 10, &Select::default()).unwrap()), ["nice2"]);
    // The query syntax reaches them by name, and phrases and exclusions work.
    let syntax = |text: &str| KeywordQuery { text: text.into(), syntax: true };
    assert_eq!(
        ids(&engine.keyword("docs", &syntax("title:sched"), 10, &Select::default()).unwrap()),
        ["sched"]
    );
    assert_eq!(
        ids(&engine
            .keyword("docs", &syntax("\"scheduling priority\" -program"), 10, &Select::default())
            .unwrap()),
        ["nice"]
    );
    let spec = engine.text_index("docs").unwrap().unwrap().0;
    assert_eq!(spec.fields, ["title", "tags"]);
}

fn bad(result: Result<Vec<annal_engine::KeywordHit>, Error>) -> (String, String) {
    match result {
        Err(Error::Invalid(e)) => (e.field, e.reason),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn bad_keyword_queries_and_text_configs_are_refused_naming_the_field() {
    let standin = StandIn::start();
    let dir = tempfile::tempdir().unwrap();
    // The embedder's vectors are events too: they land before the log is counted.
    let engine = embedded_corpus(&standin, dir.path());
    let all = Select::default();
    assert_eq!(bad(engine.keyword("docs", &q("  "), 10, &all)).0, "text");
    assert_eq!(bad(engine.keyword("docs", &q(&"a".repeat(5000)), 10, &all)).0, "text");
    assert_eq!(bad(engine.keyword("docs", &q(&"word ".repeat(300)), 10, &all)).0, "text");
    assert_eq!(bad(engine.keyword("docs", &q("!!! ---"), 10, &all)).0, "text");
    let deep = KeywordQuery { text: format!("{}a{}", "(".repeat(20), ")".repeat(20)), syntax: true };
    assert_eq!(bad(engine.keyword("docs", &deep, 10, &all)).0, "text");
    // A syntax error is the parser's message, on `text`.
    let (field, reason) =
        bad(engine.keyword("docs", &KeywordQuery { text: "nosuchfield:x".into(), syntax: true }, 10, &all));
    assert_eq!(field, "text");
    assert!(reason.starts_with("query syntax:") && reason.contains("nosuchfield"), "{reason}");
    // An index without a text index: the mode is what is wrong.
    engine
        .create_document_index_with(
            "t",
            "dense",
            "standin",
            None,
            Metric::Cosine,
            HnswConfig::default(),
            None,
        )
        .unwrap();
    assert_eq!(bad(engine.keyword("dense", &q("priority"), 10, &all)).0, "mode");
    let hybrid = engine.hybrid("dense", &q("priority"), 10, &all, Fusion::default(), None);
    assert!(matches!(&hybrid, Err(Error::Invalid(e)) if e.field == "mode"), "{hybrid:?}");
    assert!(matches!(engine.keyword("nope", &q("x"), 10, &all), Err(Error::IndexNotFound { .. })));
    // Bad fusion parameters and candidate counts.
    let rrf = engine.hybrid("docs", &q("priority"), 10, &all, Fusion::Rrf { k: -1.0 }, None);
    assert!(matches!(&rrf, Err(Error::Invalid(e)) if e.field == "rrf_k"), "{rrf:?}");
    let alpha = engine.hybrid("docs", &q("priority"), 10, &all, Fusion::Weighted { alpha: 2.0 }, None);
    assert!(matches!(&alpha, Err(Error::Invalid(e)) if e.field == "alpha"), "{alpha:?}");
    let few = engine.hybrid("docs", &q("priority"), 10, &all, Fusion::default(), Some(5));
    assert!(matches!(&few, Err(Error::Invalid(e)) if e.field == "candidates"), "{few:?}");
    // Bad text configurations change nothing.
    let before = engine.log().last_seq();
    for (spec, field) in [
        (TextSpec { stemmer: Some("klingon".into()), ..TextSpec::default() }, "text.stemmer"),
        (TextSpec { fields: vec!["ok".into(), "ok".into()], ..TextSpec::default() }, "text.fields[1]"),
        (TextSpec { fields: vec!["id".into()], ..TextSpec::default() }, "text.fields[0]"),
        (TextSpec { fields: vec!["a.b".into()], ..TextSpec::default() }, "text.fields[0]"),
        (
            TextSpec { fields: (0..17).map(|i| format!("f{i}")).collect(), ..TextSpec::default() },
            "text.fields",
        ),
    ] {
        let refused = engine.create_document_index_with(
            "t",
            "more",
            "standin",
            None,
            Metric::Cosine,
            HnswConfig::default(),
            Some(spec),
        );
        assert!(matches!(&refused, Err(Error::Invalid(e)) if e.field == field), "{field}: {refused:?}");
    }
    assert_eq!(engine.log().last_seq(), before);
    assert!(engine.get_index("more").is_err());
}

#[test]
fn the_text_index_config_is_recorded_in_the_log_with_the_index_in_one_commit() {
    let standin = StandIn::start();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), config(&standin, true)).unwrap();
    let spec = TextSpec { tokenizer: TextTokenizer::Whitespace, stemmer: None, fields: vec!["title".into()] };
    create(&engine, Some(spec));
    let events: Vec<_> = engine.log().read_range(1..=engine.log().last_seq(), 100).unwrap();
    let kinds: Vec<_> = events.iter().map(|(_, e)| annal_engine::EventKind::of(&e.body)).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    match &events[1].1.body {
        EventBody::TextIndexCreated(created) => {
            assert_eq!(created.index, "docs");
            assert_eq!(created.tokenizer, TextTokenizer::Whitespace);
            assert_eq!(created.stemmer, None);
            assert_eq!(created.fields, ["title"]);
        }
        other => panic!("{other:?}"),
    }
    // Without stemming, "priorities" is not "priority"; the whitespace tokenizer keeps
    // identifiers whole.
    engine.upsert_documents("t", "docs", corpus(), Wait::Applied).unwrap();
    assert!(engine.keyword("docs", &q("priorities"), 10, &Select::default()).unwrap().is_empty());
    assert_eq!(ids(&engine.keyword("docs", &q("cap_sys_nice"), 10, &Select::default()).unwrap()), ["nice"]);
    assert!(engine.keyword("docs", &q("sys"), 10, &Select::default()).unwrap().is_empty());
}

/// Every answer the tests compare, scores to the bit.
fn answers(engine: &Engine) -> Vec<Vec<(String, u32)>> {
    ["priority", "scheduling thread", "filesystem", "umount", "sys nice", "capabilities 7"]
        .iter()
        .map(|text| scored(&engine.keyword("docs", &q(text), 10, &Select::default()).unwrap()))
        .collect()
}

#[test]
fn replay_a_snapshot_restore_and_a_past_view_score_exactly_as_the_live_index_did() {
    let standin = StandIn::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (at_close, then, past_seq) = {
        let engine = Engine::open(dir.path(), config(&standin, true)).unwrap();
        create(&engine, Some(TextSpec { fields: vec!["title".into()], ..TextSpec::default() }));
        engine.upsert_documents("t", "docs", corpus(), Wait::Applied).unwrap();
        // Many versions of the same ids: deleted documents tantivy keeps until a merge
        // must not change the scores.
        for round in 0..30 {
            let items = (0..20)
                .map(|i| {
                    doc(
                        &format!("r{i}"),
                        &format!("round {round} thread priority filler {i}"),
                        json!({"round": round}),
                        None,
                    )
                })
                .collect();
            engine.upsert_documents("t", "docs", items, Wait::Applied).unwrap();
            if round % 7 == 0 {
                engine.keyword("docs", &q("priority"), 5, &Select::default()).unwrap();
            }
        }
        runtime.block_on(engine.snapshot("ops")).unwrap();
        let then = answers(&engine);
        let past_seq = engine.log().last_seq();
        engine.delete("t", "docs", vec!["sched".into(), "r3".into()]).unwrap();
        engine
            .upsert_documents(
                "t",
                "docs",
                vec![doc("mount", "umount detaches the filesystem.", json!({}), None)],
                Wait::Applied,
            )
            .unwrap();
        let at_close = answers(&engine);
        assert_ne!(at_close, then);
        let view = engine.view_at(past_seq).unwrap();
        for (text, expected) in ["priority", "scheduling thread", "filesystem"].iter().zip(&then) {
            assert_eq!(
                &scored(&view.keyword("docs", &q(text), 10, &Select::default()).unwrap()),
                expected,
                "{text}"
            );
        }
        engine.close().unwrap();
        (at_close, then, past_seq)
    };
    let restored = Engine::open(dir.path(), config(&standin, true)).unwrap();
    assert!(restored.restored().snapshot.is_some(), "the snapshot was used: {:?}", restored.restored());
    assert_eq!(answers(&restored), at_close, "snapshot + tail");
    let view = restored.view_at(past_seq).unwrap();
    let past: Vec<_> =
        ["priority", "scheduling thread", "filesystem", "umount", "sys nice", "capabilities 7"]
            .iter()
            .map(|text| scored(&view.keyword("docs", &q(text), 10, &Select::default()).unwrap()))
            .collect();
    assert_eq!(past, then, "a view after a restart");
    drop(view);
    drop(restored);
    let replayed = Engine::open(dir.path(), config(&standin, false)).unwrap();
    assert!(replayed.restored().snapshot.is_none());
    assert_eq!(answers(&replayed), at_close, "full replay");
}

#[test]
fn hybrid_search_fuses_both_lists_within_the_filter_and_says_each_sides_rank() {
    let standin = StandIn::start();
    let dir = tempfile::tempdir().unwrap();
    let engine = embedded_corpus(&standin, dir.path());
    let all = Select::default();
    let text = "scheduling priority";
    let rrf = Fusion::Rrf { k: 60.0 };
    let hybrid = engine.hybrid("docs", &q(text), 3, &all, rrf, None).unwrap();
    assert_eq!(hybrid.candidates, 40);
    assert_eq!(hybrid.weights, (1.0, 1.0));
    assert_eq!(hybrid.hits.len(), 3);
    assert!(hybrid.hits.windows(2).all(|w| w[0].score >= w[1].score));
    let keyword = engine.keyword("docs", &q(text), 40, &all).unwrap();
    let vector = engine.embed_queries("docs", &[text]).unwrap().remove(0);
    let dense = engine.query("docs", vec![vector], 40, &all).unwrap().hits.remove(0);
    for hit in &hybrid.hits {
        let d = dense.iter().position(|h| h.id == hit.id).map(|r| r + 1);
        let k = keyword.iter().position(|h| h.id == hit.id).map(|r| r + 1);
        assert_eq!(hit.dense.map(|(r, _)| r), d, "{}", hit.id);
        assert_eq!(hit.keyword.map(|(r, _, _)| r), k, "{}", hit.id);
        let expected: f32 =
            d.map_or(0.0, |r| 1.0 / (60.0 + r as f32)) + k.map_or(0.0, |r| 1.0 / (60.0 + r as f32));
        assert!((hit.score - expected).abs() < 1e-6, "{hit:?}");
    }
    // The filter applies to both sides.
    let section1 = filter(json!({"section": 1}));
    let only = engine.hybrid("docs", &q(text), 10, &section1, Fusion::Weighted { alpha: 0.5 }, None).unwrap();
    assert_eq!(only.hits.iter().map(|h| h.id.to_string()).collect::<Vec<_>>(), ["nice2"]);
    let nice2 = &only.hits[0];
    assert!(nice2.dense.is_some() && nice2.keyword.is_some());
    assert!((nice2.score - 1.0).abs() < 1e-6, "alone on both sides, both normalized to 1: {nice2:?}");
}

#[test]
fn a_keyword_hits_coverage_is_the_idf_weighted_share_of_the_query_it_holds() {
    let standin = StandIn::start();
    let dir = tempfile::tempdir().unwrap();
    let engine = embedded_corpus(&standin, dir.path());
    let all = Select::default();
    // "nice" holds cap, sys, nice, scheduling and priority; "sched" only priority and
    // scheduling; "fanotify" none of them.
    let hits = engine.keyword("docs", &q("CAP_SYS_NICE scheduling priority"), 10, &all).unwrap();
    let coverage = |id: &str| hits.iter().find(|h| &*h.id == id).map(|h| h.coverage);
    assert!((coverage("nice").unwrap() - 1.0).abs() < 1e-6, "{hits:?}");
    let partial = coverage("sched").unwrap();
    assert!(partial > 0.0 && partial < 0.6, "two common words of five: {hits:?}");
    assert_eq!(coverage("fanotify"), None);
    // Coverage does not depend on how often a word occurs or how long the document is.
    let single = engine.keyword("docs", &q("priority"), 10, &all).unwrap();
    assert!(single.len() > 1 && single.iter().all(|h| (h.coverage - 1.0).abs() < 1e-6), "{single:?}");
    // Words the query excludes are not part of it; a query of exclusions only asks
    // for no word, so every hit holds all it asks.
    let syntax = |text: &str| KeywordQuery { text: text.into(), syntax: true };
    let excluding = engine.keyword("docs", &syntax("priority -cap"), 10, &all).unwrap();
    assert!(
        !excluding.is_empty() && excluding.iter().all(|h| (h.coverage - 1.0).abs() < 1e-6),
        "{excluding:?}"
    );
    assert!(excluding.iter().all(|h| &*h.id != "nice"), "{excluding:?}");
    // Metadata fields searched beside the text do not make every word look rare: a
    // word's weight is taken where it is most frequent, so the same corpus with its
    // titles indexed weighs the words as the text alone does.
    engine
        .create_document_index_with(
            "t",
            "titled",
            "standin",
            None,
            Metric::Cosine,
            HnswConfig::default(),
            Some(TextSpec { fields: vec!["title".into()], ..TextSpec::default() }),
        )
        .unwrap();
    engine.upsert_documents("t", "titled", corpus(), Wait::Applied).unwrap();
    let titled = engine.keyword("titled", &q("CAP_SYS_NICE scheduling priority"), 10, &all).unwrap();
    let titled_sched = titled.iter().find(|h| &*h.id == "sched").map(|h| h.coverage).unwrap();
    assert!((titled_sched - partial).abs() < 1e-6, "{titled_sched} against {partial}: {titled:?}");
    // The adaptive fusion (the default) leads with the document holding the whole
    // query, and says the weights it gave.
    let hybrid = engine
        .hybrid("docs", &q("CAP_SYS_NICE scheduling priority"), 3, &all, Fusion::default(), None)
        .unwrap();
    assert_eq!(&*hybrid.hits[0].id, "nice");
    assert_eq!(hybrid.weights, (0.0, 1.0));
    // Replay gives the same coverage.
    engine.close().unwrap();
    drop(engine);
    let engine = Engine::open(dir.path(), config(&standin, false)).unwrap();
    let again = engine.keyword("docs", &q("CAP_SYS_NICE scheduling priority"), 10, &all).unwrap();
    assert_eq!(
        again.iter().map(|h| (h.id.to_string(), h.coverage)).collect::<Vec<_>>(),
        hits.iter().map(|h| (h.id.to_string(), h.coverage)).collect::<Vec<_>>()
    );
}
