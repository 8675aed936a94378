//! Metadata filters at the engine: payload indexes (create, drop, list), filtered
//! searches with their plans, counts and listings, deletes by filter and metadata
//! updates. Writes that depend on the projection's state (which ids a filter selects,
//! which records exist, which fields are indexed) hold the schema's write lock, so no
//! other write is appended meanwhile, and first wait until every appended event is
//! applied: they see exactly the state their event follows.

use serde_json::Value;

use crate::error::Error;
use crate::event::{
    EventBody, MetadataItem, MetadataSet, PayloadIndexCreated, PayloadIndexDropped, PayloadKind,
    VectorsDeleted,
};
use crate::limits::{BATCH_ITEMS_MAX, FILTER_KEY_BYTES_MAX, METADATA_BYTES_MAX, PAYLOAD_INDEXES_MAX};
use crate::projection::vectors::{Item, Page, PayloadIndexInfo, Plan, Searched, Select};
use crate::sync::write;
use crate::validate::{self, InvalidInput};

use super::*;

/// One record's metadata change for [`Engine::set_metadata`].
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataChange {
    /// The record's id (it must exist).
    pub id: String,
    /// The new metadata (a JSON document as text); `None` clears it.
    pub metadata: Option<String>,
}

/// What [`Engine::set_metadata`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataUpdated {
    /// Records changed.
    pub updated: u64,
    /// Sequence number of the event.
    pub seq: u64,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidInput {
    InvalidInput { field: field.into(), reason: reason.into() }
}

/// A field path a payload index can be declared on: the rules of a filter's keys.
fn field_path(field: &str) -> Result<(), InvalidInput> {
    if field.is_empty() || field.len() > FILTER_KEY_BYTES_MAX {
        return Err(invalid(
            "field",
            format!("must be 1 to {FILTER_KEY_BYTES_MAX} bytes, got {}", field.len()),
        ));
    }
    if field.starts_with('$') || field.split('.').any(str::is_empty) {
        return Err(invalid("field", format!("{field:?} is not a field path (a.b.c, no leading $)")));
    }
    Ok(())
}

impl Engine {
    /// Index the metadata field `field` (a dotted path) of `index` as `kind` for
    /// filters; returns the event's sequence number once the index is built.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad field or too many payload indexes;
    /// [`Error::IndexNotFound`]; [`Error::PayloadIndexExists`].
    pub fn create_payload_index(
        &self,
        actor: &str,
        index: &str,
        field: &str,
        kind: PayloadKind,
    ) -> Result<u64, Error> {
        validate::actor(actor)?;
        field_path(field)?;
        let seq = {
            let schema = write(self.writable_schema()?);
            if schema.get(index).is_none() {
                return Err(Error::IndexNotFound { name: index.to_owned() });
            }
            self.wait_applied(self.log.last_seq())?;
            let handle = self.index(index)?;
            let (existing, count) = {
                let index = handle.read();
                (index.payload_kind(field), index.payload_definitions().len())
            };
            if let Some(kind) = existing {
                return Err(Error::PayloadIndexExists {
                    index: index.to_owned(),
                    field: field.to_owned(),
                    kind: kind.name(),
                });
            }
            if count >= PAYLOAD_INDEXES_MAX {
                return Err(invalid(
                    "field",
                    format!("index {index:?} has {count} payload indexes, the most allowed"),
                )
                .into());
            }
            let body = EventBody::PayloadIndexCreated(PayloadIndexCreated {
                index: index.to_owned(),
                field: field.to_owned(),
                kind,
            });
            let seq = self.append(actor, body)?;
            drop(schema);
            seq
        };
        self.wait_applied(seq)?;
        Ok(seq)
    }

    /// Drop the payload index on `field` of `index`; filters on the field are then
    /// evaluated on the metadata.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`]; [`Error::PayloadIndexNotFound`].
    pub fn drop_payload_index(&self, actor: &str, index: &str, field: &str) -> Result<u64, Error> {
        validate::actor(actor)?;
        let seq = {
            let schema = write(self.writable_schema()?);
            if schema.get(index).is_none() {
                return Err(Error::IndexNotFound { name: index.to_owned() });
            }
            self.wait_applied(self.log.last_seq())?;
            if self.index(index)?.read().payload_kind(field).is_none() {
                return Err(Error::PayloadIndexNotFound { index: index.to_owned(), field: field.to_owned() });
            }
            let body = EventBody::PayloadIndexDropped(PayloadIndexDropped {
                index: index.to_owned(),
                field: field.to_owned(),
            });
            let seq = self.append(actor, body)?;
            drop(schema);
            seq
        };
        self.wait_applied(seq)?;
        Ok(seq)
    }

    /// The payload indexes of `index`, by field.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`].
    pub fn payload_indexes(&self, index: &str) -> Result<Vec<PayloadIndexInfo>, Error> {
        self.catalog.payload_indexes(index)
    }

    /// The `k` nearest records to each of `vectors` among those `select` selects, with
    /// the plan that ran.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad vector, `k`, partition, or a filter operand of the
    /// wrong type for a payload index; [`Error::IndexNotFound`].
    pub fn query(
        &self,
        index: &str,
        vectors: Vec<Vec<f32>>,
        k: usize,
        select: &Select,
    ) -> Result<Searched, Error> {
        let (hits, plan) = self.catalog.query(index, vectors, k, select)?;
        Ok(Searched { hits, plan })
    }

    /// How many live records of `index` `select` selects, with the plan.
    ///
    /// # Errors
    /// As [`Engine::query`].
    pub fn count(&self, index: &str, select: &Select) -> Result<(u64, Plan), Error> {
        self.catalog.count(index, select)
    }

    /// A page of the records `select` selects, in id order, after the cursor `after`.
    ///
    /// # Errors
    /// As [`Engine::query`]; FAISS failed to read a vector.
    pub fn items(
        &self,
        index: &str,
        select: &Select,
        after: Option<&str>,
        limit: usize,
        vectors: bool,
    ) -> Result<Page, Error> {
        self.catalog.items(index, select, after, limit, vectors)
    }

    /// The records with these ids (`None` for an id that is not live), in order.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`]; FAISS failed to read a vector.
    pub fn get_items(&self, index: &str, ids: &[String], vectors: bool) -> Result<Vec<Option<Item>>, Error> {
        self.catalog.get_items(index, ids, vectors)
    }

    /// Delete every live record `select` selects. The ids are resolved against the
    /// state after every appended event, and recorded in the `VectorsDeleted` event, so
    /// a replay deletes exactly them. At most [`BATCH_ITEMS_MAX`] records per call: a
    /// larger selection is refused (narrow it, or delete in rounds with a `limit`).
    ///
    /// # Errors
    /// As [`Engine::query`]; [`Error::Invalid`] naming `filter` for a selection over
    /// the limit or an empty filter (`{}`) without a partition;
    /// [`Error::DocumentIndex`] (a document index's vectors carry the metadata of the
    /// version embedded, which may be older than its document's).
    pub fn delete_where(
        &self,
        actor: &str,
        index: &str,
        select: &Select,
        wait: Wait,
    ) -> Result<Deleted, Error> {
        validate::actor(actor)?;
        if select.filter.as_ref().is_some_and(|f| f.source().as_object().is_some_and(|m| m.is_empty()))
            && select.partition.is_none()
        {
            return Err(
                invalid("filter", "an empty filter selects every record: give ids or a condition").into()
            );
        }
        let (deleted, seq) = {
            let schema = write(self.writable_schema()?);
            let entry = schema.get(index).ok_or_else(|| Error::IndexNotFound { name: index.to_owned() })?;
            // A document index's vectors carry the metadata of the version embedded,
            // not of a newer one still queued: a filter over them would miss or hit
            // the wrong documents. Delete documents by id.
            if entry.embedder.is_some() {
                return Err(Error::DocumentIndex { name: index.to_owned() });
            }
            self.wait_applied(self.log.last_seq())?;
            let mut ids: Vec<String> =
                self.catalog.selected_ids(index, select)?.iter().map(|id| id.to_string()).collect();
            if ids.len() > BATCH_ITEMS_MAX {
                return Err(invalid(
                    if select.filter.is_some() { "filter" } else { "partition" },
                    format!("selects {} records; one delete takes at most {BATCH_ITEMS_MAX}", ids.len()),
                )
                .into());
            }
            ids.sort_unstable();
            let deleted = ids.len() as u64;
            if ids.is_empty() {
                return Ok(Deleted {
                    deleted: 0,
                    length: Some(self.length(index)),
                    seq: self.log.last_seq(),
                });
            }
            let body = EventBody::VectorsDeleted(VectorsDeleted { index: index.to_owned(), ids });
            let seq = self.append(actor, body)?;
            drop(schema);
            (deleted, seq)
        };
        if wait == Wait::Durable {
            self.make_durable()?;
            return Ok(Deleted { deleted, length: None, seq });
        }
        self.wait_applied(seq)?;
        Ok(Deleted { deleted, length: Some(self.length(index)), seq })
    }

    /// Replace (or, with `merge`, merge as a JSON merge patch, RFC 7386: `null` removes
    /// a key) the metadata of existing records, keeping their vectors; all or nothing.
    /// Under a partition scheme each record's partition follows its new metadata.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the item (bad id, metadata not JSON or too large, a
    /// template field missing); [`Error::RecordNotFound`] naming the first id that is
    /// not live; [`Error::DocumentIndex`] (a document's metadata is set with the
    /// document); [`Error::IndexNotFound`]. A change without a document (or with JSON
    /// `null`) clears the record's metadata, in either mode.
    pub fn set_metadata(
        &self,
        actor: &str,
        index: &str,
        changes: Vec<MetadataChange>,
        merge: bool,
        wait: Wait,
    ) -> Result<MetadataUpdated, Error> {
        validate::actor(actor)?;
        if changes.is_empty() || changes.len() > BATCH_ITEMS_MAX {
            return Err(invalid(
                "items",
                format!("must hold 1 to {BATCH_ITEMS_MAX} records, got {}", changes.len()),
            )
            .into());
        }
        let ids: Vec<String> = changes.iter().map(|c| c.id.clone()).collect();
        validate::ids(&ids)
            .map_err(|e| invalid(e.field.replace("ids[", "items[").replace(']', "].id"), e.reason))?;
        let updated = changes.len() as u64;
        let seq = {
            let schema = write(self.writable_schema()?);
            let entry = schema.get(index).ok_or_else(|| Error::IndexNotFound { name: index.to_owned() })?;
            if entry.embedder.is_some() {
                return Err(Error::DocumentIndex { name: index.to_owned() });
            }
            self.wait_applied(self.log.last_seq())?;
            let current = self.catalog.get_items(index, &ids, false)?;
            let mut items = Vec::with_capacity(changes.len());
            for (i, (change, now)) in changes.into_iter().zip(current).enumerate() {
                let Some(now) = now else {
                    return Err(Error::RecordNotFound {
                        index: index.to_owned(),
                        id: change.id,
                        field: format!("items[{i}].id"),
                    });
                };
                let metadata = resolve_metadata(i, now.metadata.as_deref(), change.metadata, merge)?;
                let partition = match &entry.template {
                    Some(template) => Some(
                        template
                            .resolve(metadata.as_deref())
                            .map_err(|reason| invalid(format!("items[{i}].metadata"), reason))?,
                    ),
                    None => None,
                };
                items.push(MetadataItem { id: change.id, metadata, partition });
            }
            let body = EventBody::MetadataSet(MetadataSet { index: index.to_owned(), items });
            let seq = self.append(actor, body)?;
            drop(schema);
            seq
        };
        if wait == Wait::Durable {
            self.make_durable()?;
        } else {
            self.wait_applied(seq)?;
        }
        Ok(MetadataUpdated { updated, seq })
    }
}

/// A record's new metadata text: `new` itself, or merged into `old` (RFC 7386),
/// checked to be JSON within [`METADATA_BYTES_MAX`].
fn resolve_metadata(
    i: usize,
    old: Option<&str>,
    new: Option<String>,
    merge: bool,
) -> Result<Option<String>, InvalidInput> {
    let field = || format!("items[{i}].metadata");
    // No document, or JSON null: cleared (a null merge patch replaces the target, RFC
    // 7386).
    let Some(new) = new else { return Ok(None) };
    let patch: Value =
        serde_json::from_str(&new).map_err(|e| invalid(field(), format!("is not JSON: {e}")))?;
    if patch.is_null() && !merge {
        return Ok(None);
    }
    let text = if merge {
        let mut doc: Value = old.and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null);
        json_patch::merge(&mut doc, &patch);
        if doc.is_null() {
            return Ok(None);
        }
        doc.to_string()
    } else {
        new
    };
    if text.len() > METADATA_BYTES_MAX {
        return Err(invalid(
            field(),
            format!("is {} bytes, over the limit of {METADATA_BYTES_MAX}", text.len()),
        ));
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_patch_sets_and_removes_keys_and_replace_takes_the_new_document() {
        let old = Some(r#"{"a":1,"b":{"c":2,"d":3}}"#);
        let merged =
            resolve_metadata(0, old, Some(r#"{"a":null,"b":{"c":5},"e":true}"#.into()), true).unwrap();
        let merged: Value = serde_json::from_str(&merged.unwrap()).unwrap();
        assert_eq!(merged, serde_json::json!({"b": {"c": 5, "d": 3}, "e": true}));
        assert_eq!(resolve_metadata(0, old, Some("{}".into()), false).unwrap().as_deref(), Some("{}"));
        assert_eq!(resolve_metadata(0, old, None, false).unwrap(), None);
        assert_eq!(resolve_metadata(3, old, Some("{".into()), true).unwrap_err().field, "items[3].metadata");
    }
}
