//! The full-text projection: a BM25 index (tantivy) of each text-indexed document
//! index, kept by the events that change its documents: `TextIndexCreated` (built from
//! the documents live at that event), `DocumentsUpserted`, `VectorsDeleted`,
//! `MetadataSet` (the indexed metadata fields and filters follow), `MigrationBatch`
//! (partitions) and `IndexDropped`. Applied after the documents projection, whose
//! texts it reads for metadata changes.
//!
//! Its snapshot section holds each index's tantivy files and rows (docs/FORMAT.md,
//! "`text` section"): opening from them is faster than re-indexing the documents
//! (docs/PERFORMANCE.md, "Full-text projection: open").

mod error;
pub(crate) mod fusion;
mod index;
pub(crate) mod query;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;

pub use error::TextError;
pub use fusion::{FusedHit, Fusion, Hybrid, ALPHA_DEFAULT, RRF_K_DEFAULT};
pub use index::{language, KeywordHit, LANGUAGES, TEXT_FIELD};
pub(crate) use index::{Admit, Captured, Row, TextIndex};
pub use query::KeywordQuery;

use super::documents::DocumentState;
use super::{ApplyError, Outcome, Projection, SnapshotError};
use crate::codec::{Dec, DecodeError, Enc};
use crate::event::{Event, EventBody, TextIndexCreated, TextTokenizer};

/// The full-text projection (see the module documentation).
pub(crate) struct TextState {
    indexes: RwLock<BTreeMap<String, Arc<TextIndex>>>,
    documents: Arc<DocumentState>,
}

impl TextState {
    pub(crate) fn new(documents: Arc<DocumentState>) -> Self {
        Self { indexes: RwLock::new(BTreeMap::new()), documents }
    }

    /// The text index of `index`, if it has one.
    pub(crate) fn get(&self, index: &str) -> Option<Arc<TextIndex>> {
        self.indexes.read().get(index).cloned()
    }

    fn build(&self, created: &TextIndexCreated) -> Result<TextIndex, TextError> {
        let text = TextIndex::new(created.clone())?;
        for (id, body, metadata, partition) in self.documents.documents_of(&created.index) {
            text.upsert(&id, &body, metadata.as_deref(), partition.as_deref())?;
        }
        Ok(text)
    }
}

impl From<TextError> for ApplyError {
    fn from(e: TextError) -> Self {
        ApplyError::Text(e)
    }
}

impl Projection for TextState {
    fn name(&self) -> &'static str {
        "text"
    }

    fn apply(&self, _seq: u64, event: &Event) -> Result<Outcome, ApplyError> {
        let mut outcome = Outcome::default();
        match &event.body {
            EventBody::TextIndexCreated(created) => {
                if self.get(&created.index).is_some() || self.documents.embedder(&created.index).is_none() {
                    outcome.rejected = 1;
                } else {
                    let built = self.build(created)?;
                    self.indexes.write().insert(created.index.clone(), Arc::new(built));
                }
            }
            EventBody::IndexDropped(dropped) => {
                self.indexes.write().remove(&dropped.name);
            }
            EventBody::DocumentsUpserted(upsert) => {
                if let Some(text) = self.get(&upsert.index) {
                    for item in &upsert.items {
                        text.upsert(
                            &item.id,
                            &item.text,
                            item.metadata.as_deref(),
                            item.partition.as_deref(),
                        )?;
                    }
                }
            }
            EventBody::VectorsDeleted(delete) => {
                if let Some(text) = self.get(&delete.index) {
                    for id in &delete.ids {
                        text.delete(id);
                    }
                }
            }
            EventBody::MetadataSet(set) => {
                if let Some(text) = self.get(&set.index) {
                    for item in &set.items {
                        let Some(body) = self.documents.text(&set.index, &item.id) else { continue };
                        text.set_metadata(
                            &item.id,
                            &body,
                            item.metadata.as_deref(),
                            item.partition.as_deref(),
                        )?;
                    }
                }
            }
            EventBody::MigrationBatch(batch) => {
                if let Some(text) = self.get(&batch.index) {
                    for m in &batch.moves {
                        text.move_record(&m.id, &m.from, &m.to);
                    }
                }
            }
            _ => {}
        }
        Ok(outcome)
    }

    /// Text indexes by name: `count u64`, then per index its configuration, rows and
    /// tantivy files (docs/FORMAT.md, "`text` section").
    fn write_snapshot(&self, _seq: u64, out: &mut dyn std::io::Write) -> Result<(), SnapshotError> {
        let indexes: Vec<(String, Arc<TextIndex>)> =
            self.indexes.read().iter().map(|(n, t)| (n.clone(), Arc::clone(t))).collect();
        let mut e = Enc::default();
        e.u64(indexes.len() as u64);
        for (name, text) in &indexes {
            e.str(name);
            write_config(&mut e, text.config());
            let captured =
                text.capture().map_err(|source| SnapshotError::Text { index: name.clone(), source })?;
            e.u64(captured.next_key);
            e.u64(captured.rows.len() as u64);
            for (key, row) in &captured.rows {
                e.u64(*key);
                e.str(&row.id);
                e.opt_str(row.metadata.as_deref());
                e.opt_str(row.partition.as_deref());
            }
            e.u64(captured.files.len() as u64);
            for (path, bytes) in &captured.files {
                e.str(&path.to_string_lossy());
                e.bytes(bytes);
            }
        }
        out.write_all(&e.buf)?;
        Ok(())
    }

    /// The configurations only: what is indexed follows from them and the documents
    /// (which the digest has); tantivy's files depend on how commits and merges fell.
    fn write_state(&self, _seq: u64, out: &mut dyn std::io::Write) -> Result<(), SnapshotError> {
        let indexes = self.indexes.read();
        let mut e = Enc::default();
        e.u64(indexes.len() as u64);
        for (name, text) in indexes.iter() {
            e.str(name);
            write_config(&mut e, text.config());
        }
        out.write_all(&e.buf)?;
        Ok(())
    }

    fn restore_snapshot(&self, _seq: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        let corrupt = |source| SnapshotError::Corrupt { projection: "text", source };
        let mut d = Dec::new(bytes);
        let n = d.count(8).map_err(corrupt)?;
        let mut restored = BTreeMap::new();
        for _ in 0..n {
            let name = d.str().map_err(corrupt)?.to_owned();
            let config = read_config(&mut d, &name).map_err(corrupt)?;
            let next_key = d.u64().map_err(corrupt)?;
            let rows_n = d.count(8 + 8 + 1 + 1).map_err(corrupt)?;
            let mut rows = Vec::with_capacity(rows_n);
            for _ in 0..rows_n {
                let key = d.u64().map_err(corrupt)?;
                let id: Arc<str> = Arc::from(d.str().map_err(corrupt)?);
                let metadata = d.opt_str().map_err(corrupt)?;
                let partition = d.opt_str().map_err(corrupt)?;
                let parsed = metadata.and_then(|m| serde_json::from_str(m).ok()).map(Arc::new);
                let row = Row {
                    id,
                    metadata: metadata.map(Arc::from),
                    parsed,
                    partition: partition.map(Arc::from),
                };
                rows.push((key, row));
            }
            let files_n = d.count(8 + 8).map_err(corrupt)?;
            let mut files = Vec::with_capacity(files_n);
            for _ in 0..files_n {
                let path = PathBuf::from(d.str().map_err(corrupt)?);
                files.push((path, d.bytes().map_err(corrupt)?.to_vec()));
            }
            let captured = Captured { files, rows, next_key };
            let text = TextIndex::restore(config, captured)
                .map_err(|source| SnapshotError::Text { index: name.clone(), source })?;
            restored.insert(name, Arc::new(text));
        }
        d.finish().map_err(corrupt)?;
        *self.indexes.write() = restored;
        Ok(())
    }
}

fn write_config(e: &mut Enc, config: &TextIndexCreated) {
    e.u8(match config.tokenizer {
        TextTokenizer::Simple => 0,
        TextTokenizer::Whitespace => 1,
    });
    e.opt_str(config.stemmer.as_deref());
    e.u64(config.fields.len() as u64);
    for f in &config.fields {
        e.str(f);
    }
}

fn read_config(d: &mut Dec<'_>, index: &str) -> Result<TextIndexCreated, DecodeError> {
    let tokenizer = match d.u8()? {
        0 => TextTokenizer::Simple,
        1 => TextTokenizer::Whitespace,
        other => return Err(d.error(format!("tokenizer {other} is not one this version knows"))),
    };
    let stemmer = d.opt_str()?.map(str::to_owned);
    let n = d.count(8)?;
    let mut fields = Vec::with_capacity(n);
    for _ in 0..n {
        fields.push(d.str()?.to_owned());
    }
    Ok(TextIndexCreated { index: index.to_owned(), tokenizer, stemmer, fields })
}
