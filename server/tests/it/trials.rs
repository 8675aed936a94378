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
