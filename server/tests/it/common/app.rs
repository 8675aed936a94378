//! The router in-process over an engine in a temporary directory: no port, no child.
#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::sync::Arc;

use annal_engine::{Engine, EngineConfig};
use annal_server::http::{router, AppState, INFLIGHT_BODY_BYTES_DEFAULT};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

/// An answer: status, headers, body bytes.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap()
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.bytes).unwrap()
    }
}

pub struct App {
    pub state: AppState,
    router: Router,
    _dir: tempfile::TempDir,
}

impl App {
    pub fn new() -> Self {
        Self::with_budget(INFLIGHT_BODY_BYTES_DEFAULT)
    }

    pub fn with_budget(inflight_body_bytes: u64) -> Self {
        Self::with_config(EngineConfig::default(), inflight_body_bytes)
    }

    pub fn with_config(config: EngineConfig, inflight_body_bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::open(dir.path(), config).unwrap());
        let state = AppState::new(engine, inflight_body_bytes).unwrap();
        App { router: router(state.clone()), state, _dir: dir }
    }

    pub fn engine(&self) -> &Engine {
        &self.state.engine
    }

    /// Send a request; `headers` are added as given (bytes, so not only UTF-8).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &[u8])],
        body: Option<Body>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, HeaderValue::from_bytes(value).unwrap());
        }
        let request = request.body(body.unwrap_or_else(Body::empty)).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec();
        Answer { status, headers, bytes }
    }

    /// A GET whose body may fail part-way: the status, then the body or its error.
    pub async fn get_streamed(&self, path: &str) -> (u16, Result<Vec<u8>, String>) {
        let request = Request::builder().method("GET").uri(path).body(Body::empty()).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await;
        (status, body.map(|b| b.to_vec()).map_err(|e| e.to_string()))
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send("POST", path, &[], Some(Body::from(body.to_string()))).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, &[], None).await
    }

    pub async fn put_bytes(&self, path: &str, bytes: &[u8]) -> Answer {
        self.send("PUT", path, &[], Some(Body::from(bytes.to_vec()))).await
    }
}
