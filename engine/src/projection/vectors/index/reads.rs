//! Reading an index's records out: listings for migrations, trials and replay.
use std::sync::Arc;

use super::super::error::HnswError;
use super::*;

/// One live record of an index, as [`VectorIndex::records`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its id.
    pub id: String,
    /// Its vector as stored (normalised for cosine indexes).
    pub vector: Vec<f32>,
    /// Its metadata as sent.
    pub metadata: Option<String>,
    /// Its partition.
    pub partition: Option<String>,
}

impl VectorIndex {
    /// The live record with `label` (`None`: not live), its vector copied out of FAISS
    /// when `vector` is set.
    pub(crate) fn item(&self, label: i64, vector: bool) -> Result<Option<super::super::Item>, HnswError> {
        let Some(entry) = self.entries.get(&label) else { return Ok(None) };
        let vector = match vector {
            false => None,
            true => match self.hnsw.labels().binary_search(&label) {
                Ok(position) => {
                    let mut out = vec![0f32; self.params.dimension as usize];
                    self.hnsw.copy_vectors(position, &mut out)?;
                    Some(out)
                }
                Err(_) => None,
            },
        };
        Ok(Some(super::super::Item {
            id: Arc::clone(&entry.id),
            vector,
            metadata: entry.metadata.clone(),
            partition: entry.partition.clone(),
        }))
    }

    /// Live records per partition path, sorted by path.
    pub(crate) fn partition_counts(&self) -> Vec<(String, u64)> {
        self.members.iter().map(|(p, set)| (p.to_string(), set.len() as u64)).collect()
    }

    /// The ids of the live records after `after`, unsorted (shared, no copy: the
    /// caller sorts them outside the lock).
    pub(crate) fn ids_after(&self, after: &str) -> Vec<Arc<str>> {
        self.by_id.keys().filter(|id| id.as_ref() > after).cloned().collect()
    }

    /// The metadata and partition of each of `ids` now (`None`: not live).
    /// Metadata comes back as shared text (no copy under the lock).
    #[allow(clippy::type_complexity)]
    pub(crate) fn lookup(&self, ids: &[Arc<str>]) -> Vec<Option<(Option<Arc<str>>, Option<Arc<str>>)>> {
        ids.iter()
            .map(|id| {
                let entry = self.entries.get(self.by_id.get(id.as_ref())?)?;
                Some((entry.metadata.clone(), entry.partition.clone()))
            })
            .collect()
    }

    /// Every live vector in graph order, as ids and one flat array (no per-record
    /// allocation, no sort): what a trial copies.
    pub(crate) fn live_vectors(&self) -> Result<(Vec<String>, Vec<f32>), HnswError> {
        let dim = self.params.dimension as usize;
        let labels = self.hnsw.labels();
        let chunk = (COPY_CHUNK_BYTES / (4 * dim.max(1))).max(1);
        let mut ids = Vec::with_capacity(self.entries.len());
        let mut flat = Vec::with_capacity(self.entries.len() * dim);
        let mut buf = vec![0f32; chunk.min(labels.len()) * dim];
        for start in (0..labels.len()).step_by(chunk) {
            let n = chunk.min(labels.len() - start);
            self.hnsw.copy_vectors(start, &mut buf[..n * dim])?;
            for (i, label) in labels[start..start + n].iter().enumerate() {
                if let Some(entry) = self.entries.get(label) {
                    ids.push(entry.id.to_string());
                    flat.extend_from_slice(&buf[i * dim..(i + 1) * dim]);
                }
            }
        }
        Ok((ids, flat))
    }

    /// Every live record, sorted by id, vectors read from FAISS's storage in chunks.
    pub(crate) fn records(&self) -> Result<Vec<Record>, HnswError> {
        let dim = self.params.dimension as usize;
        let labels = self.hnsw.labels();
        let chunk = (COPY_CHUNK_BYTES / (4 * dim.max(1))).max(1);
        let mut out = Vec::with_capacity(self.entries.len());
        // A chunk, or the whole graph if smaller: not 4 MiB zeroed for a few vectors.
        let mut buf = vec![0f32; chunk.min(labels.len()) * dim];
        for start in (0..labels.len()).step_by(chunk) {
            let n = chunk.min(labels.len() - start);
            self.hnsw.copy_vectors(start, &mut buf[..n * dim])?;
            for (i, label) in labels[start..start + n].iter().enumerate() {
                if let Some(entry) = self.entries.get(label) {
                    out.push(Record {
                        id: entry.id.to_string(),
                        vector: buf[i * dim..(i + 1) * dim].to_vec(),
                        metadata: entry.metadata.as_deref().map(str::to_owned),
                        partition: entry.partition.as_deref().map(str::to_owned),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}
