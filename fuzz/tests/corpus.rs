//! Every fuzz target on stable, as a normal test: over the committed corpus
//! (`fuzz/corpus/<target>/`, where `scripts/fuzz.sh` keeps what libFuzzer found,
//! crashes included once fixed) and over generated inputs (SHA-256 of a counter, so the
//! same inputs every run), and, for the decoders, over every truncation and single
//! flipped byte of real frames and snapshots.

use std::path::Path;

use sha2::{Digest, Sha256};

/// `n` deterministic pseudo-random inputs of up to `max` bytes.
fn generated(target: &str, n: usize, max: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let seed = Sha256::digest(format!("{target}/{i}"));
            let len = usize::from(seed[0]) * max / 256 + 1;
            let mut out = Vec::with_capacity(len + 32);
            let mut block = 0u64;
            while out.len() < len {
                let mut h = Sha256::new();
                h.update(seed);
                h.update(block.to_le_bytes());
                out.extend_from_slice(&h.finalize());
                block += 1;
            }
            out.truncate(len);
            out
        })
        .collect()
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn run(target: &str, f: fn(&[u8]), generated_inputs: Vec<Vec<u8>>) -> usize {
    let inputs: Vec<Vec<u8>> = corpus(target).into_iter().chain(generated_inputs).collect();
    for input in &inputs {
        f(input);
    }
    inputs.len()
}

/// Every truncation and every single flipped byte of `object`.
fn damaged(object: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..object.len()).map(|n| object[..n].to_vec()).collect();
    for at in 0..object.len() {
        let mut bad = object.to_vec();
        bad[at] ^= 0x10;
        out.push(bad);
    }
    out
}

#[test]
fn filters_parse_without_panics_and_negation_always_answers_the_opposite() {
    let seeds = [
        r#"{"a": 1}"#,
        r#"{"b": "x", "a": {"$gte": 0, "$lt": 2}}"#,
        r#"{"$or": [{"c": {"$contains": "x"}}, {"a.b.c": {"$in": [2.5, null]}}]}"#,
        r#"{"$not": {"t": {"$gt": "2023-12-31T23:59:59Z"}}, "y": {"$ne": true}}"#,
        r#"{"$and": [{"x": {"$exists": false}}, {"c.d": {"$not": {"$eq": true}}}, {"a": {"$nin": [1]}}]}"#,
    ];
    let mut inputs: Vec<Vec<u8>> = generated("filter_parse", 500, 128);
    for seed in seeds {
        inputs.extend(damaged(seed.as_bytes()));
    }
    assert!(run("filter_parse", annal_fuzz::filter_parse, inputs) > 1_000);
}

#[test]
fn keyword_queries_answer_or_name_the_text_never_panic() {
    let seeds = [
        "CAP_SYS_NICE scheduling priority",
        "title:word AND \"a phrase\" +must -not",
        "((((a OR b) AND c) -d) +e)",
        "field:[a TO b] x~2 y^3 \"unclosed",
        "n:42 OR text:priority",
        "東京 naïve café — résumé",
        "*",
        ":",
        "-",
    ];
    let mut inputs: Vec<Vec<u8>> = generated("keyword_query", 300, 96);
    for seed in seeds {
        inputs.extend(damaged(seed.as_bytes()));
    }
    // Over the limits: 4 KiB, 256 words, 16 levels of parentheses.
    inputs.push("a ".repeat(300).into_bytes());
    inputs.push(format!("{}x{}", "(".repeat(17), ")".repeat(17)).into_bytes());
    inputs.push(vec![b'z'; 5000]);
    assert!(run("keyword_query", annal_fuzz::keyword_query, inputs) > 600);
}

#[test]
fn frame_decoders_survive_the_corpus_generated_inputs_and_damaged_real_frames() {
    let mut inputs = generated("frame_decode", 2_000, 512);
    for event in sample_events() {
        inputs.extend(damaged(&annal_engine::event::encode(&event).unwrap()));
    }
    assert!(run("frame_decode", annal_fuzz::frame_decode, inputs) > 2_000);
    let payloads: Vec<Vec<u8>> = (0..32u8)
        .flat_map(|kind| {
            generated(&format!("payload_decode/{kind}"), 100, 256).into_iter().map(move |mut p| {
                p.insert(0, kind);
                p
            })
        })
        .collect();
    assert!(run("payload_decode", annal_fuzz::payload_decode, payloads) >= 3_200);
}

#[test]
fn the_commit_decoder_survives_generated_inputs_and_every_damaged_real_commit() {
    let mut inputs = generated("commit_decode", 2_000, 512);
    let frames: Vec<Vec<u8>> =
        sample_events().iter().map(|e| annal_engine::event::encode(e).unwrap()).take(4).collect();
    let real = annal_engine::cluster_commit::encode(&frames);
    assert_eq!(annal_engine::cluster_commit::decode(&real).unwrap(), frames);
    inputs.extend(damaged(&real));
    inputs.push(real);
    assert!(run("commit_decode", annal_fuzz::commit_decode, inputs) > 2_000);
}

fn sample_events() -> Vec<annal_engine::Event> {
    use annal_engine::event::*;
    let item = VectorItem {
        id: "a".into(),
        vector: vec![0.5, -1.0],
        metadata: Some("{\"k\":1}".into()),
        partition: None,
    };
    vec![
        Event::new(
            "t",
            EventBody::VectorsUpserted(VectorsUpserted { index: "docs".into(), items: vec![item] }),
        ),
        Event::new(
            "t",
            EventBody::VectorsDeleted(VectorsDeleted { index: "docs".into(), ids: vec!["a".into()] }),
        ),
        Event::new("t", EventBody::IndexDropped(IndexDropped { name: "docs".into() })),
    ]
}

/// A real snapshot object: an engine with vectors, a promotion and a partition scheme.
fn real_snapshot() -> Vec<u8> {
    use annal_engine::{Engine, EngineConfig, HnswConfig, Metric, PromoteRequest, VectorItem};
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    engine.create_index("t", "docs", 2, Metric::L2, HnswConfig::default()).unwrap();
    let items = (0..3)
        .map(|i| VectorItem {
            id: format!("v{i}"),
            vector: vec![i as f32, 1.0],
            metadata: Some(format!("{{\"tenant\":\"t{i}\"}}")),
            partition: None,
        })
        .collect();
    engine.upsert("t", "docs", items).unwrap();
    let config = HnswConfig { ef_search: 40, ..HnswConfig::default() };
    let request =
        PromoteRequest { config, trial_id: String::new(), promoted_by: "t".into(), note: "n".into() };
    engine.promote("t", "docs", request).unwrap();
    let taken = annal_engine::block_on(engine.snapshot("t")).unwrap().unwrap();
    let object = std::fs::read(dir.path().join("buckets/primary").join(&taken.key)).unwrap();
    engine.close().unwrap();
    object
}

#[test]
fn snapshot_decoding_survives_the_corpus_generated_inputs_and_every_damage_of_a_real_one() {
    let object = real_snapshot();
    // The real one restores.
    let decoded = annal_engine::decode_snapshot(&object).unwrap();
    assert!(decoded.sections.len() >= 6);
    let mut inputs = damaged(&object);
    inputs.extend(generated("snapshot_decode", 500, 2_048));
    assert!(run("snapshot_decode", annal_fuzz::snapshot_decode, inputs) > 1_000);
    assert!(
        run("snapshot_sections", annal_fuzz::snapshot_sections, generated("snapshot_sections", 2_000, 1_024))
            >= 2_000
    );
}

#[test]
fn no_http_body_makes_a_route_answer_500() {
    let mut inputs = generated("http_body", 3_000, 300);
    // And bodies that are almost right, for each route.
    for (i, body) in [
        r#"{"name": "x", "dimension": 3}"#,
        r#"{"items": [{"id": "a", "vector": [1, 2, 3]}]}"#,
        r#"{"ids": ["a"]}"#,
        r#"{"vector": [1, 2, 3], "k": 2}"#,
        r#"{"items": [{"id": "a", "text": "t"}]}"#,
        r#"{"template": "t={t}"}"#,
        r#"{"m": 16, "ef_construction": 80, "ef_search": 64}"#,
        "{}",
        r#"{"model": "m"}"#,
        "bytes",
    ]
    .iter()
    .enumerate()
    {
        for cut in 0..body.len() {
            let mut input = vec![i as u8];
            input.extend_from_slice(&body.as_bytes()[..cut]);
            inputs.push(input);
        }
    }
    assert!(run("http_body", annal_fuzz::http_body, inputs) > 3_000);
}

fn engine_inputs() -> Vec<Vec<u8>> {
    corpus("engine_ops").into_iter().chain(generated("engine_ops", 40, 400)).collect()
}

#[test]
fn arbitrary_engine_operations_agree_with_the_model() {
    let inputs = engine_inputs();
    let changed: usize = inputs.iter().map(|input| annal_fuzz::engine_ops(input)).sum();
    // The inputs reach well past the first refusal: indexes created, filled, promoted.
    eprintln!("{changed} operations changed the model over {} inputs", inputs.len());
    assert!(changed >= 100, "only {changed} operations changed the model over {} inputs", inputs.len());
}

/// The fuzzer runs the engine on an in-memory log and bucket; the same inputs on a log
/// file and a local bucket (fsync, reopen from disk) agree with the model too.
#[test]
fn arbitrary_engine_operations_on_files_agree_with_the_model_and_with_the_in_memory_run() {
    for input in engine_inputs() {
        let on_files = annal_fuzz::engine_ops_on(annal_fuzz::Backing::Files, &input);
        assert_eq!(on_files, annal_fuzz::engine_ops_on(annal_fuzz::Backing::Memory, &input), "{input:?}");
    }
}
