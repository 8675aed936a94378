//! The routes and their middleware.

use std::sync::Arc;

use axum::routing::{delete, get, post};
use axum::Router;

use super::state::AppState;
use super::{
    admin, auth, budget, documents, filters, jobs, metrics, openapi, partitions, promotions, routes, storage,
    tuning,
};

/// The router, for the server and for tests.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/vectors/index", post(routes::create_index).get(routes::list_indexes))
        .route("/vectors/index/{name}", get(routes::get_index).delete(routes::drop_index))
        .route("/vectors/index/{name}/add", post(routes::add))
        .route("/vectors/index/{name}/delete", post(routes::delete))
        // Spelled as `auth::SEARCH_ROUTE` (a literal here: tests/it/docs.rs reads the
        // routes from this source); the access tests search with a read token.
        .route("/vectors/index/{name}/search", post(routes::search))
        .route(
            "/vectors/index/{name}/payload-indexes",
            post(filters::create_payload_index).get(filters::list_payload_indexes),
        )
        .route("/vectors/index/{name}/payload-indexes/{field}", delete(filters::drop_payload_index))
        .route("/vectors/index/{name}/items", post(filters::items))
        .route("/vectors/index/{name}/items/{id}", get(filters::get_item).patch(filters::patch_item))
        .route("/vectors/index/{name}/count", post(filters::count))
        .route("/vectors/index/{name}/metadata", post(filters::set_metadata))
        .route("/vectors/index/{name}/documents", post(documents::upsert))
        .route("/vectors/index/{name}/embedding", get(documents::get).put(documents::set))
        .route("/vectors/index/{name}/promote", post(promotions::promote))
        .route("/vectors/index/{name}/rollback", post(promotions::rollback))
        .route("/vectors/index/{name}/promotion", get(promotions::get))
        .route("/vectors/promotions", get(promotions::list))
        .route("/vectors/index/{name}/evals", post(tuning::create_eval))
        .route("/vectors/index/{name}/trials", post(tuning::run_trial).get(tuning::list_trials))
        .route("/vectors/index/{name}/trials/best", get(tuning::best_trial))
        .route("/vectors/index/{name}/autotune", post(tuning::autotune))
        .route("/jobs/{id}", get(jobs::get))
        .route("/vectors/index/{name}/scheme", post(partitions::set_scheme))
        .route("/vectors/index/{name}/migrate", post(partitions::migrate))
        .route(
            "/vectors/index/{name}/migration",
            get(partitions::migration).delete(partitions::clear_migration),
        )
        .route("/vectors/index/{name}/partitions", get(partitions::partitions))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(openapi::serve))
        .route("/storage/buckets", get(storage::list_buckets))
        .route("/storage/buckets/{bucket}/probe", post(storage::probe))
        .route("/storage/buckets/{bucket}/objects", get(storage::list_objects))
        .route(
            "/storage/buckets/{bucket}/objects/",
            get(storage::empty_key).put(storage::empty_key).delete(storage::empty_key),
        )
        .route(
            "/storage/buckets/{bucket}/objects/{*key}",
            get(storage::get_object).put(storage::put_object).delete(storage::delete_object),
        )
        .route("/storage/errors", get(storage::errors))
        .route("/admin/snapshots", post(admin::take_snapshot).get(admin::list_snapshots))
        .route("/admin/log", get(admin::log))
        .route("/admin/cluster", get(admin::cluster))
        .route("/admin/events", get(admin::events))
        .route("/storage/bucket-health", get(storage::bucket_health))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        // The last layer runs first: requests refused for the budget are still counted.
        .layer(axum::middleware::from_fn_with_state(state.clone(), routes::while_starting))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state.budget), budget::admit))
        // Before the budget: a request without a valid token reserves nothing.
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state.auth), auth::authorize))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state.metrics), metrics::track))
        .with_state(state)
}
