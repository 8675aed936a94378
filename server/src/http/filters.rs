//! Metadata filter routes: payload indexes, items by id or by filter (paged), counts,
//! and metadata updates. Searches and deletes take `filter` in `routes.rs`.

use std::sync::Arc;

use annal_engine::event::PayloadKind;
use annal_engine::limits::{BATCH_ITEMS_MAX, ITEMS_LIMIT_MAX};
use annal_engine::{Item, MetadataChange};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::actor::actor;
use super::error::ApiError;
use super::filter_body::{plan_json, select, FilterSchema};
use super::json::ApiJson;
use super::routes::{as_of, blocking, raw_metadata, wait_of, AsOf, Metadata};
use super::state::AppState;

/// Default page size of `POST .../items` with a filter.
pub const ITEMS_LIMIT_DEFAULT: usize = 100;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreatePayloadIndex {
    /// The metadata field, a dotted path for nested keys (`meta.author`).
    field: String,
    /// `keyword`, `integer`, `float`, `bool` or `datetime`.
    #[serde(rename = "type")]
    kind: String,
}

/// `POST /vectors/index/{name}/payload-indexes`: 201 `{field, type, seq}`.
pub async fn create_payload_index(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: ApiJson,
) -> Result<impl IntoResponse, ApiError> {
    let actor = actor(&headers)?;
    let CreatePayloadIndex { field, kind } = body.parse()?;
    let Some(parsed) = PayloadKind::parse(&kind) else {
        return Err(ApiError::bad_request(format!(
            "type: unknown payload index type {kind:?} (use keyword, integer, float, bool or datetime)"
        )));
    };
    let engine = state.engine;
    let f = field.clone();
    let seq = blocking(move || engine.create_payload_index(&actor, &name, &f, parsed)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "field": field, "type": parsed.name(), "seq": seq }))))
}

/// `GET /vectors/index/{name}/payload-indexes`: `{payload_indexes: [{field, type,
/// records, distinct, bytes}]}`.
pub async fn list_payload_indexes(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<AsOf>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let as_of = as_of(&state, q).await?;
    let engine = state.engine;
    let infos = blocking(move || match as_of {
        Some(seq) => engine.view_at(seq)?.payload_indexes(&name),
        None => engine.payload_indexes(&name),
    })
    .await?;
    let list: Vec<Value> = infos
        .iter()
        .map(|i| {
            json!({"field": i.field, "type": i.kind.name(), "records": i.records, "distinct": i.distinct, "bytes": i.bytes})
        })
        .collect();
    Ok(Json(json!({ "payload_indexes": list })))
}

/// `DELETE /vectors/index/{name}/payload-indexes/{field}`: `{dropped, seq}`.
pub async fn drop_payload_index(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((name, field)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let engine = state.engine;
    let f = field.clone();
    let seq = blocking(move || engine.drop_payload_index(&actor, &name, &f)).await?;
    Ok(Json(json!({ "dropped": field, "seq": seq })))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Items {
    /// These records, in this order (at most 1,000; unknown ids are listed in
    /// `missing`). Not with `filter`, `partition` or `cursor`.
    ids: Option<Vec<String>>,
    #[schemars(with = "Option<FilterSchema>")]
    filter: Option<Value>,
    partition: Option<String>,
    /// Records per page, 1 to 1,000 (default 100).
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// What each item carries beside its id: any of `metadata`, `vector`,
    /// `partition` (default: metadata and partition).
    include: Option<Vec<String>>,
}

/// What an item carries.
#[derive(Clone, Copy)]
struct Include {
    vector: bool,
    metadata: bool,
    partition: bool,
}

fn include(list: Option<&[String]>) -> Result<Include, ApiError> {
    let Some(list) = list else { return Ok(Include { vector: false, metadata: true, partition: true }) };
    let mut out = Include { vector: false, metadata: false, partition: false };
    for (i, what) in list.iter().enumerate() {
        match what.as_str() {
            "vector" => out.vector = true,
            "metadata" => out.metadata = true,
            "partition" => out.partition = true,
            other => {
                return Err(ApiError::bad_request(format!(
                    "include[{i}]: unknown {other:?} (use metadata, vector or partition)"
                )))
            }
        }
    }
    Ok(out)
}

#[derive(Serialize)]
struct ItemView<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    vector: Option<&'a [f32]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<&'a str>,
}

fn item_view(item: &Item, include: Include) -> ItemView<'_> {
    ItemView {
        id: &item.id,
        vector: item.vector.as_deref().filter(|_| include.vector),
        metadata: item
            .metadata
            .as_deref()
            .filter(|_| include.metadata)
            .and_then(|m| raw_metadata(&item.id, m)),
        partition: item.partition.as_deref().filter(|_| include.partition),
    }
}

/// `POST /vectors/index/{name}/items`: by `ids`, `{items, missing}`; by `filter` and/or
/// `partition` (or neither: every record), a page `{items, next_cursor}` in id order.
pub async fn items(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<AsOf>, QueryRejection>,
    body: ApiJson,
) -> Result<Json<Value>, ApiError> {
    let Items { ids, filter, partition, limit, cursor, include: what } = body.parse()?;
    drop(body);
    let what = include(what.as_deref())?;
    let as_of = as_of(&state, q).await?;
    let engine = state.engine;
    if let Some(ids) = ids {
        if filter.is_some() || partition.is_some() || cursor.is_some() || limit.is_some() {
            return Err(ApiError::bad_request("ids: give ids, or filter/partition/limit/cursor, not both"));
        }
        if ids.is_empty() || ids.len() > ITEMS_LIMIT_MAX {
            return Err(ApiError::bad_request(format!(
                "ids: must hold 1 to {ITEMS_LIMIT_MAX} ids, got {}",
                ids.len()
            )));
        }
        let asked = ids.clone();
        let found = blocking(move || match as_of {
            Some(seq) => engine.view_at(seq)?.get_items(&name, &ids, what.vector),
            None => engine.get_items(&name, &ids, what.vector),
        })
        .await?;
        let missing: Vec<&str> =
            asked.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(id, _)| id.as_str()).collect();
        let items: Vec<ItemView<'_>> = found.iter().flatten().map(|item| item_view(item, what)).collect();
        return Ok(Json(json!({ "items": items, "missing": missing })));
    }
    let limit = limit.unwrap_or(ITEMS_LIMIT_DEFAULT);
    if limit == 0 || limit > ITEMS_LIMIT_MAX {
        return Err(ApiError::bad_request(format!("limit: must be 1 to {ITEMS_LIMIT_MAX}, got {limit}")));
    }
    let select = select(filter.as_ref(), partition)?;
    let page = blocking(move || match as_of {
        Some(seq) => engine.view_at(seq)?.items(&name, &select, cursor.as_deref(), limit, what.vector),
        None => engine.items(&name, &select, cursor.as_deref(), limit, what.vector),
    })
    .await?;
    let items: Vec<ItemView<'_>> = page.items.iter().map(|item| item_view(item, what)).collect();
    Ok(Json(json!({ "items": items, "next_cursor": page.next_cursor })))
}

/// `GET /vectors/index/{name}/items/{id}`: `{id, vector, metadata?, partition?}`, 404
/// if no such record.
pub async fn get_item(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    q: Result<Query<AsOf>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let as_of = as_of(&state, q).await?;
    let engine = state.engine;
    let index = name.clone();
    let ids = vec![id.clone()];
    let mut found = blocking(move || match as_of {
        Some(seq) => engine.view_at(seq)?.get_items(&index, &ids, true),
        None => engine.get_items(&index, &ids, true),
    })
    .await?;
    let Some(Some(item)) = found.pop() else {
        return Err(annal_engine::Error::RecordNotFound { index: name, id, field: "id".into() }.into());
    };
    let all = Include { vector: true, metadata: true, partition: true };
    let view = serde_json::to_value(item_view(&item, all)).map_err(|e| ApiError::internal(&e))?;
    Ok(Json(view))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CountBody {
    #[schemars(with = "Option<FilterSchema>")]
    filter: Option<Value>,
    partition: Option<String>,
    /// Answer the plan beside the count.
    explain: Option<bool>,
}

/// `POST /vectors/index/{name}/count`: `{count}` (and `explain` if asked).
pub async fn count(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<AsOf>, QueryRejection>,
    body: ApiJson,
) -> Result<Json<Value>, ApiError> {
    let CountBody { filter, partition, explain } = body.parse()?;
    drop(body);
    let select = select(filter.as_ref(), partition)?;
    let as_of = as_of(&state, q).await?;
    let engine = state.engine;
    let (count, plan) = blocking(move || match as_of {
        Some(seq) => engine.view_at(seq)?.count(&name, &select),
        None => engine.count(&name, &select),
    })
    .await?;
    let mut out = json!({ "count": count });
    if explain.unwrap_or(false) {
        out["explain"] = plan_json(&plan);
    }
    Ok(Json(out))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetadataItemBody<'a> {
    id: String,
    /// The new metadata; JSON `null` clears it (with `merge`: a merge patch, where
    /// `null` removes a key).
    #[serde(borrow, default)]
    metadata: Option<Metadata<'a>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetMetadata<'a> {
    /// The records (at most 10,000), which must exist.
    #[serde(borrow)]
    items: Vec<MetadataItemBody<'a>>,
    /// Merge each document into the record's metadata as a JSON merge patch (RFC
    /// 7386) instead of replacing it (default false).
    merge: Option<bool>,
    wait: Option<String>,
}

fn changes(items: Vec<MetadataItemBody<'_>>) -> Vec<MetadataChange> {
    items
        .into_iter()
        .map(|item| MetadataChange { id: item.id, metadata: item.metadata.map(|m| m.0.get().to_owned()) })
        .collect()
}

/// `POST /vectors/index/{name}/metadata`: `{updated, seq, applied}`.
pub async fn set_metadata(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: ApiJson,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let SetMetadata { items, merge, wait } = body.parse()?;
    if items.len() > BATCH_ITEMS_MAX {
        return Err(ApiError::bad_request(format!(
            "items: must hold 1 to {BATCH_ITEMS_MAX} records, got {}",
            items.len()
        )));
    }
    let wait = wait_of(wait.as_deref())?;
    let changes = changes(items);
    drop(body);
    let engine = state.engine;
    let merge = merge.unwrap_or(false);
    let out = blocking(move || engine.set_metadata(&actor, &name, changes, merge, wait)).await?;
    Ok(Json(
        json!({ "updated": out.updated, "seq": out.seq, "applied": wait == annal_engine::Wait::Applied }),
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchItem<'a> {
    /// A JSON merge patch (RFC 7386) for the record's metadata: keys set to `null`
    /// are removed.
    #[serde(borrow)]
    metadata: Metadata<'a>,
    wait: Option<String>,
}

/// `PATCH /vectors/index/{name}/items/{id}`: merge into one record's metadata;
/// `{updated, seq, applied}`.
pub async fn patch_item(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
    body: ApiJson,
) -> Result<Json<Value>, ApiError> {
    let actor = actor(&headers)?;
    let PatchItem { metadata, wait } = body.parse()?;
    let wait = wait_of(wait.as_deref())?;
    let changes = vec![MetadataChange { id, metadata: Some(metadata.0.get().to_owned()) }];
    drop(body);
    let engine = Arc::clone(&state.engine);
    let out = blocking(move || engine.set_metadata(&actor, &name, changes, true, wait)).await?;
    Ok(Json(
        json!({ "updated": out.updated, "seq": out.seq, "applied": wait == annal_engine::Wait::Applied }),
    ))
}
