//! An index's snapshot section (layout in docs/FORMAT.md).

use super::super::hnsw::Hnsw;
use super::*;
use crate::codec::{Dec, DecodeError, Enc};
use crate::event::{HnswConfig, Metric};
use crate::projection::SnapshotError;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

fn metric_tag(metric: Metric) -> u8 {
    match metric {
        Metric::L2 => 0,
        Metric::Cosine => 1,
        Metric::Ip => 2,
    }
}

fn write_config(e: &mut Enc, c: HnswConfig) {
    crate::codec::write_config(e, &c);
}

fn read_config(d: &mut Dec<'_>) -> Result<HnswConfig, DecodeError> {
    crate::codec::read_config(d)
}

impl VectorIndex {
    /// Write this index's state to a snapshot section (layout in docs/FORMAT.md): its
    /// parameters and configurations, the label map with metadata and partitions, the
    /// live bitmap (tombstones are the graph's labels not in it), and the FAISS index as
    /// FAISS serializes it.
    pub(crate) fn write_snapshot(&self, e: &mut Enc) -> Result<(), SnapshotError> {
        if self.faulted {
            return Err(SnapshotError::Faulted { index: self.params.name.clone() });
        }
        e.str(&self.params.name);
        e.u32(self.params.dimension);
        e.u8(metric_tag(self.params.metric));
        write_config(e, self.created);
        e.u64(self.promotions.len() as u64);
        for c in &self.promotions {
            write_config(e, *c);
        }
        write_config(e, self.hnsw.config());
        e.i64(self.next_label);
        match &self.quantizer {
            None => e.u8(0),
            Some(q) => {
                e.u8(1);
                write_config(e, HnswConfig { m: q.m, ef_construction: 0, ef_search: 0, storage: q.storage });
                e.bytes(&q.bytes);
            }
        }
        let mut labels: Vec<i64> = self.entries.keys().copied().collect();
        labels.sort_unstable();
        e.u64(labels.len() as u64);
        for label in labels {
            let entry = &self.entries[&label];
            e.i64(label);
            e.str(&entry.id);
            e.opt_str(entry.metadata.as_deref());
            e.opt_str(entry.partition.as_deref());
        }
        e.bytes(&self.live_bits);
        Ok(())
    }

    /// The FAISS part of [`VectorIndex::write_snapshot`], written straight to `out` after
    /// the rest (the graph is most of the bytes: no copy through the encoder).
    pub(crate) fn write_faiss(&self, out: &mut dyn std::io::Write) -> Result<(), SnapshotError> {
        let faiss = self.hnsw.to_bytes()?;
        out.write_all(&(faiss.len() as u64).to_le_bytes())?;
        out.write_all(&faiss)?;
        Ok(())
    }

    /// The full vectors of a quantized graph (`bytes`, empty for a flat graph), written
    /// straight to `out` after [`VectorIndex::write_faiss`].
    pub(crate) fn write_full(&self, out: &mut dyn std::io::Write) -> Result<(), SnapshotError> {
        out.write_all(&self.hnsw.full_bytes().to_le_bytes())?;
        self.hnsw.write_full(out)?;
        Ok(())
    }

    /// The entries and live bitmap of a snapshot section, `d` at the entry count.
    #[allow(clippy::type_complexity)]
    fn read_entries(
        d: &mut Dec<'_>,
        next_label: i64,
    ) -> Result<(HashMap<i64, Entry>, HashMap<Arc<str>, i64>, Vec<u8>), SnapshotError> {
        let corrupt = |source| SnapshotError::Corrupt { projection: "vectors", source };
        let n = d.count(8 + 8 + 1 + 1).map_err(corrupt)?;
        let mut entries = HashMap::with_capacity(n);
        let mut by_id = HashMap::with_capacity(n);
        for _ in 0..n {
            let label = d.i64().map_err(corrupt)?;
            let id: Arc<str> = Arc::from(d.str().map_err(corrupt)?);
            let metadata = d.opt_str().map_err(corrupt)?.map(Arc::from);
            let partition = d.opt_str().map_err(corrupt)?.map(Arc::from);
            if label < 0 || label >= next_label || by_id.insert(Arc::clone(&id), label).is_some() {
                return Err(corrupt(
                    d.error(format!("entry {id:?} with label {label} is out of range or repeated")),
                ));
            }
            entries.insert(label, Entry { id, metadata, partition });
        }
        let live_bits = d.bytes().map_err(corrupt)?.to_vec();
        Ok((entries, by_id, live_bits))
    }

    /// Read an index written by [`VectorIndex::write_snapshot`].
    pub(crate) fn read_snapshot(d: &mut Dec<'_>) -> Result<Self, SnapshotError> {
        let corrupt = |source| SnapshotError::Corrupt { projection: "vectors", source };
        let name = d.str().map_err(corrupt)?.to_owned();
        let dimension = d.u32().map_err(corrupt)?;
        let metric = match d.u8().map_err(corrupt)? {
            0 => Metric::L2,
            1 => Metric::Cosine,
            2 => Metric::Ip,
            tag => return Err(corrupt(d.error(format!("metric tag {tag}")))),
        };
        let created = read_config(d).map_err(corrupt)?;
        let n = d.count(12).map_err(corrupt)?;
        let promotions = (0..n).map(|_| read_config(d)).collect::<Result<Vec<_>, _>>().map_err(corrupt)?;
        let built = read_config(d).map_err(corrupt)?;
        let next_label = d.i64().map_err(corrupt)?;
        let quantizer = match d.u8().map_err(corrupt)? {
            0 => None,
            1 => {
                let c = read_config(d).map_err(corrupt)?;
                let bytes: Arc<[u8]> = d.bytes().map_err(corrupt)?.into();
                Some(Quantizer { m: c.m, storage: c.storage, bytes })
            }
            tag => return Err(corrupt(d.error(format!("quantizer tag {tag}")))),
        };
        // A section that passed its CRC may still come from another writer: what the
        // engine would refuse from a caller it refuses here too.
        let valid = |c: &HnswConfig| {
            crate::validate::config(c).and_then(|()| crate::validate::storage(c, dimension, metric))
        };
        let checked = crate::validate::dimension(dimension)
            .and_then(|()| valid(&created))
            .and_then(|()| valid(&built))
            .and_then(|()| promotions.iter().try_for_each(valid));
        if let Err(invalid) = checked {
            return Err(corrupt(d.error(format!("index {name:?}: {invalid}"))));
        }
        // The quantizer is read as what its config says before any graph is built from
        // it (its shape, codes, metric, trained and empty).
        if let Some(q) = &quantizer {
            let config = HnswConfig { m: q.m, storage: q.storage, ..HnswConfig::default() };
            let checked = valid(&config).map_err(|invalid| invalid.to_string()).and_then(|()| {
                super::super::hnsw::read_quantizer(&q.bytes, dimension, metric, q.storage)
                    .map(drop)
                    .map_err(|error| crate::chain::chain(&error))
            });
            if let Err(problem) = checked {
                return Err(corrupt(d.error(format!("index {name:?}: quantizer: {problem}"))));
            }
        }
        if promotions.len() > PROMOTIONS_MAX {
            return Err(corrupt(d.error(format!("index {name:?}: {} promotions", promotions.len()))));
        }
        // The graph comes after the entries: find it with a walk over their lengths,
        // and let FAISS read it on a second thread while this one builds the id maps
        // (the two largest costs of a restore, overlapped).
        let faiss = {
            let mut skip = d.clone();
            let n = skip.count(8 + 8 + 1 + 1).map_err(corrupt)?;
            for _ in 0..n {
                skip.i64().map_err(corrupt)?;
                skip.str().map_err(corrupt)?;
                skip.opt_str().map_err(corrupt)?;
                skip.opt_str().map_err(corrupt)?;
            }
            skip.bytes().map_err(corrupt)?; // live bitmap
            (skip.bytes().map_err(corrupt)?, skip.bytes().map_err(corrupt)?)
        };
        let (faiss, full) = faiss;
        let (hnsw, entries, by_id, live_bits) = std::thread::scope(|scope| {
            let reading = scope.spawn(|| Hnsw::from_bytes(faiss, dimension, metric, built, full));
            let maps = Self::read_entries(d, next_label);
            let hnsw = match reading.join() {
                Ok(read) => read,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            maps.map(|(entries, by_id, live_bits)| (hnsw, entries, by_id, live_bits))
        })?;
        let hnsw = hnsw?;
        d.bytes().map_err(corrupt)?; // the graph, read above
        d.bytes().map_err(corrupt)?; // its full vectors, read with it
        let labels = hnsw.labels();
        if labels.last().is_some_and(|l| *l >= next_label) {
            return Err(corrupt(
                d.error(format!("index {name:?}: a graph label is at or past {next_label}")),
            ));
        }
        let is_live = |label: i64| {
            let (byte, bit) = ((label / 8) as usize, label % 8);
            live_bits.get(byte).is_some_and(|b| b & (1 << bit) != 0)
        };
        if let Some(label) = entries.keys().find(|l| labels.binary_search(l).is_err() || !is_live(**l)) {
            return Err(corrupt(
                d.error(format!("index {name:?}: entry label {label} is not a live graph label")),
            ));
        }
        let config = promotions.last().copied().unwrap_or(created);
        let mut members: BTreeMap<Arc<str>, HashSet<i64>> = BTreeMap::new();
        for (&label, entry) in &entries {
            if let Some(p) = &entry.partition {
                members.entry(Arc::clone(p)).or_default().insert(label);
            }
        }
        let mut payload = super::payload::Payload::default();
        for &label in entries.keys() {
            payload.live.insert(u64::try_from(label).unwrap_or(0));
        }
        let mut index = Self {
            work: Arc::default(),
            payload,
            members,
            params: IndexParams { name, dimension, metric, config },
            hnsw,
            by_id,
            entries,
            live_bits,
            next_label,
            rebuild_pending: false,
            staging: None,
            created,
            promotions,
            faulted: false,
            quantizer,
        };
        if index.hnsw.config().ef_search != config.ef_search {
            index.hnsw.set_ef_search(config.ef_search)?;
        }
        index.hnsw.set_refine(config.storage.refine);
        Ok(index)
    }
}
