//! Input validation, run before anything is appended. Every error names the field
//! (with the item's position in its batch) and the reason.

use std::collections::HashSet;

use crate::event::{
    estimated_document_bytes, estimated_item_bytes, DocumentItem, HnswConfig, Metric, VectorItem,
};
use crate::limits::*;
use crate::vecmath::norm;

/// The caller's input is invalid; `field` names where (`items[3].vector`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidInput {
    /// Path of the offending field, e.g. `items[3].id`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidInput {
    InvalidInput { field: field.into(), reason: reason.into() }
}

/// An index name: 1-128 characters of `[A-Za-z0-9_-]`.
pub fn name(value: &str) -> Result<(), InvalidInput> {
    if value.is_empty() || value.len() > NAME_BYTES_MAX {
        return Err(invalid(
            "name",
            format!("must be 1 to {NAME_BYTES_MAX} characters, got {}", value.len()),
        ));
    }
    if let Some(c) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return Err(invalid("name", format!("character {c:?} is not allowed (use A-Z a-z 0-9 _ -)")));
    }
    Ok(())
}

/// A vector dimension: 1 to [`DIMENSION_MAX`].
pub fn dimension(value: u32) -> Result<(), InvalidInput> {
    if value == 0 || value > DIMENSION_MAX {
        return Err(invalid("dimension", format!("must be 1 to {DIMENSION_MAX}, got {value}")));
    }
    Ok(())
}

/// HNSW parameters within FAISS's and our bounds.
pub fn config(value: &HnswConfig) -> Result<(), InvalidInput> {
    if !(2..=HNSW_M_MAX).contains(&value.m) {
        return Err(invalid("m", format!("must be 2 to {HNSW_M_MAX}, got {}", value.m)));
    }
    for (field, ef) in [("ef_construction", value.ef_construction), ("ef_search", value.ef_search)] {
        if !(1..=HNSW_EF_MAX).contains(&ef) {
            return Err(invalid(field, format!("must be 1 to {HNSW_EF_MAX}, got {ef}")));
        }
    }
    Ok(())
}

/// A storage for a `dimension`-dimensional index of `metric`: a refine factor only
/// with quantized codes and at most [`crate::limits::REFINE_MAX`]; `pq_m` only with `pq`,
/// at least 1 and dividing the dimension; and a graph FAISS can make (its factory must
/// accept it for this metric).
pub fn storage(value: &HnswConfig, dimension: u32, metric: crate::event::Metric) -> Result<(), InvalidInput> {
    use crate::event::StorageKind;
    let s = value.storage;
    let refine_max = crate::limits::REFINE_MAX;
    if s.refine > refine_max {
        return Err(invalid("refine", format!("must be at most {refine_max}, got {}", s.refine)));
    }
    if s.refine > 0 && !s.quantized() {
        return Err(invalid("refine", "re-scores quantized codes; flat storage is exact already"));
    }
    match s.kind {
        StorageKind::Pq if s.pq_m == 0 || !dimension.is_multiple_of(s.pq_m) => {
            return Err(invalid(
                "pq_m",
                format!("sub-quantizers must divide the dimension {dimension}, got {}", s.pq_m),
            ));
        }
        StorageKind::Pq => {}
        _ if s.pq_m != 0 => {
            return Err(invalid("pq_m", format!("applies to pq storage only, not {}", s.kind.name())));
        }
        _ => {}
    }
    if let Err(refused) = crate::projection::vectors::make_empty(dimension, metric, value.m, s) {
        return Err(invalid(
            "storage",
            format!(
                "FAISS cannot make a {} graph of M {} for {}: {refused}",
                s.label(),
                value.m,
                metric.name()
            ),
        ));
    }
    Ok(())
}

/// An autotune recall floor: 0 to 1 (NaN is neither).
pub fn recall_floor(value: f64) -> Result<(), InvalidInput> {
    if !(0.0..=1.0).contains(&value) {
        return Err(invalid("recall_floor", format!("must be 0 to 1, got {value}")));
    }
    Ok(())
}

/// A free text field of at most [`TEXT_BYTES_MAX`] bytes, empty allowed or not.
pub fn text(field: &str, value: &str, empty_ok: bool) -> Result<(), InvalidInput> {
    if (!empty_ok && value.is_empty()) || value.len() > TEXT_BYTES_MAX {
        let low = u8::from(!empty_ok);
        return Err(invalid(field, format!("must be {low} to {TEXT_BYTES_MAX} bytes, got {}", value.len())));
    }
    Ok(())
}

/// The actor recorded with an event.
pub fn actor(value: &str) -> Result<(), InvalidInput> {
    if value.is_empty() || value.len() > TEXT_BYTES_MAX {
        return Err(invalid("actor", format!("must be 1 to {TEXT_BYTES_MAX} bytes, got {}", value.len())));
    }
    Ok(())
}

/// A batch of vectors for an index of `dim` dimensions under `metric`.
pub fn items(items: &[VectorItem], dim: u32, metric: Metric) -> Result<(), InvalidInput> {
    batch(items, estimated_item_bytes, |i, item| {
        vector(&format!("items[{i}].vector"), &item.vector, dim, metric)?;
        metadata_and_partition(i, item.metadata.as_deref(), item.partition.as_deref())
    })
}

/// What every batch of records (vectors or documents) must be: 1 to
/// [`BATCH_ITEMS_MAX`] items, one event's worth of bytes by the encoder's own
/// `estimate`, valid and distinct ids; then `each` item's own checks, in order.
fn batch<T: BatchItem>(
    items: &[T],
    estimate: fn(&T) -> usize,
    mut each: impl FnMut(usize, &T) -> Result<(), InvalidInput>,
) -> Result<(), InvalidInput> {
    batch_len("items", items.len())?;
    // The batch becomes one event: refuse it here, as bad input, with the encoder's own
    // estimate (the engine checks the whole event again before appending).
    let bytes = items.iter().fold(0usize, |acc, item| acc.saturating_add(estimate(item)));
    if bytes > EVENT_BYTES_MAX {
        return Err(too_large_for_one_event(bytes));
    }
    let mut seen = HashSet::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        id(&format!("items[{i}].id"), item.id())?;
        if !seen.insert(item.id()) {
            return Err(invalid(
                format!("items[{i}].id"),
                format!("duplicate id {:?} in the batch", item.id()),
            ));
        }
        each(i, item)?;
    }
    Ok(())
}

/// An item of a batch, known by its id.
trait BatchItem {
    fn id(&self) -> &str;
}

impl BatchItem for VectorItem {
    fn id(&self) -> &str {
        &self.id
    }
}

impl BatchItem for DocumentItem {
    fn id(&self) -> &str {
        &self.id
    }
}

/// A batch of documents.
pub fn documents(items: &[DocumentItem]) -> Result<(), InvalidInput> {
    batch(items, estimated_document_bytes, |i, item| {
        document_text(&format!("items[{i}].text"), &item.text)?;
        metadata_and_partition(i, item.metadata.as_deref(), item.partition.as_deref())
    })
}

/// A document's or a query's text: 1 to [`DOCUMENT_TEXT_BYTES_MAX`] bytes, not only
/// whitespace.
pub fn document_text(field: &str, text: &str) -> Result<(), InvalidInput> {
    if text.trim().is_empty() || text.len() > DOCUMENT_TEXT_BYTES_MAX {
        return Err(invalid(
            field,
            format!("must be 1 to {DOCUMENT_TEXT_BYTES_MAX} bytes of text, got {} bytes", text.len()),
        ));
    }
    Ok(())
}

fn metadata_and_partition(
    i: usize,
    item_metadata: Option<&str>,
    item_partition: Option<&str>,
) -> Result<(), InvalidInput> {
    if let Some(metadata) = item_metadata {
        if metadata.len() > METADATA_BYTES_MAX {
            return Err(invalid(
                format!("items[{i}].metadata"),
                format!("is {} bytes, over the limit of {METADATA_BYTES_MAX}", metadata.len()),
            ));
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(metadata) {
            return Err(invalid(format!("items[{i}].metadata"), format!("is not valid JSON: {e}")));
        }
    }
    if let Some(partition) = item_partition {
        partition_path(&format!("items[{i}].partition"), partition)?;
    }
    Ok(())
}

/// A partition path given explicitly: 1 to [`TEXT_BYTES_MAX`] bytes of `/`-separated
/// segments, none empty, `.` or `..`, without control characters (what a template
/// resolves to has the same shape).
pub fn partition_path(field: &str, path: &str) -> Result<(), InvalidInput> {
    if path.is_empty() || path.len() > TEXT_BYTES_MAX {
        return Err(invalid(field, format!("must be 1 to {TEXT_BYTES_MAX} bytes, got {}", path.len())));
    }
    if let Some(c) = path.chars().find(|c| c.is_control()) {
        return Err(invalid(field, format!("control character {c:?} is not allowed")));
    }
    if let Some(segment) = path.split('/').find(|s| s.is_empty() || *s == "." || *s == "..") {
        return Err(invalid(
            field,
            format!(
                "segment {segment:?} of {path:?}: segments between '/' must be non-empty and not . or .."
            ),
        ));
    }
    Ok(())
}

/// A batch of ids to delete.
pub fn ids(ids: &[String]) -> Result<(), InvalidInput> {
    batch_len("ids", ids.len())?;
    let mut seen = HashSet::with_capacity(ids.len());
    for (i, value) in ids.iter().enumerate() {
        id(&format!("ids[{i}]"), value)?;
        if !seen.insert(value.as_str()) {
            return Err(invalid(format!("ids[{i}]"), format!("duplicate id {value:?} in the batch")));
        }
    }
    Ok(())
}

/// A search's `k`.
pub fn k(k: usize) -> Result<(), InvalidInput> {
    if k == 0 || k > SEARCH_K_MAX {
        return Err(invalid("k", format!("must be 1 to {SEARCH_K_MAX}, got {k}")));
    }
    Ok(())
}

/// A search: `k` and each query vector.
pub fn search(queries: &[Vec<f32>], k: usize, dim: u32, metric: Metric) -> Result<(), InvalidInput> {
    self::k(k)?;
    if queries.is_empty() || queries.len() > SEARCH_BATCH_MAX {
        return Err(invalid(
            "vectors",
            format!("must hold 1 to {SEARCH_BATCH_MAX} queries, got {}", queries.len()),
        ));
    }
    if let [only] = queries {
        return vector("vector", only, dim, metric);
    }
    for (i, query) in queries.iter().enumerate() {
        vector(&format!("vectors[{i}]"), query, dim, metric)?;
    }
    Ok(())
}

/// A batch whose event would exceed [`EVENT_BYTES_MAX`].
pub(crate) fn too_large_for_one_event(bytes: usize) -> InvalidInput {
    invalid(
        "items",
        format!("batch makes an event of about {bytes} bytes, over the limit of {EVENT_BYTES_MAX}; split it"),
    )
}

fn batch_len(field: &str, len: usize) -> Result<(), InvalidInput> {
    if len == 0 {
        return Err(invalid(field, "must not be empty"));
    }
    if len > BATCH_ITEMS_MAX {
        return Err(invalid(field, format!("holds {len} entries, over the limit of {BATCH_ITEMS_MAX}")));
    }
    Ok(())
}

fn id(field: &str, value: &str) -> Result<(), InvalidInput> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > ID_BYTES_MAX {
        return Err(invalid(field, format!("is {} bytes, over the limit of {ID_BYTES_MAX}", value.len())));
    }
    Ok(())
}

fn vector(field: &str, value: &[f32], dim: u32, metric: Metric) -> Result<(), InvalidInput> {
    if value.len() != dim as usize {
        return Err(invalid(field, format!("has dimension {}, the index expects {dim}", value.len())));
    }
    if let Some(pos) = value.iter().position(|x| !x.is_finite()) {
        return Err(invalid(field, format!("component {pos} is not finite (NaN or infinite)")));
    }
    let norm = norm(value);
    // FAISS computes distances in f32: a squared norm beyond f32 would make them
    // infinite (or NaN for inner products), which breaks its ordering.
    if !((norm * norm) as f32).is_finite() {
        return Err(invalid(field, format!("norm {norm:e} is too large: its square overflows f32")));
    }
    if metric == Metric::Cosine && norm == 0.0 {
        return Err(invalid(field, "is the zero vector, which has no direction under cosine"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, vector: Vec<f32>) -> VectorItem {
        VectorItem { id: id.into(), vector, metadata: None, partition: None }
    }

    #[test]
    fn names_allow_only_the_documented_alphabet() {
        assert!(name("docs_v2-en").is_ok());
        assert_eq!(name("").unwrap_err().field, "name");
        assert!(name("a b").unwrap_err().reason.contains("' '"));
        assert!(name(&"x".repeat(NAME_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn a_bad_item_is_named_by_its_position() {
        let good = item("a", vec![1.0, 0.0]);
        let cases = [
            (item("", vec![1.0, 0.0]), "items[1].id", "empty"),
            (item("a", vec![1.0, 0.0]), "items[1].id", "duplicate"),
            (item("b", vec![1.0]), "items[1].vector", "dimension 1"),
            (item("b", vec![f32::NAN, 0.0]), "items[1].vector", "not finite"),
            (item("b", vec![f32::INFINITY, 0.0]), "items[1].vector", "not finite"),
            (item("b", vec![0.0, 0.0]), "items[1].vector", "zero vector"),
        ];
        for (bad, field, reason) in cases {
            let err = items(&[good.clone(), bad], 2, Metric::Cosine).unwrap_err();
            assert_eq!(err.field, field);
            assert!(err.reason.contains(reason), "{err}");
        }
        let mut bad_json = item("b", vec![1.0, 0.0]);
        bad_json.metadata = Some("{not json".into());
        assert_eq!(items(&[good, bad_json], 2, Metric::L2).unwrap_err().field, "items[1].metadata");
    }

    #[test]
    fn a_batch_too_big_for_one_event_is_bad_input() {
        let dim = DIMENSION_MAX as usize;
        let batch: Vec<_> =
            (0..EVENT_BYTES_MAX / (4 * dim) + 1).map(|i| item(&i.to_string(), vec![1.0; dim])).collect();
        let err = items(&batch, DIMENSION_MAX, Metric::L2).unwrap_err();
        assert_eq!(err.field, "items");
        assert!(err.reason.contains("over the limit"), "{err}");
    }

    #[test]
    fn tiny_vectors_are_not_zero_and_huge_ones_are_refused() {
        assert!(items(&[item("t", vec![1e-30, 1e-30])], 2, Metric::Cosine).is_ok());
        let err = items(&[item("h", vec![1e20, 1e20])], 2, Metric::L2).unwrap_err();
        assert!(err.reason.contains("too large"), "{err}");
    }

    #[test]
    fn the_zero_vector_is_fine_under_l2() {
        assert!(items(&[item("z", vec![0.0, 0.0])], 2, Metric::L2).is_ok());
    }

    #[test]
    fn k_outside_one_to_the_limit_is_rejected() {
        let q = vec![vec![1.0, 0.0]];
        assert_eq!(search(&q, 0, 2, Metric::L2).unwrap_err().field, "k");
        assert_eq!(search(&q, SEARCH_K_MAX + 1, 2, Metric::L2).unwrap_err().field, "k");
        assert!(search(&q, SEARCH_K_MAX, 2, Metric::L2).is_ok());
    }
}
