//! `/metrics` against docs/OPERATIONS.md, and counters fed from the engine's totals.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use crate::common::app;

use app::App;

/// The metric families of the metrics table in docs/OPERATIONS.md, with their types:
/// rows of the form ``| `annal_name{labels}` | type | ...``.
fn documented_families() -> BTreeMap<String, String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/OPERATIONS.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let section = doc.split("\n## Metrics\n").nth(1).expect("docs/OPERATIONS.md has a ## Metrics section");
    let section = section.split("\n## ").next().unwrap();
    let families: BTreeMap<String, String> = section
        .lines()
        .filter_map(|line| {
            let mut cells = line.strip_prefix("| `annal_")?.split('|');
            let name = cells.next()?.trim().trim_end_matches('`');
            let name = name.split('{').next()?;
            Some((format!("annal_{name}"), cells.next()?.trim().to_owned()))
        })
        .collect();
    assert!(families.len() >= 10, "the metrics table was not found: {families:?}");
    families
}

/// `# TYPE name type` lines of a scrape.
fn exported_families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("# TYPE ")?.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

/// The value of the series `series` (name and labels as exported) in a scrape.
fn value(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

async fn scrape(app: &App) -> String {
    let answer = app.get("/metrics").await;
    assert_eq!(answer.status, 200);
    answer.text().to_owned()
}

#[tokio::test]
async fn every_metric_in_the_operations_doc_is_exported() {
    let app = App::new();
    app.post("/vectors/index", json!({"name": "m", "dimension": 2})).await;
    app.post("/vectors/index/m/add", json!({"items": [{"id": "a", "vector": [1.0, 2.0]}]})).await;
    app.post("/vectors/index/m/search", json!({"vector": [1.0, 2.0]})).await;
    app.post("/vectors/index/m/delete", json!({"ids": ["a"]})).await;
    let documented = documented_families();
    let exported: BTreeMap<String, String> = exported_families(&scrape(&app).await)
        .into_iter()
        .filter(|(name, _)| name.starts_with("annal_"))
        .collect();
    for (name, kind) in &documented {
        assert_eq!(
            exported.get(name),
            Some(kind),
            "{name} is documented as a {kind}; exported: {exported:?}"
        );
    }
    for name in exported.keys() {
        assert!(documented.contains_key(name), "{name} is exported but not in docs/OPERATIONS.md");
    }
    for (name, kind) in &exported {
        assert_eq!(kind == "counter", name.ends_with("_total"), "{name} is a {kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monotone_counters_equal_the_engine_totals_however_many_scrapes_run_at_once() {
    let app = Arc::new(App::new());
    app.post("/vectors/index", json!({"name": "m", "dimension": 2})).await;
    for round in 0..3 {
        let items = json!({"items": [{"id": format!("v{round}"), "vector": [1.0, round as f32]}]});
        app.post("/vectors/index/m/add", items).await;
        let scrapes: Vec<_> = (0..8)
            .map(|_| {
                let app = Arc::clone(&app);
                tokio::spawn(async move { scrape(&app).await })
            })
            .collect();
        for scrape in scrapes {
            scrape.await.unwrap();
        }
    }
    let text = scrape(&app).await;
    let stats = app.engine().stats();
    assert_eq!(value(&text, "annal_log_commits_total"), stats.log.commits);
    assert_eq!(
        value(&text, "annal_projection_events_applied_total"),
        stats.projector.projections.iter().find(|p| p.name == "vectors").unwrap().events_applied
    );
    assert_eq!(value(&text, "annal_projection_events_applied_total"), 4, "one create and three adds");
    assert_eq!(value(&text, "annal_projection_rebuilds_total"), stats.rebuilds.rebuilds);
    assert_eq!(value(&text, "annal_log_last_seq"), 4);
    assert_eq!(value(&text, "annal_index_vectors{index=\"m\"}"), 3);
    assert_eq!(value(&text, "annal_log_poisoned"), 0);
    assert_eq!(value(&text, "annal_http_inflight_body_bytes"), 0);
}
