//! Evaluation sets, trials and autotune over HTTP, through jobs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::server;

use server::Server;

/// Poll `GET /jobs/{id}` until the job ends; its final state.
fn finish(server: &Server, started: &Value) -> Value {
    assert!(started["job_id"].as_u64().is_some(), "{started}");
    let url = started["status"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, job) = server.get(&url);
        assert_eq!(status, 200, "{job}");
        if job["status"] != "running" {
            assert!(job["finished_ms"].as_u64().is_some(), "{job}");
            return job;
        }
        assert!(Instant::now() < deadline, "job never finished: {job}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start(server: &Server, path: &str, body: Value) -> Value {
    let (status, started) = server.post(path, body);
    assert_eq!(status, 202, "{path}: {started}");
    started
}

#[test]
fn an_evaluation_set_a_trial_and_autotune_run_as_jobs_and_their_results_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(
        server.post("/vectors/index", json!({"name": "docs", "dimension": 8, "distance": "l2"})).0,
        201
    );
    let items: Vec<Value> = (0..600)
        .map(|i: u32| {
            let v: Vec<f32> = (0..8).map(|j| ((i * 7 + j * 13) % 97) as f32 / 10.0).collect();
            json!({"id": format!("v{i}"), "vector": v})
        })
        .collect();
    assert_eq!(server.post("/vectors/index/docs/add", json!({"items": items})).0, 200);

    let eval = finish(
        &server,
        &start(&server, "/vectors/index/docs/evals", json!({"sample": {"count": 20, "seed": 3}, "k": 5})),
    );
    assert_eq!(eval["status"], "succeeded", "{eval}");
    assert_eq!(
        (&eval["kind"], &eval["result"]["eval_id"], &eval["result"]["queries"]),
        (&json!("eval"), &json!("e1"), &json!(20))
    );

    let body = json!({"eval_id": "e1", "m": 16, "ef_construction": 40, "ef_search": 32});
    let trial = finish(&server, &start(&server, "/vectors/index/docs/trials", body));
    assert_eq!(trial["status"], "succeeded", "{trial}");
    let recall = trial["result"]["recall"].as_f64().unwrap();
    assert!(recall > 0.0 && recall <= 1.0, "{trial}");
    assert_eq!(trial["result"]["trial_id"], "t1");
    assert_eq!(trial["progress"]["stage"], "measuring", "the last stage reported: {trial}");
    // A finished stage: all of it done, nothing left.
    let last = &trial["progress"];
    assert_eq!(
        (&last["done"], &last["percent"], &last["eta_ms"]),
        (&last["total"], &json!(100.0), &json!(0)),
        "{trial}"
    );

    let (_, listed) = server.get("/vectors/index/docs/trials");
    assert_eq!(
        (listed["evals"].as_array().unwrap().len(), listed["trials"].as_array().unwrap().len()),
        (1, 1),
        "{listed}"
    );
    let (_, best) = server.get("/vectors/index/docs/trials/best?objective=latency&recall_min=0");
    assert_eq!(best["best"]["trial_id"], "t1", "{best}");
    let (_, none) = server.get("/vectors/index/docs/trials/best?objective=recall&p99_max_us=0");
    assert!(none["best"].is_null() || none["best"]["latency_p99_us"] == 0, "{none}");
    assert_eq!(server.get("/vectors/index/docs/trials/best?objective=fast").0, 400);

    // Promotion with evidence: a trial that exists, or a 400 naming the field.
    let promote =
        json!({"m": 16, "ef_construction": 40, "ef_search": 32, "trial_id": "t1", "note": "measured"});
    assert_eq!(server.post("/vectors/index/docs/promote", promote).0, 200);
    let (status, bad) = server.post(
        "/vectors/index/docs/promote",
        json!({"m": 16, "ef_construction": 40, "ef_search": 32, "trial_id": "t99"}),
    );
    assert_eq!(status, 400, "{bad}");
    assert!(bad["detail"].as_str().unwrap().starts_with("trial_id:"), "{bad}");

    let tuned = finish(
        &server,
        &start(&server, "/vectors/index/docs/autotune", json!({"eval_id": "e1", "recall_floor": 0.5})),
    );
    assert_eq!(tuned["status"], "succeeded", "{tuned}");
    assert_eq!(tuned["result"]["trials"].as_array().unwrap().len(), 16, "{tuned}");
    // One stage over the whole grid, ending with every build done.
    let at = &tuned["progress"];
    assert_eq!(
        (&at["stage"], &at["done"], &at["percent"]),
        (&json!("builds"), &at["total"], &json!(100.0)),
        "{tuned}"
    );
    assert!(at["total"].as_u64().unwrap() >= 1, "{tuned}");
    let chosen = tuned["result"]["chosen"].as_str().expect("a trial meets 0.5").to_owned();
    let (_, promotion) = server.get("/vectors/index/docs/promotion");
    assert_eq!(promotion["current"]["trial_id"], chosen.as_str(), "{promotion}");
    assert!(promotion["current"]["note"].as_str().unwrap().contains("autotune"), "{promotion}");

    // Unknown jobs are 404.
    // An unknown evaluation set is refused before any job starts.
    let (status, missing) = server.post(
        "/vectors/index/docs/trials",
        json!({"eval_id": "nope", "m": 16, "ef_construction": 40, "ef_search": 32}),
    );
    assert_eq!(status, 404, "{missing}");
    assert!(missing["detail"].as_str().unwrap().contains("\"nope\""), "{missing}");
    assert_eq!(server.get("/jobs/123456").0, 404);
    assert_eq!(
        server.post("/vectors/index/nope/evals", json!({})).0,
        404,
        "an unknown index fails before any job"
    );
    let (status, bad) = server.post(
        "/vectors/index/docs/trials",
        json!({"eval_id": "e1", "m": 1, "ef_construction": 40, "ef_search": 32}),
    );
    assert_eq!(status, 400, "{bad}");

    // Trials are data: after a restart they are all there.
    server.terminate();
    let server = Server::start(dir.path());
    let (_, again) = server.get("/vectors/index/docs/trials");
    assert_eq!(again["trials"].as_array().unwrap().len(), 17, "{again}");
}

/// Wait until the serving graph is built with `storage` and no rebuild is pending.
fn built_as(server: &Server, index: &str, storage: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, promotion) = server.get(&format!("/vectors/index/{index}/promotion"));
        let graph = &promotion["graph"];
        if graph["rebuild_pending"] == json!(false) && graph["built_with"]["storage"] == storage {
            return promotion;
        }
        assert!(Instant::now() < deadline, "never built as {storage}: {promotion}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn quantized_storage_is_created_measured_autotuned_within_a_budget_and_promoted_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let create = json!({"name": "q", "dimension": 16, "distance": "l2", "m": 16, "ef_construction": 40,
        "ef_search": 32, "storage": "sq8", "refine": 4});
    let (status, created) = server.post("/vectors/index", create);
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (&created["params"]["storage"], &created["params"]["refine"], &created["params"]["pq_m"]),
        (&json!("sq8"), &json!(4), &json!(0))
    );
    let items: Vec<Value> = (0..1_500)
        .map(|i: u32| {
            let v: Vec<f32> =
                (0..16).map(|j| ((i * 7 + j * 13) % 97) as f32 / 10.0 + (i % 11) as f32).collect();
            json!({"id": format!("v{i}"), "vector": v})
        })
        .collect();
    assert_eq!(server.post("/vectors/index/q/add", json!({"items": items.clone()})).0, 200);
    let promotion = built_as(&server, "q", "sq8");
    assert_eq!(promotion["graph"]["built_with"]["refine"], 4, "{promotion}");
    // The answer is re-scored: the query's own record at distance 0, its vector whole.
    let (_, hits) = server.post("/vectors/index/q/search", json!({"vector": items[77]["vector"], "k": 3}));
    assert_eq!((&hits["results"][0]["id"], &hits["results"][0]["distance"]), (&json!("v77"), &json!(0.0)));
    let (_, item) = server.get("/vectors/index/q/items/v77");
    assert_eq!(item["vector"], items[77]["vector"], "{item}");

    let eval =
        finish(&server, &start(&server, "/vectors/index/q/evals", json!({"sample": {"count": 20}, "k": 5})));
    assert_eq!(eval["status"], "succeeded", "{eval}");
    let body = json!({"eval_id": "e1", "m": 16, "ef_construction": 40, "ef_search": 32, "storage": "sq4", "refine": 4});
    let trial = finish(&server, &start(&server, "/vectors/index/q/trials", body));
    let t = &trial["result"];
    assert_eq!((&t["storage"], &t["refine"]), (&json!("sq4"), &json!(4)), "{trial}");
    assert!(t["bytes_per_vector"].as_u64().unwrap() > 8, "{trial}");

    // A budget no flat graph meets: autotune measures the quantized kinds too and
    // promotes one that fits.
    let budget = json!({"eval_id": "e1", "recall_floor": 0.5, "max_bytes_per_vector": 130});
    let tuned = finish(&server, &start(&server, "/vectors/index/q/autotune", budget));
    assert_eq!(tuned["status"], "succeeded", "{tuned}");
    let trials = tuned["result"]["trials"].as_array().unwrap();
    let kinds: std::collections::BTreeSet<&str> =
        trials.iter().filter_map(|t| t["storage"].as_str()).collect();
    assert!(kinds.contains("sq8") && kinds.contains("sq4"), "{kinds:?}");
    let chosen = tuned["result"]["chosen"].as_str().expect("a trial fits").to_owned();
    let chosen = trials.iter().find(|t| t["trial_id"] == chosen.as_str()).unwrap();
    assert!(chosen["bytes_per_vector"].as_u64().unwrap() <= 130, "{chosen}");
    assert_eq!(tuned["result"]["promoted"]["storage"], chosen["storage"], "{tuned}");
    built_as(&server, "q", chosen["storage"].as_str().unwrap());

    // A promotion without a storage keeps the one in effect (no rebuild to flat).
    let (status, wider) =
        server.post("/vectors/index/q/promote", json!({"m": 16, "ef_construction": 40, "ef_search": 48}));
    assert_eq!(status, 200, "{wider}");
    assert_eq!(wider["current"]["storage"], chosen["storage"], "{wider}");
    // Back to flat by promotion, and the rollback returns to the autotuned storage.
    let flat =
        json!({"m": 16, "ef_construction": 40, "ef_search": 32, "storage": "flat", "note": "exact again"});
    assert_eq!(server.post("/vectors/index/q/promote", flat).0, 200);
    built_as(&server, "q", "flat");
    let (_, rolled) = server.post("/vectors/index/q/rollback", json!({}));
    assert_eq!(rolled["current"]["storage"], chosen["storage"], "{rolled}");
    assert_eq!(rolled["current"]["ef_search"], 48, "{rolled}");
    built_as(&server, "q", chosen["storage"].as_str().unwrap());
}
