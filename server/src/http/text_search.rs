//! Keyword (BM25) and hybrid search, the `mode`s of `POST .../search` beside the
//! default `semantic`: which fields each mode takes, the engine call, and the hits'
//! shape (`score`, and with `scores` each side's rank and score).

use std::sync::Arc;

use annal_engine::{Engine, Fusion, KeywordQuery, Select, ALPHA_DEFAULT, RRF_K_DEFAULT};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::error::ApiError;
use super::exec::{blocking, raw_metadata};

/// How a search ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// By the embedding (or the vector given): the default.
    Semantic,
    /// By BM25 over the documents' text.
    Keyword,
    /// Both, fused.
    Hybrid,
}

impl Mode {
    pub(crate) fn parse(mode: Option<&str>) -> Result<Self, ApiError> {
        match mode {
            None | Some("semantic") => Ok(Mode::Semantic),
            Some("keyword") => Ok(Mode::Keyword),
            Some("hybrid") => Ok(Mode::Hybrid),
            Some(other) => Err(ApiError::bad_request(format!(
                "mode: unknown mode {other:?} (use semantic, keyword or hybrid)"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Semantic => "semantic",
            Mode::Keyword => "keyword",
            Mode::Hybrid => "hybrid",
        }
    }
}

/// The text-search fields of a search body.
pub(crate) struct TextFields {
    pub(crate) fusion: Option<String>,
    pub(crate) rrf_k: Option<f32>,
    pub(crate) alpha: Option<f32>,
    pub(crate) candidates: Option<usize>,
    pub(crate) scores: Option<bool>,
    pub(crate) syntax: Option<bool>,
}

impl TextFields {
    /// Refuse a field the mode does not take, naming it.
    pub(crate) fn check_for(&self, mode: Mode) -> Result<(), ApiError> {
        let only = |field: &str, what: &str| {
            Err(ApiError::bad_request(format!(
                "{field}: only {what} (this search's mode is {})",
                mode.name()
            )))
        };
        if mode != Mode::Hybrid {
            for (field, given) in [
                ("fusion", self.fusion.is_some()),
                ("rrf_k", self.rrf_k.is_some()),
                ("alpha", self.alpha.is_some()),
                ("candidates", self.candidates.is_some()),
                ("scores", self.scores.is_some()),
            ] {
                if given {
                    return only(field, "with mode hybrid");
                }
            }
        }
        if mode == Mode::Semantic && self.syntax.is_some() {
            return only("syntax", "with mode keyword or hybrid");
        }
        Ok(())
    }

    /// The fusion of a hybrid search.
    fn fusion(&self) -> Result<Fusion, ApiError> {
        match self.fusion.as_deref() {
            None | Some("adaptive") | Some("rrf") => {
                if self.alpha.is_some() {
                    return Err(ApiError::bad_request("alpha: only with fusion weighted"));
                }
                let k = self.rrf_k.unwrap_or(RRF_K_DEFAULT);
                Ok(if self.fusion.as_deref() == Some("rrf") {
                    Fusion::Rrf { k }
                } else {
                    Fusion::Adaptive { k }
                })
            }
            Some("weighted") => {
                if self.rrf_k.is_some() {
                    return Err(ApiError::bad_request("rrf_k: only with fusion rrf or adaptive"));
                }
                Ok(Fusion::Weighted { alpha: self.alpha.unwrap_or(ALPHA_DEFAULT) })
            }
            Some(other) => Err(ApiError::bad_request(format!(
                "fusion: unknown fusion {other:?} (use adaptive, rrf or weighted)"
            ))),
        }
    }
}

/// One keyword or hybrid hit.
#[derive(Serialize)]
struct TextHit<'a> {
    id: &'a str,
    /// BM25 (keyword) or the fused score (hybrid): larger is better.
    score: f32,
    /// Keyword: the share of the query's words (weighted by inverse document frequency)
    /// the document holds, 0 to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    coverage: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    /// With `scores`: the dense side's rank (from 1) and distance, null if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    dense: Option<Value>,
    /// With `scores`: the keyword side's rank (from 1), BM25 score and coverage, null
    /// if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    keyword: Option<Value>,
}

#[derive(Serialize)]
struct TextResults<'a> {
    results: Vec<TextHit<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    explain: Option<Value>,
}

/// A hit of either mode, before shaping.
struct Found {
    id: Arc<str>,
    score: f32,
    metadata: Option<Arc<str>>,
    partition: Option<Arc<str>>,
    text: Option<Arc<str>>,
    /// Keyword: the hit's coverage of the query.
    coverage: Option<f32>,
    /// Hybrid: the dense side's (rank, distance) and the keyword side's (rank, score,
    /// coverage).
    sides: Option<(Side, KeywordSide)>,
}

/// A hit's rank (from 1), BM25 score and coverage on the keyword side of a hybrid
/// search.
type KeywordSide = Option<(usize, f32, f32)>;

/// A hit's rank (from 1) and distance or score on one side of a hybrid search.
type Side = Option<(usize, f32)>;

/// Run a keyword or hybrid search of `index` for `text`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    engine: Arc<Engine>,
    index: String,
    mode: Mode,
    text: String,
    k: usize,
    select: Select,
    fields: TextFields,
    as_of: Option<u64>,
    explain: bool,
) -> Result<Response, ApiError> {
    let query = KeywordQuery { text, syntax: fields.syntax.unwrap_or(false) };
    let fusion = if mode == Mode::Hybrid { Some(fields.fusion()?) } else { None };
    let with_scores = fields.scores.unwrap_or(false);
    let candidates = fields.candidates;
    let (found, explained) = blocking(move || {
        let view = as_of.map(|seq| engine.view_at(seq)).transpose()?;
        let mut explained = json!({"mode": mode.name()});
        let mut found: Vec<Found> = match fusion {
            None => {
                let hits = match &view {
                    Some(view) => view.keyword(&index, &query, k, &select)?,
                    None => engine.keyword(&index, &query, k, &select)?,
                };
                hits.into_iter()
                    .map(|h| Found {
                        id: h.id,
                        score: h.score,
                        metadata: h.metadata,
                        partition: h.partition,
                        text: None,
                        coverage: Some(h.coverage),
                        sides: None,
                    })
                    .collect()
            }
            Some(fusion) => {
                let hybrid = match &view {
                    Some(view) => {
                        // The keyword side's checks first, then the embedding.
                        view.keyword(&index, &query, 1, &select)?;
                        let vector =
                            engine.embed_queries(&index, &[query.text.as_str()])?.pop().unwrap_or_default();
                        view.hybrid(&index, &query, vector, k, &select, fusion, candidates)?
                    }
                    None => engine.hybrid(&index, &query, k, &select, fusion, candidates)?,
                };
                explained["fusion"] = fusion.name().into();
                match fusion {
                    Fusion::Rrf { k } | Fusion::Adaptive { k } => explained["rrf_k"] = k.into(),
                    Fusion::Weighted { alpha } => explained["alpha"] = alpha.into(),
                }
                explained["weights"] = json!({"dense": hybrid.weights.0, "keyword": hybrid.weights.1});
                explained["candidates"] = hybrid.candidates.into();
                explained["dense"] = super::filter_body::plan_json(&hybrid.plan);
                hybrid
                    .hits
                    .into_iter()
                    .map(|h| Found {
                        id: h.id,
                        score: h.score,
                        metadata: h.metadata,
                        partition: h.partition,
                        text: None,
                        coverage: None,
                        sides: Some((h.dense, h.keyword)),
                    })
                    .collect()
            }
        };
        // A document's current text beside its hit (not for a past state).
        if as_of.is_none() {
            for f in &mut found {
                f.text = engine.document_text(&index, &f.id);
            }
        }
        Ok((found, explained))
    })
    .await?;
    let side = |side: Side, name: &str| match side {
        Some((rank, value)) => json!({"rank": rank, name: value}),
        None => Value::Null,
    };
    let results = found
        .iter()
        .map(|f| {
            let sides = f.sides.filter(|_| with_scores);
            TextHit {
                id: &f.id,
                score: f.score,
                coverage: f.coverage,
                metadata: f.metadata.as_deref().and_then(|m| raw_metadata(&f.id, m)),
                partition: f.partition.as_deref(),
                text: f.text.as_deref(),
                dense: sides.map(|(d, _)| side(d, "distance")),
                keyword: sides.map(|(_, kw)| match kw {
                    Some((rank, score, coverage)) => {
                        json!({"rank": rank, "score": score, "coverage": coverage})
                    }
                    None => Value::Null,
                }),
            }
        })
        .collect();
    Ok(Json(TextResults { results, explain: explain.then_some(explained) }).into_response())
}
