//! A stand-in for a remote embedding service (OpenAI `/v1/embeddings` shape), started by
//! a test on a loopback port: it answers fixed vectors (a function of the text), counts
//! the texts it embedded, and can be told to fail or to hang.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

/// The stand-in's vectors' dimension.
pub const STANDIN_DIMENSION: usize = 8;

/// How the stand-in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Embeds.
    Ok = 0,
    /// Answers 503.
    Fail = 1,
    /// Sleeps 30 s before answering (a client with a shorter timeout gives up).
    Hang = 2,
}

#[derive(Default)]
struct Shared {
    mode: AtomicU8,
    /// Texts embedded (answered with a vector), with how many times.
    embedded: Mutex<HashMap<String, u32>>,
    /// Requests answered with an error.
    failed: Mutex<u32>,
    /// A request holding a text that contains this is refused with 400.
    poison: Mutex<Option<String>>,
    /// The `Authorization` header of the last request, if it had one.
    authorization: Mutex<Option<String>>,
}

/// A running stand-in.
pub struct StandIn {
    pub url: String,
    shared: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
}

impl StandIn {
    pub fn start() -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let shared = Arc::new(Shared::default());
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}/v1/embeddings", listener.local_addr().unwrap());
        let app = Router::new().route("/v1/embeddings", post(embed)).with_state(Arc::clone(&shared));
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self { url, shared, _runtime: runtime }
    }

    /// Refuse (400) any request with a text containing `word`, as a remote service
    /// refuses an input it cannot take.
    pub fn poison(&self, word: &str) {
        *self.shared.poison.lock().unwrap() = Some(word.to_owned());
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Texts embedded so far, with how many times each.
    pub fn embedded(&self) -> HashMap<String, u32> {
        self.shared.embedded.lock().unwrap().clone()
    }

    /// The `Authorization` header of the last request.
    pub fn authorization(&self) -> Option<String> {
        self.shared.authorization.lock().unwrap().clone()
    }

    /// Requests refused so far.
    pub fn failed(&self) -> u32 {
        *self.shared.failed.lock().unwrap()
    }
}

/// The stand-in's vector of `text`: fixed, unit length, different per text.
pub fn standin_vector(text: &str) -> Vec<f32> {
    let mut state = u64::from(crc32fast::hash(text.as_bytes())) | 1;
    let mut v: Vec<f32> = (0..STANDIN_DIMENSION)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

async fn embed(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    *shared.authorization.lock().unwrap() =
        headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    match shared.mode.load(Ordering::SeqCst) {
        1 => {
            *shared.failed.lock().unwrap() += 1;
            return (StatusCode::SERVICE_UNAVAILABLE, "down for a while").into_response();
        }
        2 => {
            *shared.failed.lock().unwrap() += 1;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        _ => {}
    }
    let texts: Vec<String> = body["input"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if let Some(word) = shared.poison.lock().unwrap().as_deref() {
        if texts.iter().any(|t| t.contains(word)) {
            *shared.failed.lock().unwrap() += 1;
            return (StatusCode::BAD_REQUEST, "input too long for this model").into_response();
        }
    }
    let mut embedded = shared.embedded.lock().unwrap();
    let data: Vec<serde_json::Value> = texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            *embedded.entry(text.clone()).or_default() += 1;
            serde_json::json!({"object": "embedding", "index": index, "embedding": standin_vector(text)})
        })
        .collect();
    Json(serde_json::json!({"object": "list", "data": data, "model": body["model"]})).into_response()
}
