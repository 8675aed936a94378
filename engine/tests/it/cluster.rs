//! The clustered log at the log's level: two logs, each the copy of one JetStream
//! stream on a real `nats-server`, publishing through their links. What the optimistic
//! concurrency promises (docs/SCALE-OUT.md, "The design"): one numbering on both
//! copies, another node's data events placed after, a write validated before another
//! node's schema change refused with nothing appended.

#[path = "../../../server/tests/it/common/nats.rs"]
mod nats;

use std::sync::Arc;
use std::time::Duration;

use annal_engine::event::{encode, Event, EventBody, HnswConfig, IndexCreated, Metric, SnapshotTaken};
use annal_engine::{Bootstrap, ClusterConfig, ClusterError, ClusterLink, Log, LogConfig, LogError, LOG_FILE};

use crate::common::upsert;

fn joined(dir: &std::path::Path, url: &str, node: &str) -> (Arc<Log>, Arc<ClusterLink>) {
    let log = Arc::new(Log::open(dir.join(LOG_FILE), LogConfig::default()).unwrap());
    let mut config = ClusterConfig::new(url, node);
    config.replicas = 1;
    let link = ClusterLink::connect(config, &log, None).unwrap();
    log.set_upstream(Arc::clone(&link) as _, format!("snapshots/{node}/"), link.stream_id()).unwrap();
    (log, link)
}

fn create(name: &str) -> Event {
    Event::new(
        "test",
        EventBody::IndexCreated(IndexCreated {
            name: name.into(),
            dimension: 4,
            metric: Metric::L2,
            config: HnswConfig::default(),
        }),
    )
}

#[test]
fn a_write_validated_before_another_nodes_schema_change_is_refused_and_nothing_else_is() {
    let nats = nats::Nats::start(1);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, link_a) = joined(da.path(), &nats.url(), "a");
    let (b, link_b) = joined(db.path(), &nats.url(), "b");
    let wait = Duration::from_secs(10);

    // Node a creates an index: a schema change, which b copies as another node's.
    assert_eq!(a.append(&[create("docs")]).unwrap(), Some(1..=1));
    assert_eq!(b.wait_seq(1, wait), 1);
    assert_eq!(b.foreign_guard_seq(), 1, "b marks a's create");
    assert_eq!(a.foreign_guard_seq(), 0, "a's own events are not another node's");

    // A write b validated before the create (as of event 0) is refused, nothing appended.
    match b.append_validated(&[upsert("late", 2, 4)], 0) {
        Err(LogError::Cluster(ClusterError::Conflict { foreign_seq: 1, validated: 0 })) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(link_b.status().conflicts, 1);
    // Validated after it, the same write is placed after it: event 2 on both copies.
    assert_eq!(b.append_validated(&[upsert("b", 2, 4)], 1).unwrap(), Some(2..=2));
    // Another node's data event refuses nothing: a, whose copy may still be at 1, is
    // placed after b's write (republished if it went out expecting 1).
    assert_eq!(a.append_validated(&[upsert("a", 2, 4)], 0).unwrap(), Some(3..=3));
    // Several events appended together stay together, numbered alike on both.
    assert_eq!(b.append(&[upsert("c", 1, 4), upsert("d", 1, 4)]).unwrap(), Some(4..=5));

    assert_eq!(a.wait_seq(5, wait), 5);
    assert_eq!(b.wait_seq(5, wait), 5);
    let frames = |log: &Log| log.read_frames(1..=5, 100).unwrap();
    assert_eq!(frames(&a), frames(&b), "both copies hold the same frames at the same numbers");
    assert_eq!(link_a.status().copied, 4, "4 messages: the group of two is one");
    assert_eq!(link_b.status().copied, 4);
    // A copy is refused what would make it differ from the stream.
    assert!(matches!(a.truncate_after(2, &create("x")), Err(LogError::Clustered { op: "truncate" })));

    for (log, link) in [(a, link_a), (b, link_b)] {
        log.close().unwrap();
        link.close();
    }
    // Reopened without the cluster, a copy still refuses what would make it differ,
    // and an engine does not open it as a single node's log.
    let reopened = Log::open(da.path().join(LOG_FILE), LogConfig::default()).unwrap();
    assert!(reopened.is_copy());
    assert!(matches!(reopened.truncate_after(2, &create("x")), Err(LogError::Clustered { op: "truncate" })));
    drop(reopened);
    let refused = annal_engine::Engine::open(da.path(), annal_engine::EngineConfig::default());
    assert!(
        matches!(refused, Err(annal_engine::Error::Log(LogError::Clustered { .. }))),
        "a copy opened as a single node"
    );
}

#[test]
fn a_message_that_is_not_an_annal_commit_stops_the_copy_names_it_and_refuses_writes() {
    let nats = nats::Nats::start(1);
    let dir = tempfile::tempdir().unwrap();
    let (log, link) = joined(dir.path(), &nats.url(), "a");
    assert_eq!(log.append(&[create("docs")]).unwrap(), Some(1..=1));
    // Something else publishes into the stream's subject.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let subject = link.config().subject();
    runtime.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.publish(subject, "not a commit".into()).await.unwrap().await.unwrap();
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let fault = loop {
        if let Some(fault) = link.status().fault {
            break fault;
        }
        assert!(std::time::Instant::now() < deadline, "the copy did not stop on a foreign message");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(fault.contains("stream message 2"), "{fault}");
    assert_eq!(log.last_seq(), 1, "nothing of it was copied");
    assert_eq!(log.stream_seq(), 1);
    // Writes are refused while the copy cannot go on, naming why.
    match log.append(&[upsert("x", 1, 4)]) {
        Err(LogError::Cluster(ClusterError::BadMessage { what, .. })) => {
            assert!(what.contains("stream message 2"), "{what}")
        }
        other => panic!("expected the copy's fault, got {other:?}"),
    }
    log.close().unwrap();
    link.close();
}

#[test]
fn a_log_begun_from_a_snapshot_inside_a_message_copies_only_the_frames_after_it() {
    let nats = nats::Nats::start(1);
    let (da, dc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, link_a) = joined(da.path(), &nats.url(), "a");
    // Message 1 holds events 1 to 3, message 2 events 4 and 5.
    let first = [create("docs"), upsert("p", 1, 4), upsert("q", 2, 4)];
    assert_eq!(a.append(&first).unwrap(), Some(1..=3));
    assert_eq!(a.append(&[upsert("r", 3, 4), upsert("s", 4, 4)]).unwrap(), Some(4..=5));
    // Where each event came from in the stream: (message, frames up to it, frames).
    assert_eq!(a.stream_position(2).unwrap(), Some((1, 2, 3)));
    assert_eq!(a.stream_position(3).unwrap(), Some((1, 3, 3)));
    assert_eq!(a.stream_position(5).unwrap(), Some((2, 2, 2)));
    assert_eq!(a.stream_position(6).unwrap(), None);

    // A snapshot at event 2 falls inside message 1: a log begun from it copies from
    // message 1 but skips its first two frames.
    let taken = SnapshotTaken {
        seq: 2,
        bucket: "primary".into(),
        key: "snapshots/c/2.snap".into(),
        bytes: 1,
        crc32: 7,
    };
    let record = encode(&Event::new("test", EventBody::SnapshotTaken(taken))).unwrap();
    let c = Arc::new(Log::open(dc.path().join(LOG_FILE), LogConfig::default()).unwrap());
    c.bootstrap(Bootstrap { base: 2, stream_seq: 0, skip: 2, record: record.clone() }).unwrap();
    assert_eq!((c.first_seq().unwrap(), c.last_seq()), (3, 2), "begins after the snapshot");
    assert!(matches!(
        c.bootstrap(Bootstrap { base: 2, stream_seq: 0, skip: 2, record }),
        Err(LogError::NotEmpty { .. })
    ));
    let mut config = ClusterConfig::new(nats.url(), "c");
    config.replicas = 1;
    let link_c = ClusterLink::connect(config, &c, None).unwrap();
    assert_eq!(c.wait_seq(5, Duration::from_secs(10)), 5);
    assert_eq!(c.read(2).unwrap(), None, "the snapshot covers event 2: not copied");
    for seq in 3..=5 {
        assert_eq!(c.read(seq).unwrap(), a.read(seq).unwrap(), "event {seq} is the same event on both");
    }
    assert_eq!(c.bootstrap_skip().unwrap(), 0, "the skip is spent once message 1 is copied");
    assert_eq!(c.stream_position(3).unwrap(), Some((1, 3, 3)), "message 1 indexed whole");
    let verified = c.verify().unwrap();
    assert_eq!((verified.first_seq, verified.events_ok), (3, 3), "dense from S + 1");
    assert!(verified.first_bad.is_none());
    // Reopened, it resumes after message 2 and still begins at event 3.
    c.close().unwrap();
    drop((link_c, c)); // the link reads the log too
    let c = Log::open(dc.path().join(LOG_FILE), LogConfig::default()).unwrap();
    assert_eq!((c.first_seq().unwrap(), c.last_seq(), c.stream_seq()), (3, 5, 2));
    assert!(c.bootstrap_record().unwrap().is_some());
    a.close().unwrap();
    link_a.close();
}

#[test]
fn a_copy_behind_what_the_stream_still_holds_and_an_empty_node_without_a_snapshot_are_refused() {
    let nats = nats::Nats::start(1);
    let (da, dd, de) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, link_a) = joined(da.path(), &nats.url(), "a");
    let (d, link_d) = joined(dd.path(), &nats.url(), "d");
    assert_eq!(a.append(&[create("docs")]).unwrap(), Some(1..=1));
    assert_eq!(d.wait_seq(1, Duration::from_secs(10)), 1);
    // Node d stops; the stream moves on and drops messages 1 and 2.
    d.close().unwrap();
    drop((link_d, d));
    assert_eq!(a.append(&[upsert("p", 1, 4)]).unwrap(), Some(2..=2));
    assert_eq!(a.append(&[upsert("q", 2, 4)]).unwrap(), Some(3..=3));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stream = link_a.config().stream.clone();
    runtime.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.get_stream(&stream).await.unwrap().purge().sequence(3).await.unwrap();
    });
    let mut config = ClusterConfig::new(nats.url(), "d");
    config.replicas = 1;
    // d copied message 1; message 2 is gone: it cannot catch up, and says what to do.
    let d = Arc::new(Log::open(dd.path().join(LOG_FILE), LogConfig::default()).unwrap());
    match ClusterLink::connect(config.clone(), &d, None) {
        Err(ClusterError::Behind { cursor: 1, first: 3, .. }) => {}
        other => panic!("expected Behind, got {:?}", other.map(|_| ())),
    }
    assert_eq!(d.last_seq(), 1, "nothing appended");
    // An empty node with no snapshot to begin from cannot be built from the stream.
    let e = Arc::new(Log::open(de.path().join(LOG_FILE), LogConfig::default()).unwrap());
    config.node = "e".into();
    match ClusterLink::connect(config, &e, None) {
        Err(ClusterError::Uncovered { first: 3, .. }) => {}
        other => panic!("expected Uncovered, got {:?}", other.map(|_| ())),
    }
    assert_eq!(e.last_seq(), 0);
    a.close().unwrap();
    link_a.close();
}

#[test]
fn a_stream_made_elsewhere_that_would_drop_or_misfile_events_is_refused_naming_why() {
    let nats = nats::Nats::start(1);
    let dir = tempfile::tempdir().unwrap();
    let mut config = ClusterConfig::new(nats.url(), "a");
    config.replicas = 1;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let make = |name: &str, max_messages: i64, subject: String| {
        runtime.block_on(async {
            let client = async_nats::connect(nats.url()).await.unwrap();
            let js = async_nats::jetstream::new(client);
            js.create_stream(async_nats::jetstream::stream::Config {
                name: name.into(),
                subjects: vec![subject],
                max_messages,
                ..Default::default()
            })
            .await
            .unwrap();
        })
    };
    // A stream of the right subject that keeps only the last 1,000 messages.
    make("ANNAL", 1_000, config.subject());
    // Another whose subject is not annal's.
    make("OTHER", -1, "elsewhere.>".into());
    let log = Arc::new(Log::open(dir.path().join(LOG_FILE), LogConfig::default()).unwrap());
    match ClusterLink::connect(config.clone(), &log, None) {
        Err(ClusterError::StreamConfig { what, .. }) => assert!(what.contains("max_msgs 1000"), "{what}"),
        other => panic!("expected StreamConfig, got {:?}", other.map(|_| ())),
    }
    config.stream = "OTHER".into();
    match ClusterLink::connect(config, &log, None) {
        Err(ClusterError::StreamConfig { what, .. }) => assert!(what.contains("subjects"), "{what}"),
        other => panic!("expected StreamConfig, got {:?}", other.map(|_| ())),
    }
    assert_eq!(log.last_seq(), 0, "nothing copied");
}
