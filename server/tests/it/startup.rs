//! The server while it replays a long log: the listener is up at once, liveness and
//! progress answer, readiness and data routes say `starting` until replay is done.

use crate::common::server;

use std::time::{Duration, Instant};

use annal_engine::event::{Event, EventBody, HnswConfig, IndexCreated, Metric, VectorItem, VectorsUpserted};
use annal_engine::{Log, LogConfig, LOG_FILE};
use serde_json::json;
use server::Server;

#[test]
fn start_up_routes_answer_during_a_long_replay_and_data_routes_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    // Written straight to the log, so only the server's replay builds the graph.
    {
        let log = Log::open(dir.path().join(LOG_FILE), LogConfig::default()).unwrap();
        let created = IndexCreated {
            name: "docs".into(),
            dimension: 64,
            metric: Metric::L2,
            config: HnswConfig::default(),
        };
        log.append(&[Event::new("t", EventBody::IndexCreated(created))]).unwrap();
        for b in 0..10 {
            let items = (0..1000)
                .map(|i| VectorItem {
                    id: format!("v{b}-{i}"),
                    vector: (0..64).map(|j| ((b * 1000 + i) * 7 + j * 13) as f32 % 101.0).collect(),
                    metadata: None,
                    partition: None,
                })
                .collect();
            let upsert = VectorsUpserted { index: "docs".into(), items };
            log.append(&[Event::new("t", EventBody::VectorsUpserted(upsert))]).unwrap();
        }
    }
    let server = Server::start_listening(dir.path(), &[]);
    let (status, health) = server.get("/healthz");
    assert_eq!(status, 200, "liveness answers during replay: {health}");
    assert_eq!(health["replay"]["target_seq"], 11);
    let mut saw_starting = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = server.get("/readyz");
        if status == 200 {
            break;
        }
        assert_eq!((status, body["error"].as_str()), (503, Some("starting")), "{body}");
        saw_starting = true;
        // The early 503 may close the connection before the body is read: a transport
        // error here is that, not a failure.
        let Some((status, body)) =
            server.try_post("/vectors/index/docs/search", json!({"vector": vec![0.0; 64], "k": 1}))
        else {
            continue;
        };
        if status != 200 {
            assert_eq!((status, body["error"].as_str()), (503, Some("starting")), "{body}");
            assert!(body["detail"].as_str().unwrap().contains("replaying the log"), "{body}");
        }
        assert_eq!(server.get("/healthz").0, 200);
        assert!(Instant::now() < deadline, "replay never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(saw_starting, "the listener answered before replay was done");
    let (status, health) = server.get("/healthz");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    assert_eq!(server.get("/vectors/index/docs").1["length"], 10_000);
}
