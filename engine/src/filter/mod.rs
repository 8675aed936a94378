//! Metadata filters: a JSON language in the Chroma/Mongo style, parsed once into a tree
//! ([`Filter`]) that is evaluated on a record's metadata ([`Filter::matches`]) or
//! answered from payload indexes (`projection/vectors/index/payload.rs`). Both read a
//! record's values through [`values_at`], so an index and an evaluation can never
//! disagree about what a record holds.
//!
//! ```text
//! {"tenant": "t1"}                          bare value: $eq
//! {"tenant": "t1", "year": {"$gte": 2020}}  several keys: $and
//! {"$or": [{"a": 1}, {"b": {"$in": [2, 3]}}]}
//! {"$not": {"tags": {"$contains": "draft"}}}
//! {"meta.author": {"$exists": true}}        dotted key: nested field
//! {"at": {"$lt": "2024-01-01T00:00:00Z"}}   RFC 3339 operand: a time range
//! ```

mod parse;

use std::cmp::Ordering;

use serde_json::Value;

/// A scalar a condition compares with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    /// Every JSON number compares as a 64-bit float (integers exactly up to 2^53).
    Number(f64),
    Str(String),
}

impl Scalar {
    /// Whether a metadata value is this scalar. Numbers compare numerically (`3 ==
    /// 3.0`), strings byte for byte.
    fn equals(&self, value: &Value) -> bool {
        match (self, value) {
            (Scalar::Null, Value::Null) => true,
            (Scalar::Bool(a), Value::Bool(b)) => a == b,
            (Scalar::Number(a), Value::Number(b)) => b.as_f64() == Some(*a),
            (Scalar::Str(a), Value::String(b)) => a == b,
            _ => false,
        }
    }
}

/// An instant of an RFC 3339 timestamp: seconds since the epoch and nanoseconds.
pub(crate) type Instant = (i64, u32);

/// Parse an RFC 3339 timestamp (`2024-05-01T12:00:00Z`, any offset) into an instant.
pub(crate) fn instant(text: &str) -> Option<Instant> {
    let at = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some((at.timestamp(), at.timestamp_subsec_nanos()))
}

/// The other side of a range condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Bound {
    /// Compared with number values.
    Number(f64),
    /// Compared with string values that are RFC 3339 timestamps.
    Time(Instant),
}

/// A range operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl RangeOp {
    /// Whether `ordering` (value against bound) satisfies the operator.
    pub(crate) fn holds(self, ordering: Ordering) -> bool {
        match self {
            RangeOp::Gt => ordering == Ordering::Greater,
            RangeOp::Gte => ordering != Ordering::Less,
            RangeOp::Lt => ordering == Ordering::Less,
            RangeOp::Lte => ordering != Ordering::Greater,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            RangeOp::Gt => "$gt",
            RangeOp::Gte => "$gte",
            RangeOp::Lt => "$lt",
            RangeOp::Lte => "$lte",
        }
    }
}

/// What one field condition tests. `$ne` and `$nin` parse to [`Node::Not`] of `$eq`
/// and `$in`: they match records without the field too, as in MongoDB.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cond {
    /// Some value at the path (an array's elements count one by one) equals the scalar.
    /// `$eq`, a bare value, and `$contains` (array membership, spelled the Chroma way).
    Eq(Scalar),
    /// Some value at the path equals one of the scalars.
    In(Vec<Scalar>),
    /// Some value at the path is in the range.
    Range(RangeOp, Bound),
    /// The path holds anything at all (null and empty arrays included), or not.
    Exists(bool),
}

/// A parsed filter clause.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// Every child matches (`$and`, or several keys in one object).
    All(Vec<Node>),
    /// Some child matches (`$or`).
    Any(Vec<Node>),
    /// The child does not match (`$not`, `$ne`, `$nin`).
    Not(Box<Node>),
    /// A condition on the values at a field path.
    Field(FieldCond),
}

/// A condition on one field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldCond {
    /// The key as written (`meta.author`): what a payload index is declared on.
    pub(crate) key: String,
    /// The key split at its dots.
    pub(crate) path: Vec<String>,
    pub(crate) cond: Cond,
    /// Where the condition is in the request (`filter.$and[1].price.$gt`), for errors.
    pub(crate) at: String,
}

/// A parsed, bounded metadata filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub(crate) root: Node,
    /// The JSON it was parsed from, for `explain` and logs.
    source: Value,
}

impl Filter {
    /// Parse a filter given under the body key `field` (`filter`): errors name the
    /// offending clause's path from there (`filter.$and[1].price.$gt`).
    ///
    /// # Errors
    /// [`crate::InvalidInput`] naming the clause: an unknown operator, an operand of the
    /// wrong type, too deep or too many clauses (bounds in [`crate::limits`]).
    pub fn parse(field: &str, value: &Value) -> Result<Self, crate::InvalidInput> {
        let root = parse::parse(field, value)?;
        Ok(Self { root, source: value.clone() })
    }

    /// The JSON the filter was parsed from.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// Whether a record with `metadata` (JSON text; `None`: no metadata) matches. Text
    /// that is not JSON holds no fields.
    pub fn matches_text(&self, metadata: Option<&str>) -> bool {
        let value = metadata.and_then(|text| serde_json::from_str::<Value>(text).ok()).unwrap_or(Value::Null);
        self.matches(&value)
    }

    /// Whether a record with this metadata document matches.
    pub fn matches(&self, metadata: &Value) -> bool {
        node_matches(&self.root, metadata)
    }

    /// Every field condition, in order (what a planner looks up indexes for).
    pub(crate) fn fields(&self) -> Vec<&FieldCond> {
        fn walk<'a>(node: &'a Node, out: &mut Vec<&'a FieldCond>) {
            match node {
                Node::All(children) | Node::Any(children) => children.iter().for_each(|c| walk(c, out)),
                Node::Not(child) => walk(child, out),
                Node::Field(field) => out.push(field),
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }
}

fn node_matches(node: &Node, metadata: &Value) -> bool {
    match node {
        Node::All(children) => children.iter().all(|c| node_matches(c, metadata)),
        Node::Any(children) => children.iter().any(|c| node_matches(c, metadata)),
        Node::Not(child) => !node_matches(child, metadata),
        Node::Field(field) => cond_matches(&field.cond, &field.path, metadata),
    }
}

fn cond_matches(cond: &Cond, path: &[String], metadata: &Value) -> bool {
    if let Cond::Exists(wanted) = cond {
        return present(metadata, path) == *wanted;
    }
    let mut values = Vec::new();
    values_at(metadata, path, &mut values);
    values.iter().any(|value| value_matches(cond, value))
}

/// Whether one (non-array) value satisfies `cond`.
pub(crate) fn value_matches(cond: &Cond, value: &Value) -> bool {
    match cond {
        Cond::Eq(scalar) => scalar.equals(value),
        Cond::In(scalars) => scalars.iter().any(|s| s.equals(value)),
        Cond::Range(op, Bound::Number(bound)) => {
            value.as_f64().and_then(|v| v.partial_cmp(bound)).is_some_and(|o| op.holds(o))
        }
        Cond::Range(op, Bound::Time(bound)) => {
            value.as_str().and_then(instant).is_some_and(|v| op.holds(v.cmp(bound)))
        }
        Cond::Exists(_) => true,
    }
}

/// The values a record holds at `path`: objects are walked key by key; an array on the
/// way is walked element by element (its objects continue the path); an array at the
/// end contributes its elements. Nested arrays at the end are not flattened further.
pub(crate) fn values_at<'a>(value: &'a Value, path: &[String], out: &mut Vec<&'a Value>) {
    match (path.split_first(), value) {
        (None, Value::Array(items)) => out.extend(items.iter()),
        (None, value) => out.push(value),
        (Some((key, rest)), Value::Object(map)) => {
            if let Some(next) = map.get(key.as_str()) {
                values_at(next, rest, out);
            }
        }
        (Some(_), Value::Array(items)) => {
            for item in items.iter().filter(|item| item.is_object()) {
                values_at(item, path, out);
            }
        }
        (Some(_), _) => {}
    }
}

/// Whether `path` leads to anything at all (null and an empty array included).
pub(crate) fn present(value: &Value, path: &[String]) -> bool {
    match (path.split_first(), value) {
        (None, _) => true,
        (Some((key, rest)), Value::Object(map)) => {
            map.get(key.as_str()).is_some_and(|next| present(next, rest))
        }
        (Some(_), Value::Array(items)) => items.iter().any(|item| item.is_object() && present(item, path)),
        (Some(_), _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(value: Value) -> Filter {
        Filter::parse("filter", &value).unwrap()
    }

    #[test]
    fn a_bare_value_is_equality_and_several_keys_are_a_conjunction() {
        let doc = json!({"tenant": "t1", "year": 2021});
        assert!(f(json!({"tenant": "t1"})).matches(&doc));
        assert!(f(json!({"tenant": "t1", "year": 2021})).matches(&doc));
        assert!(!f(json!({"tenant": "t1", "year": 2020})).matches(&doc));
        assert!(f(json!({"year": 2021.0})).matches(&doc), "numbers compare numerically");
        assert!(!f(json!({"year": "2021"})).matches(&doc), "a string is not a number");
    }

    #[test]
    fn ne_and_nin_match_records_without_the_field() {
        let without = json!({"other": 1});
        assert!(f(json!({"tenant": {"$ne": "t1"}})).matches(&without));
        assert!(f(json!({"tenant": {"$nin": ["t1"]}})).matches(&without));
        assert!(!f(json!({"tenant": {"$ne": "t1"}})).matches(&json!({"tenant": "t1"})));
        assert!(f(json!({"tenant": {"$ne": "t1"}})).matches_text(None));
    }

    #[test]
    fn ranges_compare_numbers_and_rfc3339_instants_across_offsets() {
        let doc = json!({"price": 12.5, "at": "2024-05-01T12:00:00+02:00"});
        assert!(f(json!({"price": {"$gt": 10, "$lte": 12.5}})).matches(&doc));
        assert!(!f(json!({"price": {"$lt": 12.5}})).matches(&doc));
        assert!(f(json!({"at": {"$gte": "2024-05-01T10:00:00Z"}})).matches(&doc), "10:00Z is 12:00+02");
        assert!(!f(json!({"at": {"$gt": "2024-05-01T10:00:00Z"}})).matches(&doc));
        assert!(!f(json!({"price": {"$gt": "2024-05-01T10:00:00Z"}})).matches(&doc));
    }

    #[test]
    fn arrays_match_by_element_and_nested_keys_walk_objects_and_arrays_of_objects() {
        let doc =
            json!({"tags": ["a", "b"], "meta": {"author": {"name": "x"}}, "parts": [{"n": 1}, {"n": 5}]});
        assert!(f(json!({"tags": {"$contains": "b"}})).matches(&doc));
        assert!(f(json!({"tags": "a"})).matches(&doc));
        assert!(!f(json!({"tags": {"$contains": "c"}})).matches(&doc));
        assert!(f(json!({"meta.author.name": "x"})).matches(&doc));
        assert!(f(json!({"parts.n": {"$gt": 4}})).matches(&doc));
        assert!(!f(json!({"parts.n": {"$gt": 5}})).matches(&doc));
    }

    #[test]
    fn exists_sees_null_and_empty_arrays_and_logic_nests() {
        let doc = json!({"a": null, "tags": []});
        assert!(f(json!({"a": {"$exists": true}})).matches(&doc));
        assert!(f(json!({"tags": {"$exists": true}})).matches(&doc));
        assert!(f(json!({"b": {"$exists": false}})).matches(&doc));
        assert!(f(json!({"a": null})).matches(&doc));
        let logic = f(json!({"$or": [{"x": 1}, {"$and": [{"y": 2}, {"$not": {"z": 3}}]}]}));
        assert!(logic.matches(&json!({"x": 1})));
        assert!(logic.matches(&json!({"y": 2})));
        assert!(!logic.matches(&json!({"y": 2, "z": 3})));
        assert!(f(json!({"price": {"$not": {"$gt": 5}}})).matches(&json!({"price": 3})));
    }
}
