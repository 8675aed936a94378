//! The command-side schema: which indexes exist, with their dimension and metric, as of
//! the last *appended* event. Writes are validated against it, not against the
//! projections, so no write waits for the projector to catch up before it is appended
//! (a create while a large upsert is being applied does not hold up writes to other
//! indexes).
//!
//! It is built once from the vector projection when replay at open has caught up with
//! the log (no write is accepted before), and from then on changed only by create and
//! drop, under its write lock, together with their append: so its state is always the
//! state of the log, whatever the projector has applied so far.

use std::collections::HashMap;

use std::sync::Arc;

use crate::event::Metric;
use crate::partition::Template;

/// What validation needs to know of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaEntry {
    pub(crate) dimension: u32,
    pub(crate) metric: Metric,
    /// The partition template new records resolve under (a running migration's, else
    /// the scheme's), if the index has a scheme.
    pub(crate) template: Option<Arc<Template>>,
    /// Which incarnation of the name this is: a drop and a create of the same name
    /// give a new one (process-local; a migration checks it did not change).
    pub(crate) generation: u64,
    /// The embedder model of a document index (which takes documents, not vectors).
    pub(crate) embedder: Option<String>,
}

/// Every index of the log, by name.
#[derive(Debug, Default)]
pub(crate) struct Schema {
    indexes: HashMap<String, SchemaEntry>,
}

impl Schema {
    pub(crate) fn get(&self, name: &str) -> Option<SchemaEntry> {
        self.indexes.get(name).cloned()
    }

    /// Set the template writes to `name` resolve under.
    pub(crate) fn set_template(&mut self, name: &str, template: Option<Arc<Template>>) {
        if let Some(entry) = self.indexes.get_mut(name) {
            entry.template = template;
        }
    }

    /// Set the embedder model of a document index.
    pub(crate) fn set_embedder(&mut self, name: &str, model: Option<String>) {
        if let Some(entry) = self.indexes.get_mut(name) {
            entry.embedder = model;
        }
    }

    pub(crate) fn insert(&mut self, name: &str, entry: SchemaEntry) {
        self.indexes.insert(name.to_owned(), entry);
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.indexes.remove(name);
    }
}

impl FromIterator<(String, SchemaEntry)> for Schema {
    fn from_iter<I: IntoIterator<Item = (String, SchemaEntry)>>(iter: I) -> Self {
        Self { indexes: iter.into_iter().collect() }
    }
}
