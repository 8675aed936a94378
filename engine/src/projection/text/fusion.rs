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
/// The adaptive fusion trusts a keyword hit by its coverage to this power: 1 for a hit
/// holding the whole query, 0.43 for nine tenths of it, 0.17 for four fifths, 0.004
/// for half. Measured on the shared passages (docs/PERFORMANCE.md, "Hybrid search"):
/// exponents 1, 4, 8, 16 and 32 gave paraphrase recall@10 0.59, 0.93, 0.955, 0.959
/// and 0.959 and exact-term recall 1.0 throughout.
pub const COVERAGE_EXPONENT: i32 = 8;

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
    /// Reciprocal rank fusion with each side weighted by how much of the query the
    /// keyword side found: a keyword hit adds `trust / (k + rank)`, a dense hit
    /// `(1 - best) / (k + rank)`, where a keyword hit's trust is its coverage (the
    /// share of the query's words, weighted by inverse document frequency, it holds)
    /// to the power [`COVERAGE_EXPONENT`] and `best` the largest trust among the
    /// keyword hits. A query whose words a document holds
    /// entirely (an identifier, an error code, a rare name) ranks the documents that
    /// hold them first; a query worded unlike any document (a question in the user's
    /// own words, which the keyword side matches only in part) keeps the dense order,
    /// with the documents both sides found ahead.
    Adaptive {
        /// The constant `k` (> 0).
        k: f32,
    },
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion::Adaptive { k: RRF_K_DEFAULT }
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
            Fusion::Rrf { k } | Fusion::Adaptive { k } if !(k.is_finite() && k > 0.0) => {
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
            Fusion::Adaptive { .. } => "adaptive",
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
    /// Its rank (from 1), BM25 score and coverage of the query's words in the keyword
    /// list, if it is in it.
    pub keyword: Option<(usize, f32, f32)>,
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
    /// The weights the sides were given: `(dense, keyword)`; with the adaptive fusion
    /// the keyword side's is its best hit's trust (coverage to the power
    /// [`COVERAGE_EXPONENT`]), the dense side's one minus that.
    pub weights: (f32, f32),
}

/// Min-max normalized `values` (all 1 when they are all equal).
fn normalized(values: &[f32]) -> Vec<f32> {
    let (lo, hi) =
        values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    values.iter().map(|v| if hi > lo { (v - lo) / (hi - lo) } else { 1.0 }).collect()
}

/// Fuse a dense list (nearest first) and a keyword list (best first) into the best
/// `k`, best first; ties go to the better rank on either side, then to the id. Also
/// the weights the sides were given, `(dense, keyword)`.
pub fn fuse(dense: &[Hit], keyword: &[KeywordHit], fusion: Fusion, k: usize) -> (Vec<FusedHit>, (f32, f32)) {
    let mut by_id: HashMap<Arc<str>, FusedHit> = HashMap::new();
    let rrf = |k: f32, n: usize| (1..=n).map(move |r| 1.0 / (k + r as f32));
    let (dense_part, keyword_part, weights): (Vec<f32>, Vec<f32>, (f32, f32)) = match fusion {
        Fusion::Rrf { k } => (rrf(k, dense.len()).collect(), rrf(k, keyword.len()).collect(), (1.0, 1.0)),
        Fusion::Weighted { alpha } => {
            let similarity: Vec<f32> = dense.iter().map(|h| -h.distance).collect();
            let bm25: Vec<f32> = keyword.iter().map(|h| h.score).collect();
            (
                normalized(&similarity).into_iter().map(|s| alpha * s).collect(),
                normalized(&bm25).into_iter().map(|s| (1.0 - alpha) * s).collect(),
                (alpha, 1.0 - alpha),
            )
        }
        Fusion::Adaptive { k } => {
            let trust = |coverage: f32| {
                if coverage.is_finite() {
                    coverage.clamp(0.0, 1.0).powi(COVERAGE_EXPONENT)
                } else {
                    0.0
                }
            };
            let best = keyword.iter().map(|h| trust(h.coverage)).fold(0.0f32, f32::max);
            (
                rrf(k, dense.len()).map(|p| (1.0 - best) * p).collect(),
                rrf(k, keyword.len()).zip(keyword).map(|(p, h)| trust(h.coverage) * p).collect(),
                (1.0 - best, best),
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
        fused.keyword = Some((rank + 1, hit.score, hit.coverage));
    }
    let mut hits: Vec<FusedHit> = by_id.into_values().collect();
    let best_rank =
        |h: &FusedHit| h.dense.map_or(usize::MAX, |d| d.0).min(h.keyword.map_or(usize::MAX, |k| k.0));
    hits.sort_by(|a, b| {
        b.score.total_cmp(&a.score).then(best_rank(a).cmp(&best_rank(b))).then(a.id.cmp(&b.id))
    });
    hits.truncate(k);
    (hits, weights)
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
    let (hits, weights) = fuse(&dense, &keyword, fusion, k);
    Ok(Hybrid { hits, plan, candidates: n, weights })
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

    /// Keyword hits with their BM25 scores and coverage.
    fn keyword(ids: &[(&str, f32, f32)]) -> Vec<KeywordHit> {
        ids.iter()
            .map(|(id, score, coverage)| KeywordHit {
                id: Arc::from(*id),
                score: *score,
                coverage: *coverage,
                metadata: None,
                partition: None,
            })
            .collect()
    }

    fn ids(hits: &[FusedHit]) -> Vec<&str> {
        hits.iter().map(|h| &*h.id).collect()
    }

    fn fused(d: &[Hit], kw: &[KeywordHit], fusion: Fusion, k: usize) -> Vec<FusedHit> {
        fuse(d, kw, fusion, k).0
    }

    const RRF: Fusion = Fusion::Rrf { k: RRF_K_DEFAULT };

    #[test]
    fn rrf_ranks_a_hit_in_both_lists_above_hits_in_one() {
        let d = dense(&["a", "b", "c"]);
        let kw = keyword(&[("c", 9.0, 0.5), ("x", 5.0, 0.5)]);
        let fused = fused(&d, &kw, RRF, 10);
        // b (dense rank 2) and x (keyword rank 2) tie on score and best rank: by id.
        assert_eq!(ids(&fused), ["c", "a", "b", "x"]);
        let c = &fused[0];
        assert_eq!(c.dense, Some((3, d[2].distance)));
        assert_eq!(c.keyword, Some((1, 9.0, 0.5)));
        assert!((c.score - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-7);
    }

    #[test]
    fn weighted_fusion_follows_alpha_from_keyword_only_to_dense_only() {
        let d = dense(&["a", "b"]);
        let kw = keyword(&[("b", 3.0, 1.0), ("a", 1.0, 1.0)]);
        assert_eq!(ids(&fused(&d, &kw, Fusion::Weighted { alpha: 1.0 }, 2)), ["a", "b"]);
        assert_eq!(ids(&fused(&d, &kw, Fusion::Weighted { alpha: 0.0 }, 2)), ["b", "a"]);
    }

    #[test]
    fn adaptive_fusion_ranks_documents_holding_every_query_word_first() {
        // An identifier: the keyword hits hold all of the query (coverage 1), the dense
        // side found passages that do not.
        let d = dense(&["near1", "near2", "near3"]);
        let kw = keyword(&[("holds1", 12.0, 1.0), ("holds2", 9.0, 1.0)]);
        let (hits, weights) = fuse(&d, &kw, Fusion::default(), 4);
        assert_eq!(ids(&hits), ["holds1", "holds2", "near1", "near2"]);
        assert_eq!(weights, (0.0, 1.0));
    }

    #[test]
    fn adaptive_fusion_keeps_the_dense_order_when_the_keyword_side_matched_a_part() {
        // A paraphrase: the best keyword hit holds half of the query's weight.
        let names: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
        let d = dense(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let kw = keyword(&[("x", 4.0, 0.5), ("d9", 3.0, 0.45), ("y", 2.0, 0.3)]);
        let (hits, weights) = fuse(&d, &kw, Fusion::default(), 10);
        assert_eq!(ids(&hits), names.iter().map(String::as_str).collect::<Vec<_>>());
        assert!((weights.1 - 0.5f32.powi(COVERAGE_EXPONENT)).abs() < 1e-6, "{weights:?}");
        assert!((weights.0 + weights.1 - 1.0).abs() < 1e-6, "{weights:?}");
        // The same lists fused by plain RRF let both keyword-only hits in.
        let rrf = fused(&d, &kw, RRF, 10);
        assert!(ids(&rrf).contains(&"x") && ids(&rrf).contains(&"y"));
    }

    #[test]
    fn adaptive_fusion_moves_up_a_dense_hit_holding_most_of_the_query() {
        let names: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
        let d = dense(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let kw = keyword(&[("d9", 5.0, 0.95)]);
        let (hits, _) = fuse(&d, &kw, Fusion::default(), 10);
        assert_eq!(ids(&hits)[..2], ["d9", "d0"]);
    }

    #[test]
    fn fusion_keeps_the_best_k() {
        let d = dense(&["a", "b", "c", "d"]);
        for fusion in [RRF, Fusion::default(), Fusion::Weighted { alpha: 0.5 }] {
            assert_eq!(ids(&fused(&d, &[], fusion, 2)), ["a", "b"]);
        }
    }

    #[test]
    fn bad_fusion_parameters_name_their_field() {
        assert_eq!(Fusion::Rrf { k: 0.0 }.check().unwrap_err().field, "rrf_k");
        assert_eq!(Fusion::Rrf { k: f32::NAN }.check().unwrap_err().field, "rrf_k");
        assert_eq!(Fusion::Adaptive { k: -1.0 }.check().unwrap_err().field, "rrf_k");
        assert_eq!(Fusion::Weighted { alpha: 1.5 }.check().unwrap_err().field, "alpha");
        assert!(Fusion::Weighted { alpha: 0.25 }.check().is_ok());
    }
}
