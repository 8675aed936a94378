//! `/metrics` in the Prometheus text format: request counts and latencies recorded by a
//! middleware, engine figures read at scrape.
//!
//! Monotone engine figures are counters. The engine keeps them as running totals, so
//! each scrape adds the growth since the figures last seen, under one lock, so that two
//! scrapes at once cannot both add the same growth. Levels are gauges.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use std::collections::BTreeMap;

use annal_engine::EngineStats;
use annal_engine::StorageStats;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    inflight_body_bytes: IntGauge,
    last_seq: IntGauge,
    applied_seq: IntGauge,
    lag: IntGauge,
    cluster_lag: IntGauge,
    in_sync: IntGauge,
    poisoned: IntGauge,
    rebuilds_running: IntGauge,
    index_vectors: IntGaugeVec,
    index_tombstones: IntGaugeVec,
    bucket_errors: IntCounterVec,
    bucket_rescued: IntCounterVec,
    totals: Mutex<Totals>,
}

/// The engine's running totals, each with the counter that exports it.
struct Totals {
    commits: Total,
    events_applied: Total,
    vectors_rejected: Total,
    rebuilds: Total,
    rebuild_failures: Total,
    rebuilds_cancelled: Total,
    journal_failures: Total,
    publishes: Total,
    republishes: Total,
    conflicts: Total,
    /// What each labelled bucket counter has counted up to.
    bucket_errors_seen: BTreeMap<(String, &'static str), u64>,
    bucket_rescued_seen: BTreeMap<String, u64>,
}

impl Totals {
    fn all(&self) -> [&Total; 10] {
        [
            &self.publishes,
            &self.republishes,
            &self.conflicts,
            &self.journal_failures,
            &self.commits,
            &self.events_applied,
            &self.vectors_rejected,
            &self.rebuilds,
            &self.rebuild_failures,
            &self.rebuilds_cancelled,
        ]
    }
}

/// A counter fed from an engine total, and the total it has counted up to.
struct Total {
    counter: IntCounter,
    seen: u64,
}

impl Total {
    fn new(name: &str, help: &str) -> Result<Self, prometheus::Error> {
        Ok(Self { counter: IntCounter::new(name, help)?, seen: 0 })
    }

    /// Count the growth of `total` since the last call; a total older than one already
    /// counted (read by a slower scrape) adds nothing.
    fn advance(&mut self, total: u64) {
        if total > self.seen {
            self.counter.inc_by(total - self.seen);
            self.seen = total;
        }
    }
}

impl Metrics {
    /// Register every metric.
    ///
    /// # Errors
    /// A metric's name, labels or buckets are invalid (a bug).
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
        let totals = Totals {
            commits: Total::new("annal_log_commits_total", "Group commits since start")?,
            events_applied: Total::new(
                "annal_projection_events_applied_total",
                "Events applied since start (replay included)",
            )?,
            vectors_rejected: Total::new(
                "annal_projection_vectors_rejected_total",
                "Vectors or ids in applied events the projection could not apply",
            )?,
            rebuilds: Total::new("annal_projection_rebuilds_total", "Graph rebuilds completed since start")?,
            rebuild_failures: Total::new(
                "annal_projection_rebuild_failures_total",
                "Graph rebuilds that failed since start (the old graph stays in service)",
            )?,
            rebuilds_cancelled: Total::new(
                "annal_projection_rebuilds_cancelled_total",
                "Graph rebuilds stopped unfinished by shutdown",
            )?,
            journal_failures: Total::new(
                "annal_bucket_journal_failures_total",
                "Bucket errors that could not be appended to the log (only in the server log)",
            )?,
            publishes: Total::new(
                "annal_cluster_publishes_total",
                "Commit messages this node published to the cluster's stream",
            )?,
            republishes: Total::new(
                "annal_cluster_republishes_total",
                "Publishes placed again because another node's commit came first",
            )?,
            conflicts: Total::new(
                "annal_cluster_conflicts_total",
                "Writes refused because another node changed the schema after their validation",
            )?,
            bucket_errors_seen: BTreeMap::new(),
            bucket_rescued_seen: BTreeMap::new(),
        };
        let counters: Vec<IntCounter> = totals.all().into_iter().map(|t| t.counter.clone()).collect();
        let m = Self {
            inflight_body_bytes: gauge(
                "annal_http_inflight_body_bytes",
                "Request body bytes reserved by the requests in flight",
            )?,
            last_seq: gauge("annal_log_last_seq", "Highest committed log sequence number")?,
            applied_seq: gauge("annal_projection_applied_seq", "Highest sequence number applied")?,
            lag: gauge("annal_projection_lag_events", "Events committed but not yet applied")?,
            cluster_lag: gauge(
                "annal_cluster_lag_messages",
                "Messages of the cluster's stream this node has not copied yet (0 for a single node)",
            )?,
            in_sync: gauge("annal_in_sync", "1 while /readyz sends traffic here")?,
            poisoned: gauge("annal_log_poisoned", "1 once a failed commit made the log refuse writes")?,
            rebuilds_running: gauge("annal_projection_rebuilds_running", "1 while a graph rebuild runs")?,
            index_vectors: IntGaugeVec::new(
                Opts::new("annal_index_vectors", "Live vectors per index"),
                &["index"],
            )?,
            index_tombstones: IntGaugeVec::new(
                Opts::new("annal_index_tombstones", "Deleted or replaced vectors still in the graph"),
                &["index"],
            )?,
            bucket_errors: IntCounterVec::new(
                Opts::new("annal_bucket_errors_total", "Failed bucket operations by bucket and operation"),
                &["bucket", "op"],
            )?,
            bucket_rescued: IntCounterVec::new(
                Opts::new(
                    "annal_bucket_rescued_reads_total",
                    "Reads of a bucket served by its rescue bucket",
                ),
                &["bucket"],
            )?,
            registry,
            requests,
            latency,
            totals: Mutex::new(totals),
        };
        m.register(&counters)?;
        Ok(m)
    }

    fn register(&self, counters: &[IntCounter]) -> Result<(), prometheus::Error> {
        let r = &self.registry;
        r.register(Box::new(self.requests.clone()))?;
        r.register(Box::new(self.latency.clone()))?;
        for g in [
            &self.inflight_body_bytes,
            &self.last_seq,
            &self.applied_seq,
            &self.lag,
            &self.cluster_lag,
            &self.in_sync,
            &self.poisoned,
            &self.rebuilds_running,
        ] {
            r.register(Box::new(g.clone()))?;
        }
        for c in counters {
            r.register(Box::new(c.clone()))?;
        }
        r.register(Box::new(self.index_vectors.clone()))?;
        r.register(Box::new(self.index_tombstones.clone()))?;
        r.register(Box::new(self.bucket_errors.clone()))?;
        r.register(Box::new(self.bucket_rescued.clone()))?;
        Ok(())
    }

    /// The text exposition of every metric, the engine figures brought up to `stats`
    /// first (`GET /metrics`).
    ///
    /// # Errors
    /// The encoder failed (a bug).
    pub fn render(
        &self,
        stats: &EngineStats,
        storage: &StorageStats,
        poisoned: bool,
        inflight_body_bytes: u64,
    ) -> Result<Vec<u8>, prometheus::Error> {
        self.update(stats, storage, poisoned, inflight_body_bytes);
        let mut body = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut body)?;
        Ok(body)
    }

    /// Bring every engine figure up to `stats`.
    fn update(&self, stats: &EngineStats, storage: &StorageStats, poisoned: bool, inflight_body_bytes: u64) {
        {
            let mut t = self.totals.lock().unwrap_or_else(PoisonError::into_inner);
            t.journal_failures.advance(storage.journal_failures);
            // Every configured bucket's series exist from the first scrape, at 0.
            for bucket in &storage.buckets {
                for op in ["read", "write", "delete", "list"] {
                    self.bucket_errors.with_label_values(&[bucket.as_str(), op]);
                }
                self.bucket_rescued.with_label_values(&[bucket.as_str()]);
            }
            for ((bucket, op), total) in &storage.errors {
                let seen = t.bucket_errors_seen.entry((bucket.clone(), op.as_str())).or_default();
                if *total > *seen {
                    self.bucket_errors
                        .with_label_values(&[bucket.as_str(), op.as_str()])
                        .inc_by(total - *seen);
                    *seen = *total;
                }
            }
            for (bucket, total) in &storage.rescued {
                let seen = t.bucket_rescued_seen.entry(bucket.clone()).or_default();
                if *total > *seen {
                    self.bucket_rescued.with_label_values(&[bucket.as_str()]).inc_by(total - *seen);
                    *seen = *total;
                }
            }
            t.commits.advance(stats.log.commits);
            // Every projection is handed every event; the vector projection's rejections
            // are the vectors (and ids) it could not apply.
            let projections = &stats.projector.projections;
            t.events_applied.advance(projections.iter().map(|p| p.events_applied).max().unwrap_or(0));
            t.vectors_rejected
                .advance(projections.iter().filter(|p| p.name == "vectors").map(|p| p.rejected).sum());
            t.rebuilds.advance(stats.rebuilds.rebuilds);
            t.rebuild_failures.advance(stats.rebuilds.failures);
            t.rebuilds_cancelled.advance(stats.rebuilds.cancelled);
            if let Some(cluster) = &stats.cluster {
                t.publishes.advance(cluster.published);
                t.republishes.advance(cluster.republished);
                t.conflicts.advance(cluster.conflicts);
            }
        }
        self.cluster_lag.set(gauge_value(stats.cluster.as_ref().map_or(0, |c| c.lag_messages)));
        self.in_sync.set(i64::from(stats.in_sync));
        self.rebuilds_running.set(i64::from(stats.rebuilds.running));
        self.inflight_body_bytes.set(gauge_value(inflight_body_bytes));
        self.last_seq.set(gauge_value(stats.log.last_seq));
        self.applied_seq.set(gauge_value(stats.projector.applied_seq));
        self.lag.set(gauge_value(stats.lag_events));
        self.poisoned.set(i64::from(poisoned));
        // Dropped indexes disappear from the export rather than freeze at their last value.
        self.index_vectors.reset();
        self.index_tombstones.reset();
        for index in &stats.indexes {
            self.index_vectors.with_label_values(&[&index.name]).set(gauge_value(index.length));
            self.index_tombstones.with_label_values(&[&index.name]).set(gauge_value(index.tombstones));
        }
    }
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Middleware: count and time every request by its route template.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
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
    let m = &metrics;
    m.latency.with_label_values(&[&route, method]).observe(started.elapsed().as_secs_f64());
    m.requests.with_label_values(&[&route, method, response.status().as_str()]).inc();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_counts_only_its_growth_however_often_and_late_it_is_seen() {
        let mut total = Total::new("t_total", "test").unwrap();
        total.advance(5);
        total.advance(5);
        // A scrape that read the engine before another scrape's newer figure was counted.
        total.advance(3);
        total.advance(8);
        assert_eq!(total.counter.get(), 8);
    }
}
