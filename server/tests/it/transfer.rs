//! `annal import` and `annal export` as processes: the shared `.fvecs` imported,
//! SIGKILLed and imported again holds each vector exactly once and searches like an
//! import done in one go; export then import into a fresh directory gives the same
//! records and search results in every format; a bad row is named and its batch
//! refused whole.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use annal_engine::event::{EventBody, VectorItem};
use annal_engine::{Engine, EngineConfig, HnswConfig, Metric, ReadOnlyLog, LOG_FILE};
use serde_json::Value;

use crate::engine_common;

fn annal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_annal")).args(args).output().expect("run annal")
}

fn report(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim().lines().last().unwrap()).unwrap()
}

fn base_fvecs() -> std::path::PathBuf {
    engine_common::data_dir().join("base.fvecs")
}

/// How many times each id was written by `VectorsUpserted` events of the log.
fn writes_per_id(data: &Path) -> HashMap<String, u32> {
    let log = ReadOnlyLog::open(data.join(LOG_FILE)).unwrap();
    let (mut next, last) = (log.first_seq().unwrap(), log.last_seq().unwrap());
    let mut counts = HashMap::new();
    while next <= last {
        let events = log.read_range(next..=last, 256).unwrap();
        next = events.last().unwrap().0 + 1;
        for (_, event) in events {
            if let EventBody::VectorsUpserted(up) = event.body {
                for item in up.items {
                    *counts.entry(item.id).or_insert(0) += 1;
                }
            }
        }
    }
    counts
}

fn top_ids(engine: &Engine, queries: &[Vec<f32>], k: usize) -> Vec<Vec<String>> {
    engine
        .search_batch("docs", queries.to_vec(), k)
        .unwrap()
        .into_iter()
        .map(|hits| hits.into_iter().map(|h| h.id.to_string()).collect())
        .collect()
}

#[test]
fn import_of_the_shared_fvecs_killed_and_rerun_holds_each_vector_once_and_searches_like_one_go() {
    let file = base_fvecs();
    let file = file.to_str().unwrap();
    let total = std::fs::metadata(file).unwrap().len() / (4 + 4 * 384);
    let (killed, whole) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    // Start an import and SIGKILL it once it reports part of the file in.
    let mut child = Command::new(env!("CARGO_BIN_EXE_annal"))
        .args(["import", "--index", "docs", "--batch", "500", "--data"])
        .arg(killed.path())
        .arg(file)
        .env("ANNAL_PROGRESS_EVERY_MS", "50")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let read_at_kill = loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break None;
        }
        // "import into docs: progress 12345/50000 (...)"
        let Some(rest) = line.split("progress ").nth(1) else { continue };
        let read: u64 = rest.split('/').next().unwrap().parse().unwrap();
        if read >= 5_000 {
            break Some(read);
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let read_at_kill = read_at_kill.expect("import ended before it was killed");
    assert!(read_at_kill < total, "killed part way");

    // Run it again: it skips what is in and imports the rest.
    let rerun =
        report(&annal(&["import", "--index", "docs", "--data", killed.path().to_str().unwrap(), file]));
    let skipped = rerun["skipped_present"].as_u64().unwrap();
    assert!(skipped > 0 && skipped < total, "{rerun}");
    assert_eq!(rerun["rows"].as_u64().unwrap(), total);
    assert_eq!(skipped + rerun["imported"].as_u64().unwrap(), total, "{rerun}");

    let once = report(&annal(&["import", "--index", "docs", "--data", whole.path().to_str().unwrap(), file]));
    assert_eq!(once["imported"].as_u64().unwrap(), total);

    // Each vector exactly once: in the log and in the index.
    let writes = writes_per_id(killed.path());
    assert_eq!(writes.len() as u64, total);
    assert!(writes.values().all(|n| *n == 1), "an id written twice");
    let a = Engine::open(killed.path(), EngineConfig::default()).unwrap();
    let b = Engine::open(whole.path(), EngineConfig::default()).unwrap();
    assert_eq!(a.get_index("docs").unwrap().length, total);
    let (ra, rb) = (a.records("docs").unwrap(), b.records("docs").unwrap());
    assert!(ra == rb, "the same records, bit for bit");
    assert_eq!(ra[0].id, "0", "ids from row numbers");
    // Search results match: HNSW graphs built in other batches are equivalent, not
    // equal, so the top 10 agree up to the graph's own recall.
    let queries = engine_common::fvecs("query.fvecs")[..100].to_vec();
    let (ta, tb) = (top_ids(&a, &queries, 10), top_ids(&b, &queries, 10));
    let shared: usize = ta.iter().zip(&tb).map(|(x, y)| x.iter().filter(|id| y.contains(id)).count()).sum();
    assert!(shared as f64 / 1000.0 >= 0.95, "top-10 overlap {shared}/1000");
    // A stored vector finds itself at distance 0 in both.
    let probe: Vec<Vec<f32>> = ra.iter().step_by(5_000).map(|r| r.vector.clone()).collect();
    for (hits, record) in
        a.search_batch("docs", probe.clone(), 1).unwrap().iter().zip(ra.iter().step_by(5_000))
    {
        assert_eq!(&*hits[0].id, record.id);
    }
    a.close().unwrap();
    drop(a);
    b.close().unwrap();
    drop(b);
}

/// 2,000 shared vectors under an L2 index whose search is exhaustive at this size
/// (efSearch 600), with metadata on some and a partition on others.
fn source(dir: &Path) -> Vec<Vec<f32>> {
    let vectors = engine_common::fvecs("base.fvecs");
    let engine = Engine::open(dir, EngineConfig::default()).unwrap();
    engine.create_index("ops", "docs", 384, Metric::L2, exhaustive()).unwrap();
    for chunk in (0..2_000).collect::<Vec<usize>>().chunks(500) {
        let items = chunk
            .iter()
            .map(|&i| VectorItem {
                id: format!("doc-{i:05}"),
                vector: vectors[i].clone(),
                metadata: (i % 3 == 0).then(|| format!(r#"{{"n":{i},"tag":"t{}"}}"#, i % 7)),
                partition: (i % 5 == 0).then(|| "p5".to_owned()),
            })
            .collect();
        engine.upsert("ops", "docs", items).unwrap();
    }
    engine.delete("ops", "docs", (0..100).map(|i| format!("doc-{i:05}")).collect()).unwrap();
    engine.close().unwrap();
    drop(engine);
    engine_common::fvecs("query.fvecs")[..50].to_vec()
}

fn exhaustive() -> HnswConfig {
    HnswConfig { m: 32, ef_construction: 200, ef_search: 600, ..Default::default() }
}

#[test]
fn export_then_import_into_a_fresh_directory_gives_the_same_records_and_search_results() {
    let src = tempfile::tempdir().unwrap();
    let queries = source(src.path());
    let original = Engine::open(src.path(), EngineConfig::default()).unwrap();
    let records = original.records("docs").unwrap();
    let expected = top_ids(&original, &queries, 10);
    original.close().unwrap();
    drop(original);
    assert_eq!(records.len(), 1_900);
    let files = tempfile::tempdir().unwrap();
    for ext in ["fvecs", "npy", "jsonl"] {
        let file = files.path().join(format!("docs.{ext}"));
        let file = file.to_str().unwrap();
        let exported =
            report(&annal(&["export", "--data", src.path().to_str().unwrap(), "--index", "docs", file]));
        assert_eq!(exported["rows"], 1_900, "{ext}: {exported}");
        // The index is made first with the same parameters; import fills it.
        let fresh = tempfile::tempdir().unwrap();
        let engine = Engine::open(fresh.path(), EngineConfig::default()).unwrap();
        engine.create_index("ops", "docs", 384, Metric::L2, exhaustive()).unwrap();
        engine.close().unwrap();
        drop(engine);
        let imported =
            report(&annal(&["import", "--data", fresh.path().to_str().unwrap(), "--index", "docs", file]));
        assert_eq!(imported["imported"], 1_900, "{ext}: {imported}");
        let engine = Engine::open(fresh.path(), EngineConfig::default()).unwrap();
        let got = engine.records("docs").unwrap();
        assert_eq!(got.len(), records.len(), "{ext}");
        for (g, r) in got.iter().zip(&records) {
            assert_eq!(g.id, r.id, "{ext}: ids come back");
            assert!(g.vector == r.vector, "{ext}: {} vector bit for bit", g.id);
            if ext == "jsonl" {
                assert_eq!(g.metadata, r.metadata, "{ext}: metadata");
                assert_eq!(g.partition, r.partition, "{ext}: partition");
            }
        }
        assert_eq!(top_ids(&engine, &queries, 10), expected, "{ext}: the same search results");
        engine.close().unwrap();
        drop(engine);
    }
    // .fvecs and .npy keep their ids beside them.
    let ids = std::fs::read_to_string(files.path().join("docs.npy.ids")).unwrap();
    assert_eq!(ids.lines().next(), Some("doc-00100"));
}

#[test]
fn import_names_a_bad_row_and_refuses_its_batch_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let file = dir.path().join("rows.jsonl");
    let mut text = String::new();
    for i in 0..10 {
        let vector = if i == 7 { "[1.0, 1e39]".to_owned() } else { format!("[{i}.0, 1.0]") };
        text.push_str(&format!("{{\"id\": \"r{i}\", \"vector\": {vector}, \"metadata\": {{\"i\": {i}}}}}\n"));
    }
    std::fs::write(&file, text).unwrap();
    let out = annal(&[
        "import",
        "--data",
        data,
        "--index",
        "docs",
        "--metric",
        "l2",
        "--batch",
        "4",
        file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("row 7"), "{stderr}");
    assert!(stderr.contains("items[3].vector"), "the engine's field, too: {stderr}");
    // Rows 0-3 went in as one batch; the batch holding row 7 (rows 4-7) did not.
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    let ids: Vec<String> = engine.records("docs").unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["r0", "r1", "r2", "r3"]);
    engine.close().unwrap();
    drop(engine);
    // A line that is not JSON is named by its line number.
    std::fs::write(&file, "{\"id\": \"z\", \"vector\": [1.0, 2.0]}\nnot json\n").unwrap();
    let out = annal(&["import", "--data", data, "--index", "docs", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn json_lines_keep_metadata_as_written_a_repeated_id_keeps_its_first_row_and_ids_must_match_rows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let file = dir.path().join("rows.jsonl");
    let text = concat!(
        r#"{"id": "a", "vector": [1.0, 0.0], "metadata": {"zeta": 1, "big": 12345678901234567890123, "alpha": [1.50]}}"#,
        "\n",
        r#"{"id": "b", "vector": [0.0, 1.0]}"#,
        "\n",
        r#"{"id": "a", "vector": [5.0, 6.0], "metadata": {"second": true}}"#,
        "\n",
    );
    std::fs::write(&file, text).unwrap();
    let imported = report(&annal(&[
        "import",
        "--data",
        data,
        "--index",
        "docs",
        "--metric",
        "l2",
        "--batch",
        "1",
        file.to_str().unwrap(),
    ]));
    assert_eq!(
        (imported["imported"].as_u64(), imported["skipped_repeated"].as_u64()),
        (Some(2), Some(1)),
        "{imported}"
    );
    let out = dir.path().join("out.jsonl");
    report(&annal(&["export", "--data", data, "--index", "docs", out.to_str().unwrap()]));
    let exported = std::fs::read_to_string(&out).unwrap();
    let first = exported.lines().next().unwrap();
    assert!(
        first.contains(r#""metadata":{"zeta": 1, "big": 12345678901234567890123, "alpha": [1.50]}"#),
        "metadata byte for byte: {first}"
    );
    assert!(first.contains(r#""vector":[1.0,0.0]"#), "the first row of a: {first}");

    // An ids file with another number of lines than the file has rows is refused
    // before anything is written.
    let fvecs = dir.path().join("two.fvecs");
    let mut bytes = Vec::new();
    for row in [[1.0f32, 2.0], [3.0, 4.0]] {
        bytes.extend_from_slice(&2i32.to_le_bytes());
        for v in row {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(&fvecs, bytes).unwrap();
    std::fs::write(dir.path().join("two.fvecs.ids"), "x\ny\nz\n").unwrap();
    let fresh = dir.path().join("fresh");
    let out = annal(&["import", "--data", fresh.to_str().unwrap(), "--index", "v", fvecs.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the ids file has 3 lines"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!fresh.join(LOG_FILE).exists(), "nothing written");
}
