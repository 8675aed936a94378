//! Keyword and hybrid search over document indexes: the text index's configuration
//! (chosen at creation, recorded in `TextIndexCreated`), BM25 search of the full-text
//! projection, and hybrid search fusing it with the dense side.

use super::Engine;
use crate::error::Error;
use crate::event::{TextIndexCreated, TextTokenizer};
use crate::limits::TEXT_FIELDS_MAX;
use crate::projection::text::{self, Fusion, Hybrid, KeywordHit, KeywordQuery, LANGUAGES, TEXT_FIELD};
use crate::projection::vectors::Select;
use crate::validate::InvalidInput;

/// Longest metadata field name a text index takes.
const FIELD_NAME_BYTES_MAX: usize = 64;

/// A text index's configuration, as a caller gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextSpec {
    /// How text is split into terms.
    pub tokenizer: TextTokenizer,
    /// The stemmer's language (`None`: no stemming).
    pub stemmer: Option<String>,
    /// Top-level metadata fields whose strings are indexed too.
    pub fields: Vec<String>,
}

impl Default for TextSpec {
    /// Words of letters and digits, lowercased, stemmed as English.
    fn default() -> Self {
        Self { tokenizer: TextTokenizer::Simple, stemmer: Some("english".to_owned()), fields: Vec::new() }
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> InvalidInput {
    InvalidInput { field: field.into(), reason: reason.into() }
}

impl TextSpec {
    /// Check the configuration.
    ///
    /// # Errors
    /// [`InvalidInput`] naming `text.stemmer` for an unknown language, `text.fields`
    /// or `text.fields[i]` for too many, a repeated, reserved or malformed name.
    pub fn check(&self) -> Result<(), InvalidInput> {
        if let Some(language) = &self.stemmer {
            if text::language(language).is_none() {
                let known: Vec<&str> = LANGUAGES.iter().map(|(n, _)| *n).collect();
                return Err(invalid(
                    "text.stemmer",
                    format!("no stemmer for {language:?} (known: {}, or null for none)", known.join(", ")),
                ));
            }
        }
        if self.fields.len() > TEXT_FIELDS_MAX {
            return Err(invalid(
                "text.fields",
                format!("at most {TEXT_FIELDS_MAX} fields, got {}", self.fields.len()),
            ));
        }
        for (i, name) in self.fields.iter().enumerate() {
            let field = format!("text.fields[{i}]");
            let well_formed = !name.is_empty()
                && name.len() <= FIELD_NAME_BYTES_MAX
                && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !well_formed {
                return Err(invalid(
                    &field,
                    format!(
                        "{name:?} is not a top-level metadata key of 1 to {FIELD_NAME_BYTES_MAX} \
                         letters, digits and _ (not starting with a digit)"
                    ),
                ));
            }
            if [TEXT_FIELD, "id", "key"].contains(&name.as_str()) {
                return Err(invalid(&field, format!("{name:?} is reserved")));
            }
            if self.fields[..i].contains(name) {
                return Err(invalid(&field, format!("{name:?} is given twice")));
            }
        }
        Ok(())
    }

    /// The event recording it for `index`.
    pub(crate) fn event(self, index: &str) -> TextIndexCreated {
        TextIndexCreated {
            index: index.to_owned(),
            tokenizer: self.tokenizer,
            stemmer: self.stemmer,
            fields: self.fields,
        }
    }
}

impl Engine {
    /// The text index configuration of `index`, if it has one.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`].
    pub fn text_index(&self, index: &str) -> Result<Option<(TextSpec, u64)>, Error> {
        self.index(index)?;
        Ok(self.text.get(index).map(|t| {
            let c = t.config().clone();
            (TextSpec { tokenizer: c.tokenizer, stemmer: c.stemmer, fields: c.fields }, t.len() as u64)
        }))
    }

    /// The best `k` documents of `index` for a keyword query, by BM25, among those
    /// `select` selects. Needs no embedder.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`]; [`Error::Invalid`] naming `text` for a query over the
    /// limits, with no term, or with a syntax error (the parser's message), naming
    /// `mode` for an index without a text index, or naming `filter` / `partition`.
    pub fn keyword(
        &self,
        index: &str,
        query: &KeywordQuery,
        k: usize,
        select: &Select,
    ) -> Result<Vec<KeywordHit>, Error> {
        self.index(index)?;
        self.text.keyword(index, "text", query, k, select)
    }

    /// Hybrid search of `index`: the query text's embedding searched in the graph and
    /// the text searched by BM25, both within `select`, fused by `fusion`; `candidates`
    /// per side (default [`text::fusion::candidates_for`] `k`).
    ///
    /// # Errors
    /// As [`Engine::keyword`] (checked before anything is embedded) and
    /// [`Engine::embed_queries`]; [`Error::Invalid`] naming `rrf_k`, `alpha` or
    /// `candidates`.
    pub fn hybrid(
        &self,
        index: &str,
        query: &KeywordQuery,
        k: usize,
        select: &Select,
        fusion: Fusion,
        candidates: Option<usize>,
    ) -> Result<Hybrid, Error> {
        self.index(index)?;
        crate::validate::k(k)?;
        fusion.check()?;
        text::query::check("text", query)?;
        if self.text.get(index).is_none() {
            // The keyword side says why, before the embedder is asked for anything.
            self.text.keyword(index, "text", query, k, select)?;
        }
        let vector = self.embed_queries(index, &[query.text.as_str()])?.pop().unwrap_or_default();
        text::fusion::hybrid(&self.catalog, &self.text, index, query, vector, k, select, fusion, candidates)
    }
}
