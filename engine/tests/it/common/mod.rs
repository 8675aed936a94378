//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod s3;
pub mod standin;

use annal_engine::event::*;

/// One event of every kind, with non-trivial contents.
pub fn one_of_each_kind() -> Vec<Event> {
    let config = HnswConfig { m: 16, ef_construction: 100, ef_search: 50, ..Default::default() };
    let bodies = vec![
        EventBody::IndexCreated(IndexCreated {
            name: "docs".into(),
            dimension: 3,
            metric: Metric::Cosine,
            config,
        }),
        EventBody::IndexDropped(IndexDropped { name: "old".into() }),
        EventBody::VectorsUpserted(VectorsUpserted {
            index: "docs".into(),
            items: vec![
                VectorItem {
                    id: "a".into(),
                    vector: vec![0.5, -1.25, 3.0],
                    metadata: Some(r#"{"title":"héllo"}"#.into()),
                    partition: Some("tenant-1".into()),
                },
                VectorItem {
                    id: "b".into(),
                    vector: vec![f32::MIN_POSITIVE, 0.0, -0.0],
                    metadata: None,
                    partition: None,
                },
            ],
        }),
        EventBody::VectorsDeleted(VectorsDeleted {
            index: "docs".into(),
            ids: vec!["a".into(), "zz".into()],
        }),
        EventBody::ConfigPromoted(ConfigPromoted {
            index: "docs".into(),
            config,
            trial_id: "trial-7".into(),
            promoted_by: "alice".into(),
            note: "recall 0.99 at half the latency".into(),
        }),
        EventBody::PromotionRolledBack(PromotionRolledBack { index: "docs".into() }),
        EventBody::HnswTrialRecorded(HnswTrialRecorded {
            index: "docs".into(),
            trial_id: "trial-7".into(),
            config: config.v1().unwrap(),
            recall: 0.987,
            latency_p50_us: 210,
            latency_p99_us: 930,
            build_ms: 12_345,
            memory_bytes: 1 << 30,
        }),
        EventBody::BucketErrorRecorded(BucketErrorRecorded {
            bucket: "s3-archive".into(),
            op: BucketOp::List,
            key: "segments/0001".into(),
            error: "503 slow down".into(),
            rescued: true,
        }),
        EventBody::MigrationStarted(MigrationStarted {
            migration_id: "m1".into(),
            index: "docs".into(),
            scheme: PartitionScheme {
                name: "by-tenant-v2".into(),
                partitions: vec!["p0".into(), "p1".into()],
            },
        }),
        EventBody::RecordsMoved(RecordsMoved {
            migration_id: "m1".into(),
            moves: vec![RecordMove { id: "a".into(), from: "tenant-1".into(), to: "p1".into() }],
            cursor: "a".into(),
        }),
        EventBody::MigrationFinished(MigrationFinished { migration_id: "m1".into(), records_moved: 1 }),
        EventBody::SnapshotTaken(SnapshotTaken {
            seq: 41,
            bucket: "primary".into(),
            key: "snapshots/00000000000000000041.snap".into(),
            bytes: 123_456,
            crc32: 0xdead_beef,
        }),
        EventBody::LogArchived(LogArchived {
            first: 1,
            last: 40,
            bucket: "primary".into(),
            key: "archive/00000000000000000001-00000000000000000040.seg".into(),
            bytes: 4_096,
            crc32: 0x0bad_f00d,
        }),
        EventBody::EvalSetCreated(EvalSetCreated {
            index: "docs".into(),
            eval_id: "e1".into(),
            sampled: true,
            queries: 100,
            k: 10,
            truth_seq: 40,
            bucket: "primary".into(),
            key: "evals/docs/e1.eval".into(),
            bytes: 160_000,
            crc32: 0x1234_5678,
        }),
        EventBody::TrialRecorded(TrialRecorded {
            index: "docs".into(),
            trial_id: "t1".into(),
            eval_id: "e1".into(),
            config: HnswConfig { m: 16, ef_construction: 40, ef_search: 32, ..Default::default() },
            k: 10,
            queries: 100,
            vectors: 31_674,
            recall: 0.953,
            latency_p50_us: 120,
            latency_p99_us: 480,
            build_ms: 2_100,
            memory_bytes: 60_000_000,
        }),
        EventBody::SchemeSet(SchemeSet { index: "docs".into(), template: "tenant={tenant}".into() }),
        EventBody::MigrationBegun(MigrationBegun {
            index: "docs".into(),
            migration_id: "m2".into(),
            template: "tenant={tenant}/year={year}".into(),
            snapshot_seq: 40,
        }),
        EventBody::MigrationBatch(MigrationBatch {
            index: "docs".into(),
            migration_id: "m2".into(),
            moves: vec![MigrationMove {
                id: "a".into(),
                from: "tenant=x".into(),
                to: "tenant=x/year=2024".into(),
                metadata_crc32: 0x5555_aaaa,
            }],
            skipped: 3,
            errors: vec![MigrationError {
                id: "b".into(),
                reason: "metadata field `year` is missing".into(),
            }],
            cursor: "b".into(),
        }),
        EventBody::MigrationEnded(MigrationEnded { index: "docs".into(), migration_id: "m2".into() }),
        EventBody::MigrationCleared(MigrationCleared { index: "docs".into(), migration_id: "m2".into() }),
        EventBody::IndexCreatedWithEmbedder(IndexCreatedWithEmbedder {
            index: IndexCreated { name: "texts".into(), dimension: 384, metric: Metric::Cosine, config },
            embedder: EmbedderRef { model: "all-MiniLM-L6-v2".into(), dimension: 384 },
        }),
        EventBody::DocumentsUpserted(DocumentsUpserted {
            index: "texts".into(),
            items: vec![
                DocumentItem {
                    id: "d1".into(),
                    text: "Lists are mutable sequences — ünïcode too.".into(),
                    metadata: Some(r#"{"lang":"en"}"#.into()),
                    partition: Some("p0".into()),
                },
                DocumentItem { id: "d2".into(), text: "x".into(), metadata: None, partition: None },
            ],
        }),
        EventBody::DocumentsEmbedded(DocumentsEmbedded {
            index: "texts".into(),
            model: "all-MiniLM-L6-v2".into(),
            generation: 21,
            items: vec![EmbeddedItem { id: "d1".into(), doc_seq: 22, vector: vec![0.6, -0.8, 0.0] }],
        }),
        EventBody::EmbedderChanged(EmbedderChanged {
            index: "texts".into(),
            embedder: EmbedderRef { model: "remote-minilm".into(), dimension: 384 },
        }),
        EventBody::LogTruncated(LogTruncated {
            first_cut: 90,
            last_cut: 97,
            bucket: "primary".into(),
            key: "recovered/00000000000000000090-00000000000000000097.seg".into(),
            bytes: 2_048,
            crc32: 0x1234_5678,
            reason: "torn tail after a disk fault".into(),
        }),
        EventBody::PayloadIndexCreated(PayloadIndexCreated {
            index: "docs".into(),
            field: "meta.tenant".into(),
            kind: PayloadKind::Keyword,
        }),
        EventBody::PayloadIndexDropped(PayloadIndexDropped { index: "docs".into(), field: "year".into() }),
        EventBody::MetadataSet(MetadataSet {
            index: "docs".into(),
            items: vec![
                MetadataItem { id: "a".into(), metadata: Some(r#"{"tenant":"t2"}"#.into()), partition: None },
                MetadataItem { id: "b".into(), metadata: None, partition: Some("tenant=t2".into()) },
            ],
        }),
        EventBody::TextIndexCreated(TextIndexCreated {
            index: "texts".into(),
            tokenizer: TextTokenizer::Simple,
            stemmer: Some("english".into()),
            fields: vec!["title".into(), "tags".into()],
        }),
    ];
    // The stored (quantized) kind of each body that holds a config.
    let sq8 = HnswConfig {
        storage: annal_engine::GraphStorage { kind: annal_engine::StorageKind::Sq8, pq_m: 0, refine: 4 },
        ..config
    };
    let pq = HnswConfig {
        storage: annal_engine::GraphStorage { kind: annal_engine::StorageKind::Pq, pq_m: 3, refine: 0 },
        ..config
    };
    let stored: Vec<EventBody> = bodies
        .iter()
        .filter_map(|body| match body.clone() {
            EventBody::IndexCreated(b) => Some(EventBody::IndexCreated(IndexCreated { config: sq8, ..b })),
            EventBody::ConfigPromoted(b) => {
                Some(EventBody::ConfigPromoted(ConfigPromoted { config: pq, ..b }))
            }
            EventBody::TrialRecorded(b) => Some(EventBody::TrialRecorded(TrialRecorded { config: sq8, ..b })),
            EventBody::IndexCreatedWithEmbedder(mut b) => {
                b.index.config = sq8;
                Some(EventBody::IndexCreatedWithEmbedder(b))
            }
            _ => None,
        })
        .collect();
    bodies.into_iter().chain(stored).map(|body| Event::new("test-actor", body)).collect()
}

/// An upsert of `n` vectors of dimension `dim`, ids prefixed by `tag`.
pub fn upsert(tag: &str, n: usize, dim: usize) -> Event {
    let items = (0..n)
        .map(|i| VectorItem {
            id: format!("{tag}-{i}"),
            vector: (0..dim).map(|j| (i * dim + j) as f32 * 0.001).collect(),
            metadata: None,
            partition: None,
        })
        .collect();
    Event::new("test", EventBody::VectorsUpserted(VectorsUpserted { index: "bench".into(), items }))
}

/// The shared real-embedding data set (`../shared/data` beside the repository).
pub fn data_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

/// Read a TEXMEX `.fvecs` (or `.ivecs`, as raw 4-byte words) file: per row an i32
/// dimension and that many 4-byte values.
pub fn read_vecs(path: &std::path::Path) -> Vec<Vec<[u8; 4]>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let dim = i32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let row = rest[4..4 + 4 * dim].chunks_exact(4).map(|c| c.try_into().unwrap()).collect();
        rows.push(row);
        rest = &rest[4 + 4 * dim..];
    }
    rows
}

/// Float vectors of an `.fvecs` file.
pub fn fvecs(name: &str) -> Vec<Vec<f32>> {
    read_vecs(&data_dir().join(name))
        .into_iter()
        .map(|r| r.into_iter().map(f32::from_le_bytes).collect())
        .collect()
}

/// Integer vectors of an `.ivecs` file.
pub fn ivecs(name: &str) -> Vec<Vec<i32>> {
    read_vecs(&data_dir().join(name))
        .into_iter()
        .map(|r| r.into_iter().map(i32::from_le_bytes).collect())
        .collect()
}

/// Items `i` of `vectors` with ids `v{i}`.
pub fn items(vectors: &[Vec<f32>], offset: usize) -> Vec<VectorItem> {
    vectors
        .iter()
        .enumerate()
        .map(|(i, v)| VectorItem {
            id: format!("v{}", offset + i),
            vector: v.clone(),
            metadata: None,
            partition: None,
        })
        .collect()
}

/// Rewrite stored event `seq` of the log file at `path` behind the log's back, through
/// redb (whose own page checksums stay valid), so only the frame's CRC can notice.
pub fn corrupt_event(path: &std::path::Path, seq: u64, damage: impl FnOnce(&mut Vec<u8>)) {
    use redb::ReadableTable;
    let events: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(events).unwrap();
        let mut frame = table.get(seq).unwrap().unwrap().value().to_vec();
        damage(&mut frame);
        table.insert(seq, frame.as_slice()).unwrap();
    }
    txn.commit().unwrap();
}
