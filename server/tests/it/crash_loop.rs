//! The crash loop: `annal serve` under concurrent upserts, deletes, promotions (some
//! changing m, so graph rebuilds run) and a scheme migration over HTTP, with snapshots every few events, SIGKILLed at a random
//! moment and restarted, again and again. After each restart: every acknowledged
//! upsert is found at distance 0, every acknowledged delete is gone, every write whose
//! answer was lost is there whole or not at all. At the end the migration completes,
//! and `annal log verify` and `annal replay --check` pass on the directory.
//!
//! `ANNAL_CRASH_CYCLES` cycles (default 3; the long mode in docs/RELIABILITY.md runs 50).

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::common::server;

use server::Server;

const DIM: usize = 8;

/// A vector no other id has.
fn vector(id: &str) -> Vec<f32> {
    let h = crc32fast::hash(id.as_bytes());
    (0..DIM).map(|j| ((h.rotate_left(j as u32 * 4) % 10_000) as f32) / 100.0 + j as f32).collect()
}

#[derive(Default)]
struct Model {
    /// Acknowledged and not deleted since: must be found.
    present: HashMap<String, Vec<f32>>,
    /// Acknowledged deletes: must be gone.
    deleted: HashSet<String>,
    /// Upserts whose answer was lost: all or none.
    doubtful_upserts: Vec<Vec<String>>,
    /// Deletes whose answer was lost: all or none.
    doubtful_deletes: Vec<Vec<String>>,
    acknowledged_writes: u64,
}

/// Small deterministic generator (SplitMix64) so a failing run can be repeated from
/// its printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// POST; `None` when the answer was lost (the server died under it).
fn post(agent: &ureq::Agent, url: &str, body: &Value) -> Option<(u16, Value)> {
    let mut response = agent.post(url).send_json(body).ok()?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn writer(base: String, thread: u64, cycle: u64, model: Arc<Mutex<Model>>, stop: Arc<AtomicBool>, seed: u64) {
    let agent = agent();
    let mut rng = Rng(seed);
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let delete = rng.below(4) == 0;
        if delete {
            let ids: Vec<String> = {
                let m = model.lock().unwrap();
                let mut ids: Vec<String> = m.present.keys().take(64).cloned().collect();
                ids.sort();
                ids.into_iter().filter(|id| id.starts_with(&format!("w{thread}-"))).take(3).collect()
            };
            if ids.is_empty() {
                continue;
            }
            match post(&agent, &format!("{base}/vectors/index/docs/delete"), &json!({ "ids": ids })) {
                Some((200, _)) => {
                    let mut m = model.lock().unwrap();
                    for id in &ids {
                        m.present.remove(id);
                        m.deleted.insert(id.clone());
                    }
                    m.acknowledged_writes += 1;
                }
                Some((status, body)) => {
                    assert!(status >= 500, "a delete refused with {status}: {body}");
                    model.lock().unwrap().doubtful_deletes.push(ids);
                    return;
                }
                None => {
                    model.lock().unwrap().doubtful_deletes.push(ids);
                    return;
                }
            }
        } else {
            let ids: Vec<String> = (0..10).map(|i| format!("w{thread}-c{cycle}-n{n}-{i}")).collect();
            let items: Vec<Value> = ids
                .iter()
                .map(|id| json!({"id": id, "vector": vector(id), "metadata": {"t": format!("w{thread}"), "g": (n % 3).to_string()}}))
                .collect();
            match post(&agent, &format!("{base}/vectors/index/docs/add"), &json!({ "items": items })) {
                Some((200, _)) => {
                    let mut m = model.lock().unwrap();
                    for id in ids {
                        let v = vector(&id);
                        m.present.insert(id, v);
                    }
                    m.acknowledged_writes += 1;
                }
                Some((status, body)) => {
                    assert!(status >= 500, "an add refused with {status}: {body}");
                    model.lock().unwrap().doubtful_upserts.push(ids);
                    return;
                }
                None => {
                    model.lock().unwrap().doubtful_upserts.push(ids);
                    return;
                }
            }
        }
    }
}

fn promoter(base: String, stop: Arc<AtomicBool>, seed: u64) {
    let agent = agent();
    let mut rng = Rng(seed);
    while !stop.load(Ordering::SeqCst) {
        let url = if rng.below(3) == 0 {
            format!("{base}/vectors/index/docs/rollback")
        } else {
            format!("{base}/vectors/index/docs/promote")
        };
        // efSearch stays at 64 or more, so the sampled searches after a restart find a
        // stored vector among the top 10 without depending on luck.
        // One promotion in four changes m, so a graph rebuild runs (and is killed) too.
        let m = if rng.below(4) == 0 { 24 } else { 16 };
        let body = json!({"m": m, "ef_construction": 40, "ef_search": 64 + rng.below(100)});
        if post(&agent, &url, &body).is_none() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every live record of the directory, read by opening the engine on it between a
/// crash and the restart (the server is down): exact, unlike a graph search.
fn records(dir: &std::path::Path) -> HashMap<String, (Vec<f32>, Option<String>)> {
    let engine = annal_engine::Engine::open(dir, annal_engine::EngineConfig::default()).unwrap();
    let records = engine.records("docs").unwrap();
    engine.close().unwrap();
    drop(engine);
    records.into_iter().map(|r| (r.id, (r.vector, r.partition))).collect()
}

fn check(records: &HashMap<String, (Vec<f32>, Option<String>)>, model: &mut Model, cycle: u64) {
    let has = |id: &String| records.get(id).is_some_and(|(v, _)| *v == vector(id));
    for batch in std::mem::take(&mut model.doubtful_upserts) {
        let seen: Vec<bool> = batch.iter().map(has).collect();
        assert!(
            seen.iter().all(|s| *s) || seen.iter().all(|s| !*s),
            "cycle {cycle}: upsert {batch:?} half applied: {seen:?}"
        );
        if seen[0] {
            for id in batch {
                let v = vector(&id);
                model.present.insert(id, v);
            }
        }
    }
    for batch in std::mem::take(&mut model.doubtful_deletes) {
        let seen: Vec<bool> = batch.iter().map(has).collect();
        assert!(
            seen.iter().all(|s| *s) || seen.iter().all(|s| !*s),
            "cycle {cycle}: delete {batch:?} half applied: {seen:?}"
        );
        if !seen[0] {
            for id in batch {
                model.present.remove(&id);
                model.deleted.insert(id);
            }
        }
    }
    let lost: Vec<&String> = model.present.keys().filter(|id| !has(id)).collect();
    assert!(
        lost.is_empty(),
        "cycle {cycle}: {} acknowledged upserts lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let back: Vec<&String> = model.deleted.iter().filter(|id| records.contains_key(*id)).collect();
    assert!(back.is_empty(), "cycle {cycle}: acknowledged deletes undone: {back:?}");
    assert_eq!(
        records.len(),
        model.present.len(),
        "cycle {cycle}: nothing unacknowledged beyond the doubtful writes"
    );
}

/// Stored vectors are found by search at distance 0 (a sample, within the top 10, as
/// the graph is approximate).
fn searchable(server: &Server, model: &Model) {
    let sample: Vec<&String> = model.present.keys().step_by((model.present.len() / 200).max(1)).collect();
    for chunk in sample.chunks(500) {
        let vectors: Vec<Vec<f32>> = chunk.iter().map(|id| vector(id)).collect();
        let (status, body) = server.post("/vectors/index/docs/search", json!({"vectors": vectors, "k": 10}));
        assert_eq!(status, 200, "{body}");
        for (id, hits) in chunk.iter().zip(body["results"].as_array().unwrap()) {
            let hit = hits.as_array().unwrap().iter().find(|h| h["id"] == id.as_str());
            assert_eq!(
                hit.map(|h| h["distance"].as_f64()),
                Some(Some(0.0)),
                "{id} by its own vector: {hits}"
            );
        }
    }
}

fn migrate(server: &Server) -> (u16, Value) {
    server.post("/vectors/index/docs/migrate", json!({"template": "t={t}/g={g}", "batch_size": 16}))
}

#[test]
fn acknowledged_writes_survive_sigkill_at_random_moments_under_load_and_a_migration_resumes() {
    let cycles: u64 = std::env::var("ANNAL_CRASH_CYCLES").ok().and_then(|c| c.parse().ok()).unwrap_or(3);
    let seed = std::env::var("ANNAL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
    eprintln!("crash loop: {cycles} cycles, seed {seed} (ANNAL_CRASH_SEED to repeat)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--snapshot-every-events", "15", "--snapshot-keep", "2", "--archive-log"];
    let mut model = Model::default();
    let started = Instant::now();
    let mut migration_started = false;
    for cycle in 0..cycles {
        if cycle > 0 {
            check(&records(dir.path()), &mut model, cycle);
        }
        let server = Server::start_with(dir.path(), &flags);
        if cycle == 0 {
            let create =
                json!({"name": "docs", "dimension": DIM, "distance": "l2", "m": 16, "ef_construction": 40});
            assert_eq!(server.post("/vectors/index", create).0, 201);
            let (status, body) = server.post("/vectors/index/docs/scheme", json!({"template": "t={t}"}));
            assert_eq!(status, 200, "{body}");
        } else {
            searchable(&server, &model);
        }
        // The migration starts in the second cycle, and is resumed after each crash
        // until it has finished.
        let (_, state) = server.get("/vectors/index/docs/migration");
        // (Also when a crash came between the 202 and the migration's first event.)
        if cycle >= 1 && state["finished"].is_null() {
            let (status, body) = migrate(&server);
            assert_eq!(status, 202, "{body}");
            migration_started = true;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let model_shared = Arc::new(Mutex::new(std::mem::take(&mut model)));
        let mut threads = Vec::new();
        for thread in 0..2 {
            let (base, m, s, seed) =
                (server.base.clone(), Arc::clone(&model_shared), Arc::clone(&stop), rng.next());
            threads.push(std::thread::spawn(move || writer(base, thread, cycle, m, s, seed)));
        }
        let (base, s, seed) = (server.base.clone(), Arc::clone(&stop), rng.next());
        threads.push(std::thread::spawn(move || promoter(base, s, seed)));
        std::thread::sleep(Duration::from_millis(150 + rng.below(600)));
        server.kill(); // SIGKILL, whatever is in flight
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().unwrap();
        }
        model = Arc::try_unwrap(model_shared).ok().unwrap().into_inner().unwrap();
    }
    // The last restart: everything checks out, the migration finishes.
    check(&records(dir.path()), &mut model, cycles);
    let server = Server::start_with(dir.path(), &flags);
    searchable(&server, &model);
    let (_, state) = server.get("/vectors/index/docs/migration");
    if migration_started && state["finished"].is_null() {
        let (status, body) = migrate(&server);
        assert_eq!(status, 202, "resumed: {body}");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, state) = server.get("/vectors/index/docs/migration");
        if !state["finished"].is_null() {
            assert!(state["finished"]["ended_seq"].as_u64().is_some(), "{state}");
            break;
        }
        assert!(Instant::now() < deadline, "the migration never finished: {state}");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.terminate();
    let all = records(dir.path());
    check(&all, &mut model, cycles + 1);
    let outside: Vec<_> =
        all.iter().filter(|(_, (_, p))| !p.as_deref().is_some_and(|p| p.contains("/g="))).take(5).collect();
    assert!(
        migration_started == (cycles > 1) && (cycles < 2 || outside.is_empty()),
        "every record under the new template: {outside:?}"
    );
    let data = dir.path().to_str().unwrap();
    for args in [vec!["log", "verify", "--data", data], vec!["replay", "--check", "--data", data]] {
        let out = Command::new(env!("CARGO_BIN_EXE_annal")).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!(
        "crash loop: {cycles} cycles in {:.1} s, {} acknowledged writes, {} records live, {} deleted, seed {seed}",
        started.elapsed().as_secs_f64(),
        model.acknowledged_writes,
        model.present.len(),
        model.deleted.len()
    );
}
