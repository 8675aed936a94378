//! Hybrid search: a dense (HNSW) list and a keyword (BM25) list for the same text,
//! fused into one ranking, by reciprocal rank fusion or by a weighted sum of the two
//! lists' normalized scores.

use std::collections::HashMap;
use std::sync::Arc;

use super::{KeywordHit, KeywordQuery, TextState};
use crate::error::Error;
use crate::limits::HYBRID_CANDIDATES_MAX;
use crate::projection::vectors::{Catalog, Hit, Plan, Select};
use crate::validate::InvalidInput;

/// The RRF constant of Cormack et al. (and of LanceDB, Qdrant, Elasticsearch).
pub const RRF_K_DEFAULT: f32 = 60.0;
/// The dense side's weight in a weighted fusion when none is given.
pub const ALPHA_DEFAULT: f32 = 0.5;

/// How two ranked lists become one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// Reciprocal rank fusion: `sum of 1 / (k + rank)` over the lists a hit is in
    /// (ranks from 1). Scores are ignored, so the lists need no common scale.
    Rrf {
        /// The constant `k` (> 0): larger flattens the difference between ranks.
        k: f32,
    },
    /// `alpha * dense + (1 - alpha) * keyword`, each side's scores min-max normalized
    /// to [0, 1] over its list (a side a hit is missing from adds 0).
    Weighted {
        /// The dense side's weight, in [0, 1].
        alpha: f32,
    },
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion::Rrf { k: RRF_K_DEFAULT }
    }
}

impl Fusion {
    /// Check the parameters (`field` names the parameter in errors).
    ///
    /// # Errors
    /// [`InvalidInput`] for a `k` that is not a positive finite number or an `alpha`
    /// outside [0, 1].
    pub fn check(&self) -> Result<(), InvalidInput> {
        match *self {
            Fusion::Rrf { k } if !(k.is_finite() && k > 0.0) => {
                Err(InvalidInput { field: "rrf_k".into(), reason: format!("must be a number > 0, got {k}") })
            }
            Fusion::Weighted { alpha } if !(0.0..=1.0).contains(&alpha) => {
                Err(InvalidInput { field: "alpha".into(), reason: format!("must be in [0, 1], got {alpha}") })
            }
            _ => Ok(()),
        }
    }

    /// The API name.
    pub fn name(&self) -> &'static str {
        match self {
            Fusion::Rrf { .. } => "rrf",
            Fusion::Weighted { .. } => "weighted",
        }
    }
}

/// One hit of a hybrid search.
#[derive(Debug, Clone, PartialEq)]
pub struct FusedHit {
    /// The record's id.
    pub id: Arc<str>,
    /// The fused score (larger is better).
    pub score: f32,
    /// Its rank (from 1) and distance in the dense list, if it is in it.
    pub dense: Option<(usize, f32)>,
    /// Its rank (from 1) and BM25 score in the keyword list, if it is in it.
    pub keyword: Option<(usize, f32)>,
    /// Its metadata (JSON text), if any.
    pub metadata: Option<Arc<str>>,
    /// Its partition, if any.
    pub partition: Option<Arc<str>>,
}

/// A hybrid search's answer.
#[derive(Debug, Clone)]
pub struct Hybrid {
    /// The fused hits, best first.
    pub hits: Vec<FusedHit>,
    /// How the dense side was answered.
    pub plan: Plan,
    /// Candidates taken from each side.
    pub candidates: usize,
}

/// Min-max normalized `values` (all 1 when they are all equal).
fn normalized(values: &[f32]) -> Vec<f32> {
    let (lo, hi) =
        values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    values.iter().map(|v| if hi > lo { (v - lo) / (hi - lo) } else { 1.0 }).collect()
}

/// Fuse a dense list (nearest first) and a keyword list (best first) into the best
/// `k`, best first; ties go to the better rank on either side, then to the id.
pub fn fuse(dense: &[Hit], keyword: &[KeywordHit], fusion: Fusion, k: usize) -> Vec<FusedHit> {
    let mut by_id: HashMap<Arc<str>, FusedHit> = HashMap::new();
    let (dense_part, keyword_part): (Vec<f32>, Vec<f32>) = match fusion {
        Fusion::Rrf { k } => (
            (1..=dense.len()).map(|r| 1.0 / (k + r as f32)).collect(),
            (1..=keyword.len()).map(|r| 1.0 / (k + r as f32)).collect(),
        ),
        Fusion::Weighted { alpha } => {
            let similarity: Vec<f32> = dense.iter().map(|h| -h.distance).collect();
            let bm25: Vec<f32> = keyword.iter().map(|h| h.score).collect();
            (
                normalized(&similarity).into_iter().map(|s| alpha * s).collect(),
                normalized(&bm25).into_iter().map(|s| (1.0 - alpha) * s).collect(),
            )
        }
    };
    // A hit's entry, made on its first list (both lists carry the same metadata).
    fn entry<'a>(
        by_id: &'a mut HashMap<Arc<str>, FusedHit>,
        id: &Arc<str>,
        metadata: &Option<Arc<str>>,
        partition: &Option<Arc<str>>,
    ) -> &'a mut FusedHit {
        by_id.entry(Arc::clone(id)).or_insert_with(|| FusedHit {
            id: Arc::clone(id),
            score: 0.0,
            dense: None,
            keyword: None,
            metadata: metadata.clone(),
            partition: partition.clone(),
        })
    }
    for (rank, (hit, part)) in dense.iter().zip(dense_part).enumerate() {
        let fused = entry(&mut by_id, &hit.id, &hit.metadata, &hit.partition);
        fused.score += part;
        fused.dense = Some((rank + 1, hit.distance));
    }
    for (rank, (hit, part)) in keyword.iter().zip(keyword_part).enumerate() {
        let fused = entry(&mut by_id, &hit.id, &hit.metadata, &hit.partition);
        fused.score += part;
        fused.keyword = Some((rank + 1, hit.score));
    }
    let mut hits: Vec<FusedHit> = by_id.into_values().collect();
    let best_rank =
        |h: &FusedHit| h.dense.map_or(usize::MAX, |d| d.0).min(h.keyword.map_or(usize::MAX, |k| k.0));
    hits.sort_by(|a, b| {
        b.score.total_cmp(&a.score).then(best_rank(a).cmp(&best_rank(b))).then(a.id.cmp(&b.id))
    });
    hits.truncate(k);
    hits
}

/// Candidates each side contributes for `k` results: four times `k`, at least 40,
/// at most [`HYBRID_CANDIDATES_MAX`] (and never fewer than `k`).
pub fn candidates_for(k: usize) -> usize {
    k.saturating_mul(4).clamp(40, HYBRID_CANDIDATES_MAX).max(k)
}

/// A hybrid search of `index`: the keyword side for `query`, the dense side for
/// `vector` (the query text's embedding), both within `select`, fused.
///
/// # Errors
/// As [`TextState::keyword`] and a filtered dense search; [`InvalidInput`] for bad
/// fusion parameters or `candidates` out of range.
#[allow(clippy::too_many_arguments)]
pub(crate) fn hybrid(
    catalog: &Catalog,
    text: &TextState,
    index: &str,
    query: &KeywordQuery,
    vector: Vec<f32>,
    k: usize,
    select: &Select,
    fusion: Fusion,
    candidates: Option<usize>,
) -> Result<Hybrid, Error> {
    crate::validate::k(k)?;
    fusion.check()?;
    let n = candidates.unwrap_or_else(|| candidates_for(k));
    if n < k || n > HYBRID_CANDIDATES_MAX {
        return Err(InvalidInput {
            field: "candidates".into(),
            reason: format!("must be from k ({k}) to {HYBRID_CANDIDATES_MAX}, got {n}"),
        }
        .into());
    }
    let keyword = text.keyword(index, "text", query, n, select)?;
    let (mut dense, plan) = catalog.query(index, vec![vector], n, select)?;
    let dense = dense.pop().unwrap_or_default();
    Ok(Hybrid { hits: fuse(&dense, &keyword, fusion, k), plan, candidates: n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense(ids: &[&str]) -> Vec<Hit> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| Hit {
                id: Arc::from(*id),
                distance: i as f32 * 0.1,
                metadata: None,
                partition: None,
            })
            .collect()
    }

    fn keyword(ids: &[(&str, f32)]) -> Vec<KeywordHit> {
        ids.iter()
            .map(|(id, score)| KeywordHit {
                id: Arc::from(*id),
                score: *score,
                metadata: None,
                partition: None,
            })
            .collect()
    }

    fn ids(hits: &[FusedHit]) -> Vec<&str> {
        hits.iter().map(|h| &*h.id).collect()
    }

    #[test]
    fn rrf_ranks_a_hit_in_both_lists_above_hits_in_one() {
        let d = dense(&["a", "b", "c"]);
        let kw = keyword(&[("c", 9.0), ("x", 5.0)]);
        let fused = fuse(&d, &kw, Fusion::default(), 10);
        // b (dense rank 2) and x (keyword rank 2) tie on score and best rank: by id.
        assert_eq!(ids(&fused), ["c", "a", "b", "x"]);
        let c = &fused[0];
        assert_eq!(c.dense, Some((3, d[2].distance)));
        assert_eq!(c.keyword, Some((1, 9.0)));
        assert!((c.score - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-7);
    }

    #[test]
    fn weighted_fusion_follows_alpha_from_keyword_only_to_dense_only() {
        let d = dense(&["a", "b"]);
        let kw = keyword(&[("b", 3.0), ("a", 1.0)]);
        assert_eq!(ids(&fuse(&d, &kw, Fusion::Weighted { alpha: 1.0 }, 2)), ["a", "b"]);
        assert_eq!(ids(&fuse(&d, &kw, Fusion::Weighted { alpha: 0.0 }, 2)), ["b", "a"]);
    }

    #[test]
    fn fusion_keeps_the_best_k() {
        let d = dense(&["a", "b", "c", "d"]);
        assert_eq!(fuse(&d, &[], Fusion::default(), 2).len(), 2);
        assert_eq!(ids(&fuse(&d, &[], Fusion::default(), 2)), ["a", "b"]);
    }

    #[test]
    fn bad_fusion_parameters_name_their_field() {
        assert_eq!(Fusion::Rrf { k: 0.0 }.check().unwrap_err().field, "rrf_k");
        assert_eq!(Fusion::Rrf { k: f32::NAN }.check().unwrap_err().field, "rrf_k");
        assert_eq!(Fusion::Weighted { alpha: 1.5 }.check().unwrap_err().field, "alpha");
        assert!(Fusion::Weighted { alpha: 0.25 }.check().is_ok());
    }
}
