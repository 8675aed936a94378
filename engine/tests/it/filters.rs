//! Metadata filters through the engine: filtered searches against an exact filtered
//! brute force at several selectivities (indexed and not), payload indexes across a
//! snapshot restore and a replay, deletes by filter, metadata updates, time travel,
//! and bad filters that append nothing.

use crate::common;

use annal_engine::event::{PayloadKind, VectorItem};
use annal_engine::{
    Engine, EngineConfig, Error, Filter, HnswConfig, LogicalState, MetadataChange, Metric, OfflineLog,
    Replay, Select, Strategy, Wait,
};
use serde_json::{json, Value};

const K: usize = 10;

/// Metadata of record `i`: `kind` with 2 values, `group` with 20, `n` an integer
/// 0..1000, `tags` an array, `at` a timestamp, `meta.owner` nested.
fn metadata(i: usize) -> Value {
    json!({
        "kind": if i.is_multiple_of(2) { "even" } else { "odd" },
        "group": format!("g{}", i % 20),
        "n": i % 1000,
        "tags": [format!("t{}", i % 7), "all"],
        "at": format!("2024-{:02}-01T00:00:00Z", 1 + i % 12),
        "meta": {"owner": format!("o{}", i % 50)},
    })
}

fn engine_with(dir: &std::path::Path, n: usize) -> Engine {
    let engine = Engine::open(dir, EngineConfig::default()).unwrap();
    let base = common::fvecs("base.fvecs");
    engine.create_index("t", "docs", 384, Metric::Cosine, HnswConfig::default()).unwrap();
    for start in (0..n).step_by(2_000) {
        let items: Vec<VectorItem> = (start..(start + 2_000).min(n))
            .map(|i| VectorItem {
                id: format!("v{i:05}"),
                vector: base[i].clone(),
                metadata: Some(metadata(i).to_string()),
                partition: None,
            })
            .collect();
        engine.upsert("t", "docs", items).unwrap();
    }
    engine
}

fn select(filter: Value) -> Select {
    Select { partition: None, filter: Some(Filter::parse("filter", &filter).unwrap()) }
}

/// The exact filtered top-k by brute force (cosine distance on unit vectors), and the
/// k-th distance (a hit at most this far, within float error, is as good as a truth id).
fn truth(base: &[Vec<f32>], n: usize, query: &[f32], filter: &Filter) -> (Vec<String>, f32) {
    let mut scored: Vec<(f32, usize)> = (0..n)
        .filter(|&i| filter.matches(&metadata(i)))
        .map(|i| (1.0 - base[i].iter().zip(query).map(|(a, b)| a * b).sum::<f32>(), i))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let kth = scored.get(K.min(scored.len()).saturating_sub(1)).map_or(0.0, |s| s.0);
    (scored.iter().take(K).map(|(_, i)| format!("v{i:05}")).collect(), kth)
}

#[test]
fn filtered_searches_match_an_exact_filtered_brute_force_at_every_selectivity() {
    let dir = tempfile::tempdir().unwrap();
    let n = 12_000;
    let engine = engine_with(dir.path(), n);
    engine.create_payload_index("t", "docs", "kind", PayloadKind::Keyword).unwrap();
    engine.create_payload_index("t", "docs", "group", PayloadKind::Keyword).unwrap();
    engine.create_payload_index("t", "docs", "n", PayloadKind::Integer).unwrap();
    let base = common::fvecs("base.fvecs");
    let queries = common::fvecs("query.fvecs");
    let cases = [
        // ~50%, indexed: the graph with a selector.
        (json!({"kind": "even"}), Strategy::Graph),
        // ~50%, not indexed (evaluated on the metadata), same plan.
        (json!({"meta.owner": {"$nin": ["o1", "o2"]}, "tags": "all"}), Strategy::Graph),
        // 5%: an exact scan.
        (json!({"group": "g3"}), Strategy::Exact),
        // A two-condition AND, one indexed range.
        (json!({"kind": "odd", "n": {"$gte": 100, "$lt": 400}}), Strategy::Exact),
        // ~0.4%: an $or of an indexed and an unindexed condition.
        (
            json!({"$or": [{"n": 5}, {"tags": {"$contains": "t3"}, "at": {"$lt": "2024-02-01T00:00:00Z"}}]}),
            Strategy::Exact,
        ),
        // Everything: the plain search.
        (json!({"tags": {"$exists": true}}), Strategy::Unfiltered),
        // Nothing.
        (json!({"group": "none"}), Strategy::Empty),
    ];
    for (filter_json, strategy) in cases {
        let filter = Filter::parse("filter", &filter_json).unwrap();
        let sel = select(filter_json.clone());
        let (count, _) = engine.count("docs", &sel).unwrap();
        let expected_count = (0..n).filter(|&i| filter.matches(&metadata(i))).count() as u64;
        assert_eq!(count, expected_count, "count of {filter_json}");
        let mut found = 0;
        let mut asked = 0;
        for q in &queries[..40] {
            let out = engine.query("docs", vec![q.clone()], K, &sel).unwrap();
            assert_eq!(out.plan.strategy, strategy, "{filter_json}: {:?}", out.plan);
            assert_eq!(out.plan.estimate, expected_count);
            let hits = &out.hits[0];
            assert_eq!(hits.len(), K.min(expected_count as usize), "never short: {filter_json}");
            for hit in hits {
                let doc: Value = serde_json::from_str(hit.metadata.as_deref().unwrap()).unwrap();
                assert!(filter.matches(&doc), "{} outside {filter_json}", hit.id);
            }
            let (truth, kth) = truth(&base, n, q, &filter);
            found +=
                hits.iter().filter(|h| truth.contains(&h.id.to_string()) || h.distance <= kth + 1e-5).count();
            asked += truth.len();
        }
        let recall = if asked == 0 { 1.0 } else { found as f64 / asked as f64 };
        let floor = if strategy == Strategy::Graph { 0.95 } else { 1.0 };
        assert!(recall >= floor, "{filter_json}: recall {recall} under {floor}");
    }
}

fn state(dir: &std::path::Path) -> LogicalState {
    let source = OfflineLog::open(dir, &annal_engine::BucketsConfig::default()).unwrap();
    let mut replay = Replay::empty().unwrap();
    source.replay_into(&mut replay, u64::MAX, &mut |_| {}).unwrap();
    replay.state().unwrap()
}

#[test]
fn payload_indexes_and_metadata_updates_survive_a_snapshot_restore_and_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 3_000);
    engine.create_payload_index("t", "docs", "group", PayloadKind::Keyword).unwrap();
    engine.create_payload_index("t", "docs", "at", PayloadKind::Datetime).unwrap();
    annal_engine::block_on(engine.snapshot("t")).unwrap().unwrap();
    // After the snapshot: a metadata update, a delete by filter, another index.
    let changes = vec![MetadataChange { id: "v00003".into(), metadata: Some(r#"{"group":"g19"}"#.into()) }];
    engine.set_metadata("t", "docs", changes, true, Wait::Applied).unwrap();
    let deleted = engine.delete_where("t", "docs", &select(json!({"group": "g7"})), Wait::Applied).unwrap();
    assert_eq!(deleted.deleted, 150);
    engine.create_payload_index("t", "docs", "n", PayloadKind::Float).unwrap();
    let probes = [
        json!({"group": "g19"}),
        json!({"group": "g7"}),
        json!({"at": {"$gte": "2024-06-01T00:00:00Z"}, "n": {"$lt": 500}}),
    ];
    let before: Vec<u64> =
        probes.iter().map(|p| engine.count("docs", &select(p.clone())).unwrap().0).collect();
    assert_eq!(before[0], 151, "150 records of g19 and v00003 moved in");
    assert_eq!(before[1], 0);
    let indexes = engine.payload_indexes("docs").unwrap();
    engine.close().unwrap();
    drop(engine);

    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    assert_eq!(engine.payload_indexes("docs").unwrap(), indexes, "restored from the close snapshot");
    let after: Vec<u64> =
        probes.iter().map(|p| engine.count("docs", &select(p.clone())).unwrap().0).collect();
    assert_eq!(after, before);
    let (_, plan) = engine.count("docs", &select(probes[2].clone())).unwrap();
    assert_eq!(plan.evaluated, 0, "both fields answered by their indexes: {plan:?}");
    let v3 = engine.get_items("docs", &["v00003".into()], false).unwrap().pop().flatten().unwrap();
    let v3: Value = serde_json::from_str(v3.metadata.as_deref().unwrap()).unwrap();
    assert_eq!(v3["group"], "g19");
    assert_eq!(v3["kind"], "odd", "a merge keeps the other keys");
    engine.close().unwrap();
    drop(engine);

    // A replay from nothing and one from the first snapshot agree with each other.
    let scratch = state(dir.path());
    let source = OfflineLog::open(dir.path(), &annal_engine::BucketsConfig::default()).unwrap();
    let (_, first) = source.snapshots(u64::MAX).unwrap().into_iter().next().unwrap();
    let object = source.fetch_snapshot(&first).unwrap();
    let mut from_snapshot = Replay::from_snapshot(&object, &first).unwrap();
    source.replay_into(&mut from_snapshot, u64::MAX, &mut |_| {}).unwrap();
    assert_eq!(from_snapshot.state().unwrap().digest(), scratch.digest());
    assert!(scratch.sections.iter().any(|(name, bytes)| *name == "payload" && !bytes.is_empty()));
}

#[test]
fn a_delete_by_filter_records_the_ids_it_resolved_and_time_travel_sees_the_metadata_then() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 400);
    let before = engine.log().last_seq();
    let gone = engine.delete_where("t", "docs", &select(json!({"n": {"$lt": 10}})), Wait::Applied).unwrap();
    assert_eq!(gone.deleted, 10);
    let event = engine.log().read(gone.seq).unwrap().unwrap();
    match event.body {
        annal_engine::EventBody::VectorsDeleted(d) => {
            let expected: Vec<String> = (0..10).map(|i| format!("v{i:05}")).collect();
            assert_eq!(d.ids, expected);
        }
        other => panic!("{other:?}"),
    }
    // Records put back after the delete are not deleted by its replay.
    let base = common::fvecs("base.fvecs");
    let back = VectorItem {
        id: "v00001".into(),
        vector: base[1].clone(),
        metadata: Some(r#"{"n":1}"#.into()),
        partition: None,
    };
    engine.upsert("t", "docs", vec![back]).unwrap();
    let view = engine.view_at(before).unwrap();
    let (then, _) = view.count("docs", &select(json!({"n": {"$lt": 10}}))).unwrap();
    assert_eq!(then, 10, "as of the event before the delete");
    let (now, _) = engine.count("docs", &select(json!({"n": {"$lt": 10}}))).unwrap();
    assert_eq!(now, 1);
    let q = vec![base[5].clone()];
    let past = view.query("docs", q.clone(), 3, &select(json!({"n": {"$lt": 10}}))).unwrap();
    assert_eq!(past.hits[0][0].id.as_ref(), "v00005");
    let page = view.items("docs", &select(json!({"n": {"$lt": 10}})), Some("v00004"), 3, true).unwrap();
    let ids: Vec<&str> = page.items.iter().map(|i| i.id.as_ref()).collect();
    assert_eq!(ids, ["v00005", "v00006", "v00007"]);
    assert_eq!(page.next_cursor.as_deref(), Some("v00007"));
    assert_eq!(page.items[0].vector.as_ref().map(Vec::len), Some(384));
    engine.close().unwrap();
    drop(engine);
    let state = state(dir.path());
    let ids: Vec<&str> = state.indexes[0].records.iter().map(|r| r.id.as_str()).take(2).collect();
    assert_eq!(ids, ["v00001", "v00010"]);
}

#[test]
fn bad_filters_and_payload_requests_are_refused_naming_the_clause_and_append_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 100);
    engine.create_payload_index("t", "docs", "n", PayloadKind::Integer).unwrap();
    let last = engine.log().last_seq();
    let invalid = |e: Error| match e {
        Error::Invalid(i) => i.field,
        other => panic!("{other:?}"),
    };
    // A type mismatch against the payload index, in a search and in a delete.
    let mismatch = select(json!({"$and": [{"kind": "odd"}, {"n": {"$gt": "2024-01-01T00:00:00Z"}}]}));
    let q = vec![common::fvecs("query.fvecs")[0].clone()];
    assert_eq!(invalid(engine.query("docs", q, K, &mismatch).unwrap_err()), "filter.$and[1].n.$gt");
    assert_eq!(
        invalid(engine.delete_where("t", "docs", &mismatch, Wait::Applied).unwrap_err()),
        "filter.$and[1].n.$gt"
    );
    // Parse errors happen before the engine: unknown operators, depth.
    assert_eq!(
        Filter::parse("filter", &json!({"n": {"$between": [1, 2]}})).unwrap_err().field,
        "filter.n.$between"
    );
    // Payload index requests.
    assert!(matches!(
        engine.create_payload_index("t", "docs", "n", PayloadKind::Keyword),
        Err(Error::PayloadIndexExists { .. })
    ));
    assert!(matches!(
        engine.drop_payload_index("t", "docs", "nope"),
        Err(Error::PayloadIndexNotFound { .. })
    ));
    assert_eq!(
        invalid(engine.create_payload_index("t", "docs", "a..b", PayloadKind::Keyword).unwrap_err()),
        "field"
    );
    assert!(matches!(
        engine.create_payload_index("t", "nope", "n", PayloadKind::Keyword),
        Err(Error::IndexNotFound { .. })
    ));
    // Metadata updates: all or nothing.
    let changes = vec![
        MetadataChange { id: "v00001".into(), metadata: Some("{}".into()) },
        MetadataChange { id: "missing".into(), metadata: Some("{}".into()) },
    ];
    match engine.set_metadata("t", "docs", changes, false, Wait::Applied).unwrap_err() {
        Error::RecordNotFound { field, .. } => assert_eq!(field, "items[1].id"),
        other => panic!("{other:?}"),
    }
    let not_json = vec![MetadataChange { id: "v00001".into(), metadata: Some("{".into()) }];
    assert_eq!(
        invalid(engine.set_metadata("t", "docs", not_json, false, Wait::Applied).unwrap_err()),
        "items[0].metadata"
    );
    assert_eq!(engine.log().last_seq(), last, "nothing appended");
    let v1 = engine.get_items("docs", &["v00001".into()], false).unwrap().pop().flatten().unwrap();
    assert_eq!(serde_json::from_str::<Value>(v1.metadata.as_deref().unwrap()).unwrap(), metadata(1));
}

#[test]
fn a_metadata_update_under_a_scheme_moves_the_record_to_its_new_partition() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 40);
    engine.drop_index("t", "docs").unwrap();
    engine.create_index("t", "docs", 2, Metric::L2, HnswConfig::default()).unwrap();
    engine.set_scheme("t", "docs", "kind={kind}").unwrap();
    let item = |id: &str, kind: &str| VectorItem {
        id: id.into(),
        vector: vec![0.0, 1.0],
        metadata: Some(json!({"kind": kind}).to_string()),
        partition: None,
    };
    engine.upsert("t", "docs", vec![item("a", "x"), item("b", "x")]).unwrap();
    let changes = vec![MetadataChange { id: "a".into(), metadata: Some(r#"{"kind":"y"}"#.into()) }];
    engine.set_metadata("t", "docs", changes, false, Wait::Applied).unwrap();
    let in_y = Select { partition: Some("kind=y".into()), filter: None };
    let hits = engine.query("docs", vec![vec![0.0, 1.0]], 5, &in_y).unwrap().hits;
    let ids: Vec<&str> = hits[0].iter().map(|h| h.id.as_ref()).collect();
    assert_eq!(ids, ["a"]);
    let both = Select {
        partition: Some("kind=x".into()),
        filter: Some(Filter::parse("filter", &json!({"kind": "x"})).unwrap()),
    };
    assert_eq!(engine.count("docs", &both).unwrap().0, 1);
}
