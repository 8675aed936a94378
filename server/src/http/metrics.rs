//! `/metrics` in the Prometheus text format: request counts and latencies recorded by a
//! middleware, engine figures (log sequence, projection lag, index sizes) read at scrape.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use super::{ApiError, AppState};

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    last_seq: IntGauge,
    applied_seq: IntGauge,
    lag: IntGauge,
    events_applied: IntGauge,
    vectors_rejected: IntGauge,
    rebuilds: IntGauge,
    rebuild_failures: IntGauge,
    commits: IntGauge,
    poisoned: IntGauge,
    index_vectors: IntGaugeVec,
    index_tombstones: IntGaugeVec,
}

impl Metrics {
    /// Register every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("annal_http_requests_total", "HTTP requests by route, method and status"),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("annal_http_request_duration_seconds", "HTTP request latency by route")
                .buckets(prometheus::exponential_buckets(0.0001, 2.0, 18)?),
            &["route", "method"],
        )?;
        let gauge = |name: &str, help: &str| IntGauge::new(name, help);
        let m = Self {
            last_seq: gauge("annal_log_last_seq", "Highest committed log sequence number")?,
            applied_seq: gauge("annal_projection_applied_seq", "Highest sequence number applied")?,
            lag: gauge("annal_projection_lag_events", "Events committed but not yet applied")?,
            events_applied: gauge("annal_projection_events_applied", "Events applied since start")?,
            vectors_rejected: gauge("annal_projection_vectors_rejected", "Vectors the projection rejected")?,
            rebuilds: gauge("annal_projection_rebuilds", "Graph rebuilds completed since start")?,
            rebuild_failures: gauge(
                "annal_projection_rebuild_failures",
                "Graph rebuilds that failed since start",
            )?,
            commits: gauge("annal_log_commits", "Group commits since start")?,
            poisoned: gauge("annal_log_poisoned", "1 once a failed commit made the log refuse writes")?,
            index_vectors: IntGaugeVec::new(
                Opts::new("annal_index_vectors", "Live vectors per index"),
                &["index"],
            )?,
            index_tombstones: IntGaugeVec::new(
                Opts::new("annal_index_tombstones", "Deleted or replaced vectors still in the graph"),
                &["index"],
            )?,
            registry,
            requests,
            latency,
        };
        m.registry.register(Box::new(m.requests.clone()))?;
        m.registry.register(Box::new(m.latency.clone()))?;
        for g in [
            &m.last_seq,
            &m.applied_seq,
            &m.lag,
            &m.events_applied,
            &m.vectors_rejected,
            &m.rebuilds,
            &m.commits,
        ] {
            m.registry.register(Box::new(g.clone()))?;
        }
        m.registry.register(Box::new(m.index_vectors.clone()))?;
        m.registry.register(Box::new(m.index_tombstones.clone()))?;
        Ok(m)
    }
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Middleware: count and time every request by its route template.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    // Only known methods become label values: hyper accepts any extension method, and
    // each new value would add series without bound.
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "DELETE" => "DELETE",
        "PUT" => "PUT",
        "HEAD" => "HEAD",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(req).await;
    let m = &state.metrics;
    m.latency.with_label_values(&[&route, method]).observe(started.elapsed().as_secs_f64());
    m.requests.with_label_values(&[&route, method, response.status().as_str()]).inc();
    response
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> Result<Response, ApiError> {
    let engine = std::sync::Arc::clone(&state.engine);
    let stats = super::routes::blocking(move || Ok(engine.stats())).await?;
    let m = &state.metrics;
    m.last_seq.set(gauge_value(stats.log.last_seq));
    m.applied_seq.set(gauge_value(stats.projector.applied_seq));
    m.lag.set(gauge_value(stats.lag_events));
    m.events_applied.set(gauge_value(stats.projector.events_applied));
    m.vectors_rejected.set(gauge_value(stats.projector.vectors_rejected));
    m.rebuilds.set(gauge_value(stats.projector.rebuilds));
    m.rebuild_failures.set(gauge_value(stats.projector.rebuild_failures));
    m.poisoned.set(i64::from(state.engine.log().is_poisoned()));
    m.commits.set(gauge_value(stats.log.commits));
    // Dropped indexes disappear from the export rather than freeze at their last value.
    m.index_vectors.reset();
    m.index_tombstones.reset();
    for index in &stats.indexes {
        m.index_vectors.with_label_values(&[&index.name]).set(gauge_value(index.length));
        m.index_tombstones.with_label_values(&[&index.name]).set(gauge_value(index.tombstones));
    }
    let mut body = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&m.registry.gather(), &mut body)
        .map_err(|e| ApiError::internal(&e))?;
    Ok(([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response())
}
