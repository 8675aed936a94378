//! The HTTP API in-process: sequence numbers of writes, the actor header, metadata kept
//! as sent, and the body budget.

use annal_server::http::{ACTOR_HEADER, BODY_BYTES_MAX, BUDGET_PERMIT_BYTES};
use axum::body::Body;
use serde_json::json;

use crate::common::app;

use app::App;

/// The actor and kind of every event in the log, in order.
fn events(app: &App) -> Vec<(u64, String)> {
    let log = app.engine().log();
    log.read_range(1..=u64::MAX, 1000)
        .unwrap()
        .into_iter()
        .map(|(seq, event)| (seq, event.stamp.actor.to_string()))
        .collect()
}

#[tokio::test]
async fn every_write_answers_with_the_seq_of_its_event_in_the_log() {
    let app = App::new();
    let created = app.post("/vectors/index", json!({"name": "a", "dimension": 2, "distance": "l2"})).await;
    assert_eq!(created.status, 201);
    assert_eq!(created.json()["seq"], 1);
    assert_eq!(created.json()["params"]["name"], "a");
    assert_eq!(created.json()["length"], 0);
    app.post("/vectors/index", json!({"name": "b", "dimension": 2})).await;

    let added = app.post("/vectors/index/a/add", json!({"items": [{"id": "x", "vector": [1.0, 0.0]}]})).await;
    assert_eq!(added.json(), json!({"added": 1, "length": 1, "seq": 3, "applied": true}));
    let deleted = app.post("/vectors/index/a/delete", json!({"ids": ["x", "y"]})).await;
    assert_eq!(deleted.json(), json!({"deleted": 1, "length": 0, "seq": 4, "applied": true}));
    let dropped = app.send("DELETE", "/vectors/index/b", &[], None).await;
    assert_eq!((dropped.status, dropped.json()), (200, json!({"dropped": "b", "seq": 5})));
    assert_eq!(app.engine().log().last_seq(), 5, "each answer named the event it appended");
}

#[tokio::test]
async fn the_actor_header_is_recorded_and_its_absence_records_http() {
    let app = App::new();
    let create = json!({"name": "a", "dimension": 2}).to_string();
    let named = [(ACTOR_HEADER, "Zoë the loader".as_bytes())];
    assert_eq!(app.send("POST", "/vectors/index", &named, Some(Body::from(create))).await.status, 201);
    let add = json!({"items": [{"id": "x", "vector": [1.0, 0.0]}]});
    assert_eq!(app.post("/vectors/index/a/add", add).await.status, 200);
    assert_eq!(events(&app), [(1, "Zoë the loader".to_owned()), (2, "http".to_owned())]);
}

#[tokio::test]
async fn an_actor_header_that_is_empty_too_long_or_not_utf8_is_a_400_naming_it_and_commits_nothing() {
    let app = App::new();
    app.post("/vectors/index", json!({"name": "a", "dimension": 2})).await;
    let too_long = vec![b'a'; annal_engine::limits::TEXT_BYTES_MAX + 1];
    let add = json!({"items": [{"id": "x", "vector": [1.0, 0.0]}]}).to_string();
    for value in [&b""[..], &too_long, &[0xc3, 0x28]] {
        let headers = [(ACTOR_HEADER, value)];
        for (method, path, body) in [
            ("POST", "/vectors/index", Some(json!({"name": "b", "dimension": 2}).to_string())),
            ("POST", "/vectors/index/a/add", Some(add.clone())),
            ("POST", "/vectors/index/a/delete", Some(json!({"ids": ["x"]}).to_string())),
            ("DELETE", "/vectors/index/a", None),
        ] {
            let answer = app.send(method, path, &headers, body.map(Body::from)).await;
            assert_eq!(answer.status, 400, "{method} {path}: {}", answer.text());
            assert!(
                answer.json()["detail"].as_str().unwrap().starts_with("x-annal-actor: "),
                "{}",
                answer.text()
            );
        }
    }
    assert_eq!(app.engine().log().last_seq(), 1, "no refused write may commit");
}

#[tokio::test]
async fn search_hits_carry_metadata_as_sent_and_their_partition() {
    let app = App::new();
    app.post("/vectors/index", json!({"name": "a", "dimension": 2, "distance": "l2"})).await;
    // Key order, spacing and number spelling survive only if the text is never re-parsed.
    let metadata = r#"{"z": 1.50,  "a": [true, null]}"#;
    let body = format!(
        r#"{{"items": [
            {{"id": "x", "vector": [1.0, 0.0], "metadata": {metadata}, "partition": "p1"}},
            {{"id": "y", "vector": [0.0, 1.0], "metadata": null}}
        ]}}"#
    );
    let added = app.send("POST", "/vectors/index/a/add", &[], Some(Body::from(body))).await;
    assert_eq!(added.status, 200, "{}", added.text());
    let found = app.post("/vectors/index/a/search", json!({"vector": [1.0, 0.1], "k": 2})).await;
    assert_eq!(found.status, 200);
    assert!(found.text().contains(&format!(r#""metadata":{metadata}"#)), "{}", found.text());
    let results = found.json()["results"].clone();
    assert_eq!(results[0]["partition"], "p1");
    assert_eq!(results[1]["id"], "y");
    assert!(results[1].get("metadata").is_none(), "null metadata is none: {results}");
    assert!(results[1].get("partition").is_none(), "{results}");
}

#[tokio::test]
async fn metadata_over_the_limit_is_a_400_naming_the_item_and_commits_nothing() {
    let app = App::new();
    app.post("/vectors/index", json!({"name": "a", "dimension": 2})).await;
    let numbers = vec![1u8; annal_engine::limits::METADATA_BYTES_MAX / 2];
    let items = json!({"items": [
        {"id": "x", "vector": [1.0, 0.0]},
        {"id": "y", "vector": [1.0, 0.0], "metadata": numbers},
    ]});
    let answer = app.post("/vectors/index/a/add", items).await;
    assert_eq!(answer.status, 400);
    let detail = answer.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.starts_with("items[1].metadata: is 65537 bytes, over the limit of 65536"), "{detail}");
    assert_eq!(app.engine().log().last_seq(), 1);
}

#[tokio::test]
async fn a_body_that_does_not_fit_the_budget_is_503_overloaded_with_retry_after_and_commits_nothing() {
    let budget = BODY_BYTES_MAX as u64;
    let app = App::with_budget(budget);
    app.post("/vectors/index", json!({"name": "a", "dimension": 2})).await;
    let add = json!({"items": [{"id": "x", "vector": [1.0, 0.0]}]}).to_string();
    // Another request holds all of the budget but one permit: a body of more than one
    // permit's bytes cannot have its room now.
    let held = app.state.budget.try_reserve(budget - BUDGET_PERMIT_BYTES).unwrap();
    let padded = format!("{add:<width$}", width = BUDGET_PERMIT_BYTES as usize + 1);
    let refused = app.send("POST", "/vectors/index/a/add", &[], Some(Body::from(padded.clone()))).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(refused.json()["error"], "overloaded");
    // A body that fits the permit left is served, and bodiless requests need none.
    assert_eq!(app.send("POST", "/vectors/index/a/add", &[], Some(Body::from(add))).await.status, 200);
    assert_eq!(app.get("/vectors/index/a").await.status, 200);
    assert_eq!(app.engine().log().last_seq(), 2, "only the served add committed");
    drop(held);
    let served = app.send("POST", "/vectors/index/a/add", &[], Some(Body::from(padded))).await;
    assert_eq!(served.status, 200, "the budget is given back: {}", served.text());
    assert_eq!(app.state.budget.in_use_bytes(), 0, "a finished request holds nothing");
}
