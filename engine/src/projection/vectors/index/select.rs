//! The filter planner: which live records a partition filter and a metadata filter
//! select (from the payload indexes, evaluating on the metadata only what they cannot
//! answer), and how a search over that selection runs: the whole graph when nothing is
//! filtered out, an exact scan of a small selection (recall 1.0), or the graph with the
//! selection as a FAISS `IDSelector` and a beam widened as the selection narrows.

use std::sync::Arc;

use roaring::RoaringTreemap as Bits;

use super::super::error::HnswError;
use super::*;
use crate::filter::Filter;
use crate::partition::Filter as PartitionFilter;
use crate::validate::InvalidInput;

/// How a filtered search ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Nothing is filtered out: the plain graph search.
    Unfiltered,
    /// Nothing matches: no search.
    Empty,
    /// An exact scan of the matching records' vectors.
    Exact,
    /// The graph, restricted to the matching records inside the search.
    Graph,
}

impl Strategy {
    /// The name `explain` shows.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Unfiltered => "unfiltered",
            Strategy::Empty => "empty",
            Strategy::Exact => "exact",
            Strategy::Graph => "graph",
        }
    }
}

/// The plan of a filtered read, as `explain` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// How the search ran (reads other than searches report [`Strategy::Exact`] when
    /// they walk a selection).
    pub strategy: Strategy,
    /// Live records in the index.
    pub live: u64,
    /// Records the filters select: the planner's cardinality estimate, which is exact
    /// (counted from the payload index bitmaps and, where they could not answer a
    /// condition, from evaluating it on the candidates' metadata).
    pub estimate: u64,
    /// `estimate / live`.
    pub selectivity: f64,
    /// Fields whose payload indexes answered conditions.
    pub indexed: Vec<String>,
    /// Records whose metadata was evaluated (0 when the indexes answered everything).
    pub evaluated: u64,
    /// The graph's `efSearch` (its beam) for this search: the index's for an
    /// unfiltered one, widened as the selection narrows for a filtered one.
    pub ef_search: Option<usize>,
    /// Largest selection searched by an exact scan rather than the graph.
    pub exact_max: usize,
    /// Queries the graph left short of `k` matching records, answered by an exact scan
    /// of the selection instead.
    pub fallback: usize,
}

/// The records a read selects: `None` for every live record.
pub(crate) struct Selection {
    pub(crate) labels: Option<Bits>,
    pub(crate) plan: Plan,
}

impl VectorIndex {
    /// Select the live records in `partition` (if given) matching `filter` (if given).
    ///
    /// # Errors
    /// A condition on a payload-indexed field whose operand cannot be of its type.
    pub(crate) fn select(
        &self,
        partition: Option<&PartitionFilter>,
        filter: Option<&Filter>,
    ) -> Result<Selection, InvalidInput> {
        let live = self.entries.len() as u64;
        let mut labels: Option<Bits> = partition.map(|p| self.members_of(p).into_iter().map(bit).collect());
        let mut evaluated = 0;
        let mut indexed = Vec::new();
        if let Some(filter) = filter {
            for field in filter.fields() {
                if self.payload.get(&field.key).is_some() && !indexed.contains(&field.key) {
                    indexed.push(field.key.clone());
                }
            }
            let resolved = self.payload.resolve(filter)?;
            labels = match (labels, resolved.set) {
                (Some(a), Some(b)) => Some(a & b),
                (a, b) => a.or(b),
            };
            if !resolved.exact {
                let candidates = labels.as_ref().unwrap_or(&self.payload.live);
                evaluated = candidates.len();
                let kept: Bits = candidates
                    .iter()
                    .filter(|&l| {
                        self.entries
                            .get(&label(l))
                            .is_some_and(|e| filter.matches_text(e.metadata.as_deref()))
                    })
                    .collect();
                labels = Some(kept);
            }
        }
        let estimate = labels.as_ref().map_or(live, Bits::len);
        let strategy = match &labels {
            _ if estimate == 0 => Strategy::Empty,
            _ if estimate == live => Strategy::Unfiltered,
            _ if estimate as usize <= FILTER_EXACT_MAX => Strategy::Exact,
            _ if self.graph_cheaper(estimate, live) => Strategy::Graph,
            _ => Strategy::Exact,
        };
        if strategy == Strategy::Unfiltered {
            labels = None;
        }
        let plan = Plan {
            strategy,
            live,
            estimate,
            selectivity: if live == 0 { 0.0 } else { estimate as f64 / live as f64 },
            indexed,
            evaluated,
            ef_search: None,
            exact_max: FILTER_EXACT_MAX,
            fallback: 0,
        };
        Ok(Selection { labels, plan })
    }

    /// The `k` nearest selected records to each query (validated, nq*d floats), by the
    /// selection's plan; the plan comes back with the graph's `k` and the fallback
    /// count filled in.
    pub(crate) fn search_selected(
        &self,
        queries: &[f32],
        k: usize,
        selection: Selection,
    ) -> Result<(Vec<Vec<Hit>>, Plan), HnswError> {
        let Selection { labels, mut plan } = selection;
        let Some(labels) = labels else {
            plan.ef_search = Some(self.params.config.ef_search as usize);
            return Ok((self.search(queries, k)?, plan));
        };
        if self.faulted {
            return Err(HnswError::Faulted { index: self.params.name.clone() });
        }
        let queries = self.prepared(queries);
        if plan.strategy == Strategy::Graph {
            let (hits, ef, fallback) = self.search_graph(&queries, k, &labels)?;
            plan.ef_search = Some(ef);
            plan.fallback = fallback;
            return Ok((hits, plan));
        }
        let dim = self.params.dimension as usize;
        let refs: Vec<&[f32]> = queries.chunks_exact(dim).collect();
        let members: Vec<i64> = labels.iter().map(label).collect();
        let want = k.min(members.len());
        if want == 0 {
            return Ok((vec![Vec::new(); refs.len()], plan));
        }
        Ok((self.exact_among(&refs, want, &members)?, plan))
    }

    /// Whether the graph with a widened beam is expected to cost less than an exact
    /// scan of a selection of `selected` of `live` records (for k = 10).
    /// The share is of the graph's nodes, tombstones included: FAISS walks them all.
    /// A selection whose beam would pass [`crate::limits::HNSW_EF_MAX`] is never given
    /// to the graph (a capped beam is the low recall the widening exists to avoid).
    fn graph_cheaper(&self, selected: u64, _live: u64) -> bool {
        let share = selected as f64 / self.graph_len().max(1) as f64;
        let needed = f64::from(self.params.config.ef_search) / share.max(f64::MIN_POSITIVE);
        if needed > f64::from(crate::limits::HNSW_EF_MAX) {
            return false;
        }
        let ef = filtered_ef(self.params.config.ef_search, share, 10);
        f64::from(ef) * GRAPH_US_PER_EF < selected as f64 * EXACT_US_PER_RECORD
    }

    /// The queries (nq*d floats) as the graph stores vectors: normalised for cosine.
    fn prepared(&self, queries: &[f32]) -> Vec<f32> {
        let dim = self.params.dimension as usize;
        let mut queries = queries.to_vec();
        if self.params.metric == crate::event::Metric::Cosine {
            queries.chunks_exact_mut(dim).for_each(crate::vecmath::normalize);
        }
        queries
    }

    /// The `k` nearest of a large selection for each (prepared) query: the graph
    /// through a bitmap selector built straight from the selection, its beam widened by
    /// [`filtered_ef`]; a query still short of `k` is answered by an exact scan of the
    /// selection. Returns the hits, the `efSearch` used, and how many queries the
    /// exact scan answered.
    fn search_graph(
        &self,
        queries: &[f32],
        k: usize,
        labels: &Bits,
    ) -> Result<(Vec<Vec<Hit>>, usize, usize), HnswError> {
        let selected = labels.len() as usize;
        let want = k.min(selected);
        let bits = selector_bytes(labels, self.live_bits.len());
        let share = selected as f64 / self.graph_len().max(1) as f64;
        let ef = filtered_ef(self.params.config.ef_search, share, want);
        let (distances, found) = self.hnsw.search_with(queries, want, Some(&bits), Some(ef))?;
        let mut fallback = 0;
        let hits = self.graph_hits(queries, &distances, &found, want, want, |short| {
            fallback = short.len();
            let members: Vec<i64> = labels.iter().map(label).collect();
            self.exact_among(short, want, &members)
        })?;
        Ok((hits, ef as usize, fallback))
    }

    /// The live ids of a selection, unsorted.
    pub(crate) fn selected_ids(&self, selection: &Selection) -> Vec<Arc<str>> {
        match &selection.labels {
            None => self.by_id.keys().cloned().collect(),
            Some(labels) => {
                labels.iter().filter_map(|l| self.entries.get(&label(l)).map(|e| Arc::clone(&e.id))).collect()
            }
        }
    }

    /// One page of a selection in id order: the first `limit` ids after `after`
    /// (every id when `None`), with their labels. O(selection) per page, no sort of
    /// the whole selection.
    pub(crate) fn page(
        &self,
        selection: &Selection,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<(Arc<str>, i64)> {
        let keep = |id: &Arc<str>| after.is_none_or(|a| id.as_ref() > a);
        let mut ids: Vec<(Arc<str>, i64)> = match &selection.labels {
            None => {
                self.by_id.iter().filter(|(id, _)| keep(id)).map(|(id, l)| (Arc::clone(id), *l)).collect()
            }
            Some(labels) => labels
                .iter()
                .filter_map(|l| self.entries.get(&label(l)).map(|e| (Arc::clone(&e.id), label(l))))
                .filter(|(id, _)| keep(id))
                .collect(),
        };
        if ids.len() > limit {
            ids.select_nth_unstable_by(limit, |a, b| a.0.cmp(&b.0));
            ids.truncate(limit);
        }
        ids.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        ids
    }

    /// Label of a live id.
    pub(crate) fn label_of(&self, id: &str) -> Option<i64> {
        self.by_id.get(id).copied()
    }
}

/// Roaring's portable format (RoaringFormatSpec): without run containers, and with
/// them (the container count in the cookie's high half).
const COOKIE_NO_RUNS: u32 = 12346;
const COOKIE_RUNS: u32 = 12347;
/// A run-format bitmap of at least this many containers has an offset header.
const OFFSETS_MIN_CONTAINERS: usize = 4;
/// A container of more than this many values is a bitmap of 8 KiB, else an array.
const ARRAY_MAX: usize = 4096;

/// FAISS's selector bitmap of `labels` (bit `l % 8` of byte `l / 8`), `len` bytes:
/// written container by container from roaring's portable format, a bitmap container
/// OR-ed in as its 8 KiB (its words are little-endian, so their bytes are FAISS's), an
/// array container value by value, a run container run by run. Bytes this does not
/// read fall back to iterating.
pub(super) fn selector_bytes(labels: &Bits, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut buf = Vec::new();
    for (hi, bitmap) in labels.bitmaps() {
        let base = u64::from(hi) << 32;
        buf.clear();
        if bitmap.serialize_into(&mut buf).is_err() || !copy_containers(&buf, base, &mut out) {
            for lo in bitmap.iter() {
                set(&mut out, base | u64::from(lo));
            }
        }
    }
    out
}

fn set(out: &mut [u8], bit: u64) {
    if let Some(b) = usize::try_from(bit / 8).ok().and_then(|i| out.get_mut(i)) {
        *b |= 1u8 << (bit % 8);
    }
}

/// One container of a serialized bitmap: its first value and where its bytes are.
enum Span {
    Bitmap(u64, usize),
    Array(u64, usize, usize),
    Runs(u64, usize, usize),
}

/// Copy the containers of one serialized `RoaringBitmap` (values `base + v`) into
/// `out`; false, leaving `out` as it was, when the bytes do not parse.
fn copy_containers(buf: &[u8], base: u64, out: &mut [u8]) -> bool {
    let u16_at = |at: usize| buf.get(at..at + 2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])));
    let u32_at = |at: usize| buf.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let Some(cookie) = u32_at(0) else { return false };
    let (n, runs_at, mut at) = if cookie == COOKIE_NO_RUNS {
        let Some(n) = u32_at(4) else { return false };
        (n as usize, None, 8)
    } else if cookie & 0xFFFF == COOKIE_RUNS {
        let n = (cookie >> 16) as usize + 1;
        (n, Some(4), 4 + n.div_ceil(8))
    } else {
        return false;
    };
    let is_run =
        |i: usize| runs_at.is_some_and(|r| buf.get(r + i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0));
    let headers = at;
    at += 4 * n;
    if runs_at.is_none() || n >= OFFSETS_MIN_CONTAINERS {
        at += 4 * n;
    }
    // Every container's place first, so that bytes that do not parse change nothing.
    let mut spans = Vec::with_capacity(n);
    for i in 0..n {
        let (Some(key), Some(card)) = (u16_at(headers + 4 * i), u16_at(headers + 4 * i + 2)) else {
            return false;
        };
        let start = base + ((key as u64) << 16);
        let span = if is_run(i) {
            let Some(count) = u16_at(at) else { return false };
            let span = Span::Runs(start, at + 2, count);
            at += 2 + 4 * count;
            span
        } else if card + 1 > ARRAY_MAX {
            let span = Span::Bitmap(start, at);
            at += 8192;
            span
        } else {
            let span = Span::Array(start, at, card + 1);
            at += 2 * (card + 1);
            span
        };
        if at > buf.len() {
            return false;
        }
        spans.push(span);
    }
    for span in spans {
        match span {
            Span::Bitmap(start, from) => {
                let Ok(first) = usize::try_from(start / 8) else { continue };
                if let Some(dst) = out.get_mut(first..) {
                    for (d, s) in dst.iter_mut().zip(&buf[from..from + 8192]) {
                        *d |= s;
                    }
                }
            }
            Span::Array(start, from, count) => {
                for v in buf[from..from + 2 * count].chunks_exact(2) {
                    set(out, start + u64::from(u16::from_le_bytes([v[0], v[1]])));
                }
            }
            Span::Runs(start, from, count) => {
                for run in buf[from..from + 4 * count].chunks_exact(4) {
                    let first = u64::from(u16::from_le_bytes([run[0], run[1]]));
                    let len = u64::from(u16::from_le_bytes([run[2], run[3]]));
                    for v in first..=first + len {
                        set(out, start + v);
                    }
                }
            }
        }
    }
    true
}

fn bit(label: i64) -> u64 {
    u64::try_from(label).unwrap_or(0)
}

fn label(bit: u64) -> i64 {
    i64::try_from(bit).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(labels: &Bits, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        for l in labels.iter() {
            set(&mut out, l);
        }
        out
    }

    #[test]
    fn the_selector_bitmap_from_containers_equals_setting_each_bit() {
        // Dense and sparse containers, sets made by unions, intersections and
        // differences, and one straddling a 2^16 boundary.
        let dense: Bits = (0..150_000).filter(|i| i % 3 != 0).collect();
        let sparse: Bits = (0..300_000).step_by(97).collect();
        let run: Bits = (65_000..70_000).collect();
        let mut optimized = &dense | &run;
        optimized.insert_range(200_000..260_000);
        optimized.optimize();
        let mut bytes = Vec::new();
        optimized.bitmaps().next().unwrap().1.serialize_into(&mut bytes).unwrap();
        assert_eq!(u32::from_le_bytes(bytes[..4].try_into().unwrap()) & 0xFFFF, COOKIE_RUNS);
        let len = 300_000 / 8 + 1;
        for set in [
            dense.clone(),
            sparse.clone(),
            run.clone(),
            &dense | &sparse,
            &dense & &sparse,
            &dense - &run,
            optimized,
            (0..20).map(|i| i * 65_536 + 7).collect(),
            Bits::new(),
            [5u64, (1 << 32) + 3].into_iter().collect(),
        ] {
            assert_eq!(selector_bytes(&set, len), naive(&set, len), "{} labels", set.len());
        }
        // A buffer that is not the no-run format changes nothing.
        let mut out = vec![0u8; 8];
        assert!(!copy_containers(&[1, 2, 3], 0, &mut out));
        assert!(out.iter().all(|b| *b == 0));
    }
}
