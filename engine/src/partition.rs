//! Partition schemes: a template over metadata fields (`tenant={tenant}/year={year}`)
//! resolved against a record's metadata into its partition path, and the filters a
//! search takes (an exact path, or a prefix ending in `/`).

use crate::event::VectorItem;
use crate::limits::TEMPLATE_BYTES_MAX;
use crate::validate::InvalidInput;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(String),
}

/// A parsed partition template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

fn invalid(field: &str, reason: impl Into<String>) -> InvalidInput {
    InvalidInput { field: field.to_owned(), reason: reason.into() }
}

impl Template {
    /// Parse `source`: text with `{field}` placeholders (field names of
    /// `[A-Za-z0-9_.-]`), at least one placeholder, no other braces.
    ///
    /// # Errors
    /// [`InvalidInput`] naming `template` and what is wrong.
    pub fn parse(source: &str) -> Result<Self, InvalidInput> {
        if source.is_empty() || source.len() > TEMPLATE_BYTES_MAX {
            return Err(invalid("template", format!("must be 1 to {TEMPLATE_BYTES_MAX} bytes")));
        }
        let mut pieces = Vec::new();
        let mut rest = source;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    pieces.push(Piece::Text(rest.to_owned()));
                    rest = "";
                }
                Some(at) if rest.as_bytes()[at] == b'}' => {
                    return Err(invalid("template", format!("unmatched '}}' in {source:?}")));
                }
                Some(at) => {
                    if at > 0 {
                        pieces.push(Piece::Text(rest[..at].to_owned()));
                    }
                    let Some(close) = rest[at..].find('}') else {
                        return Err(invalid("template", format!("unclosed '{{' in {source:?}")));
                    };
                    let name = &rest[at + 1..at + close];
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                    {
                        return Err(invalid("template", format!("bad field name {name:?} in {source:?}")));
                    }
                    pieces.push(Piece::Field(name.to_owned()));
                    rest = &rest[at + close + 1..];
                }
            }
        }
        if !pieces.iter().any(|p| matches!(p, Piece::Field(_))) {
            return Err(invalid("template", format!("{source:?} has no {{field}}")));
        }
        // Two fields side by side would let different values give one path.
        if pieces.windows(2).any(|w| matches!(w, [Piece::Field(_), Piece::Field(_)])) {
            return Err(invalid("template", format!("{source:?} has two fields with nothing between them")));
        }
        // Levels are non-empty: no leading or trailing '/', no "//" (a trailing '/'
        // would also make every path a prefix filter, never an exact one).
        if source.starts_with('/') || source.ends_with('/') || source.contains("//") {
            return Err(invalid("template", format!("{source:?} has an empty level")));
        }
        Ok(Self { source: source.to_owned(), pieces })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The partition path of a record with `metadata` (JSON text): each `{field}`
    /// replaced by the top-level metadata field's value (a string, number or boolean,
    /// non-empty, without `/`, so a value cannot reach into another partition's path).
    ///
    /// # Errors
    /// The reason, naming the field.
    pub fn resolve(&self, metadata: Option<&str>) -> Result<String, String> {
        let object = match metadata.map(serde_json::from_str::<serde_json::Value>) {
            Some(Ok(serde_json::Value::Object(map))) => Some(map),
            Some(Ok(_)) | None => None,
            Some(Err(e)) => return Err(format!("metadata is not JSON: {e}")),
        };
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Field(name) => {
                    let value = object.as_ref().and_then(|o| o.get(name));
                    let text = match value {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(serde_json::Value::Number(n)) => n.to_string(),
                        Some(serde_json::Value::Bool(b)) => b.to_string(),
                        Some(serde_json::Value::Null) | None => {
                            return Err(format!("metadata field `{name}` is missing"));
                        }
                        Some(_) => {
                            return Err(format!("metadata field `{name}` is not a string, number or boolean"))
                        }
                    };
                    if text.is_empty() || text.contains('/') {
                        return Err(format!("metadata field `{name}` is empty or contains '/'"));
                    }
                    out.push_str(&text);
                }
            }
            if out.len() > crate::limits::TEXT_BYTES_MAX {
                return Err(format!(
                    "the partition path is longer than {} bytes",
                    crate::limits::TEXT_BYTES_MAX
                ));
            }
        }
        // The same shape as an explicit partition (no empty, `.` or `..` segment, no
        // control character), so what is stored can always be sent back (export, import).
        crate::validate::partition_path("partition", &out).map_err(|e| e.reason)?;
        Ok(out)
    }
}

/// Which partitions a search looks in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Exactly this path.
    Exact(String),
    /// Every path starting with this (it ends with `/`).
    Prefix(String),
}

impl Filter {
    /// `tenant=acme` (exact) or `tenant=acme/` (prefix).
    ///
    /// # Errors
    /// [`InvalidInput`] for an empty or oversized filter.
    pub fn parse(text: &str) -> Result<Self, InvalidInput> {
        if text.is_empty() || text.len() > crate::limits::TEXT_BYTES_MAX {
            return Err(invalid("partition", "must be 1 to 16384 bytes"));
        }
        Ok(if text.ends_with('/') { Self::Prefix(text.to_owned()) } else { Self::Exact(text.to_owned()) })
    }

    /// Whether `path` is in the filter (the vector index answers filters with range
    /// reads of its sorted partition map; the text index tests its rows with this).
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => path == p,
            Self::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

/// Where a record belongs under a template, given where it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placement {
    /// It is where the template puts it.
    Stays,
    /// It belongs at `to`.
    Moves {
        /// Its path under the template.
        to: String,
    },
    /// Its metadata cannot be placed (a field is missing or not a scalar).
    Unplaceable {
        /// Why.
        reason: String,
    },
}

impl Template {
    /// Where a record with `metadata`, now at `partition`, belongs (a migration's one
    /// decision per record).
    pub(crate) fn place(&self, metadata: Option<&str>, partition: Option<&str>) -> Placement {
        match self.resolve(metadata) {
            Ok(to) if partition == Some(to.as_str()) => Placement::Stays,
            Ok(to) => Placement::Moves { to },
            Err(reason) => Placement::Unplaceable { reason },
        }
    }

    /// Give every item of a write its partition under this template, or refuse the
    /// batch naming the item: a record whose metadata lacks a field, or whose explicit
    /// partition disagrees.
    ///
    /// # Errors
    /// [`InvalidInput`] naming `items[i].metadata` or `items[i].partition`.
    pub(crate) fn place_items(&self, items: &mut [VectorItem]) -> Result<(), InvalidInput> {
        for (i, item) in items.iter_mut().enumerate() {
            let path = self.resolve(item.metadata.as_deref()).map_err(|reason| {
                invalid(
                    &format!("items[{i}].metadata"),
                    format!("partition template {}: {reason}", self.as_str()),
                )
            })?;
            match &item.partition {
                Some(given) if *given != path => {
                    return Err(invalid(
                        &format!("items[{i}].partition"),
                        format!("is {given:?}, but the scheme {} gives {path:?}", self.as_str()),
                    ));
                }
                _ => item.partition = Some(path),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_resolves_fields_of_the_metadata() {
        let t = Template::parse("tenant={tenant}/year={year}").unwrap();
        assert_eq!(
            t.resolve(Some(r#"{"tenant": "acme", "year": 2024}"#)),
            Ok("tenant=acme/year=2024".into())
        );
        assert_eq!(t.resolve(Some(r#"{"tenant": "acme"}"#)), Err("metadata field `year` is missing".into()));
        assert!(t.resolve(None).unwrap_err().contains("`tenant`"));
        assert!(t.resolve(Some(r#"{"tenant": "a/b", "year": 1}"#)).is_err(), "a value cannot add a level");
        assert!(t.resolve(Some(r#"{"tenant": ["x"], "year": 1}"#)).is_err());
        let long = format!(r#"{{"tenant": "{}", "year": 1}}"#, "x".repeat(20_000));
        assert!(t.resolve(Some(&long)).unwrap_err().contains("longer"), "a path is bounded");
    }

    #[test]
    fn bad_templates_are_refused_naming_the_problem() {
        for bad in [
            "", "tenant", "tenant={", "tenant=}", "t={}", "t={a b}", "t={a}{", "{a}{b}", "{a}/", "/{a}",
            "a//{b}",
        ] {
            assert_eq!(Template::parse(bad).unwrap_err().field, "template", "{bad:?}");
        }
    }

    #[test]
    fn a_prefix_filter_ends_in_a_slash() {
        let f = Filter::parse("tenant=acme/").unwrap();
        assert!(f.matches("tenant=acme/year=2024"));
        assert!(!f.matches("tenant=acmex/year=1"));
        let e = Filter::parse("tenant=acme").unwrap();
        assert!(e.matches("tenant=acme") && !e.matches("tenant=acme/year=1"));
    }
}
