//! The local embedder against the shared data set: `passages.txt` line i is the text
//! whose all-MiniLM-L6-v2 embedding is base vector i. The model comes from
//! `scripts/fetch-model.sh` (run by `.ci/setup.sh`); without it these tests fail
//! saying so.

use crate::common;

use annal_engine::{Embedder, LocalEmbedder, LOCAL_MODEL_DIMENSION};

fn model() -> LocalEmbedder {
    let dir = LocalEmbedder::default_dir();
    LocalEmbedder::load(&dir).unwrap_or_else(|e| {
        panic!("the local model is missing from {}: run scripts/fetch-model.sh ({e})", dir.display())
    })
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn embedding_200_passages_reproduces_their_stored_base_vectors() {
    let data = common::data_dir();
    let passages = std::fs::read_to_string(data.join("passages.txt")).expect("passages.txt");
    let lines: Vec<&str> = passages.lines().collect();
    let base = common::fvecs("base.fvecs");
    let dimension = LOCAL_MODEL_DIMENSION;
    assert_eq!(lines.len(), base.len(), "one passage per base vector");
    // 200 lines spread over the whole file (every 250th).
    let sample: Vec<usize> = (0..200).map(|i| i * lines.len() / 200).collect();
    let texts: Vec<&str> = sample.iter().map(|&i| lines[i]).collect();
    let embedder = model();
    let vectors = embedder.embed(&texts).expect("embed");
    assert_eq!(vectors.len(), 200);
    for (&i, vector) in sample.iter().zip(&vectors) {
        assert_eq!(vector.len(), dimension);
        let stored = &base[i];
        let c = cosine(vector, stored);
        assert!(c >= 0.9999, "passage {i}: cosine {c} to its stored vector ({:?})", lines[i]);
        let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "passage {i}: not L2-normalised ({norm})");
    }
}

#[test]
fn batch_order_and_padding_do_not_change_a_vector() {
    let embedder = model();
    let short = "Lists are mutable sequences.";
    let long = "The with statement is used to wrap the execution of a block with methods defined by a context manager, which allows common try/except/finally usage patterns to be encapsulated for convenient reuse.";
    let alone = embedder.embed(&[short]).expect("embed");
    let together = embedder.embed(&[long, short, long]).expect("embed");
    assert!(cosine(&alone[0], &together[1]) > 0.99999, "padding beside a longer text changed the vector");
    assert!(cosine(&together[0], &together[2]) > 0.99999);
    assert!(embedder.embed(&[]).expect("embed nothing").is_empty());
}

#[test]
fn the_shared_queries_searched_by_their_text_reach_recall_at_10_of_095() {
    use annal_engine::{Engine, EngineConfig, HnswConfig, Metric};
    let data = common::data_dir();
    let texts = std::fs::read_to_string(data.join("queries.txt")).expect("queries.txt");
    let texts: Vec<&str> = texts.lines().collect();
    let stored = common::fvecs("query.fvecs");
    let truth = common::ivecs("groundtruth.ivecs");
    assert_eq!(texts.len(), stored.len());
    let base = common::fvecs("base.fvecs");
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    engine.create_index("test", "docs", 384, Metric::Cosine, HnswConfig::default()).unwrap();
    for (n, chunk) in base.chunks(10_000).enumerate() {
        engine.upsert("test", "docs", common::items(chunk, n * 10_000)).unwrap();
    }
    // Every query's text, embedded by the local model, is its stored query vector...
    let embedded = model().embed(&texts).expect("embed the queries");
    let worst = embedded.iter().zip(&stored).map(|(e, s)| cosine(e, s)).fold(f64::MAX, f64::min);
    assert!(worst >= 0.9999, "a query text embeds {worst} away from its stored vector");
    // ... so searching by text finds the ground truth.
    let mut found = 0;
    for (query, truth) in embedded.into_iter().zip(&truth) {
        let hits = engine.search("docs", query, 10).unwrap();
        let want: Vec<String> = truth[..10].iter().map(|i| format!("v{i}")).collect();
        found += hits.iter().filter(|h| want.iter().any(|w| **w == *h.id)).count();
    }
    let recall = found as f64 / (10 * texts.len()) as f64;
    eprintln!("text queries: recall@10 = {recall:.4}");
    assert!(recall >= 0.95, "recall@10 {recall}");
}
