//! A keyword query as a caller gives it: checked against the limits, turned into a
//! tantivy query by the index's analyzer (plain terms) or by its query parser, and run
//! with the read's partition and metadata filter.

use std::sync::Arc;

use serde_json::Value;

use super::{Admit, KeywordHit, Row, TextError, TextState};
use crate::error::Error;
use crate::limits::{KEYWORD_QUERY_BYTES_MAX, KEYWORD_QUERY_DEPTH_MAX, KEYWORD_QUERY_TERMS_MAX};
use crate::projection::vectors::Select;
use crate::validate::InvalidInput;

/// A keyword query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordQuery {
    /// The query text.
    pub text: String,
    /// Parse `text` in tantivy's query syntax (`+must -not "a phrase" title:word`)
    /// rather than as plain terms, any of which may match.
    pub syntax: bool,
}

fn invalid(field: &str, reason: impl Into<String>) -> Error {
    InvalidInput { field: field.into(), reason: reason.into() }.into()
}

/// Check `text` against the query limits (`field` names it in errors).
///
/// # Errors
/// [`Error::Invalid`] for an empty or blank text, one over
/// [`KEYWORD_QUERY_BYTES_MAX`], with more than [`KEYWORD_QUERY_TERMS_MAX`] words, or
/// (in the query syntax) nesting deeper than [`KEYWORD_QUERY_DEPTH_MAX`].
pub fn check(field: &str, query: &KeywordQuery) -> Result<(), Error> {
    let text = &query.text;
    if text.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if text.len() > KEYWORD_QUERY_BYTES_MAX {
        return Err(invalid(
            field,
            format!("is {} bytes; a keyword query takes at most {KEYWORD_QUERY_BYTES_MAX}", text.len()),
        ));
    }
    let words = text.split_whitespace().count();
    if words > KEYWORD_QUERY_TERMS_MAX {
        return Err(invalid(
            field,
            format!("has {words} words; a keyword query takes at most {KEYWORD_QUERY_TERMS_MAX}"),
        ));
    }
    if query.syntax {
        let (mut depth, mut deepest) = (0usize, 0usize);
        for c in text.chars() {
            match c {
                '(' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if deepest > KEYWORD_QUERY_DEPTH_MAX {
            return Err(invalid(
                field,
                format!("nests {deepest} levels of parentheses; at most {KEYWORD_QUERY_DEPTH_MAX}"),
            ));
        }
    }
    Ok(())
}

/// What `select` lets a keyword search answer, as a row test.
fn admit(select: &Select) -> Result<Option<Admit>, Error> {
    let partition = select.partition.as_deref().map(crate::partition::Filter::parse).transpose()?;
    let filter = select.filter.clone();
    if partition.is_none() && filter.is_none() {
        return Ok(None);
    }
    Ok(Some(Arc::new(move |row: &Row| {
        let in_partition =
            partition.as_ref().is_none_or(|p| row.partition.as_deref().is_some_and(|path| p.matches(path)));
        in_partition
            && filter.as_ref().is_none_or(|f| f.matches(row.parsed.as_deref().unwrap_or(&Value::Null)))
    })))
}

impl TextState {
    /// The best `k` documents of `index` for `query` among those `select` selects, by
    /// BM25 score, best first.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `field` for a query over the limits, one with no term
    /// the analyzer keeps, or a syntax error (the parser's message); naming `mode` when
    /// `index` has no text index; [`Error::Text`] when tantivy fails.
    pub(crate) fn keyword(
        &self,
        index: &str,
        field: &str,
        query: &KeywordQuery,
        k: usize,
        select: &Select,
    ) -> Result<Vec<KeywordHit>, Error> {
        crate::validate::k(k)?;
        check(field, query)?;
        let text = self.get(index).ok_or_else(|| {
            invalid(
                "mode",
                format!(
                    "index {index:?} has no text index: keyword and hybrid search need a document \
                     index created with one (docs/OPERATIONS.md, \"Keyword and hybrid search\")"
                ),
            )
        })?;
        let admit = admit(select)?;
        let parsed = if query.syntax {
            text.parse_query(&query.text).map_err(|e| match e {
                TextError::Syntax(e) => invalid(field, format!("query syntax: {e}")),
                other => Error::Text(other),
            })?
        } else {
            let terms = text.terms(&query.text)?;
            if terms.is_empty() {
                return Err(invalid(field, "has no term the index's analyzer keeps"));
            }
            text.terms_query(&terms)
        };
        Ok(text.search(parsed.as_ref(), k, admit)?)
    }
}
