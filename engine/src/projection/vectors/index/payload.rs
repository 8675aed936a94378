//! Payload indexes of one vector index: per indexed metadata field, the labels of the
//! records holding each value (an inverted index for keywords and booleans, ordered maps
//! for numbers and instants), and the labels where the field is present at all. They
//! answer a filter's conditions as bitmaps; conditions they cannot answer exactly are
//! evaluated on the records' metadata by the planner (`select.rs`).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound as Edge;

use roaring::{MultiOps, RoaringTreemap as Bits};
use serde_json::Value;

use crate::codec::{Dec, DecodeError, Enc};
use crate::event::PayloadKind;
use crate::filter::{instant, values_at, Bound, Cond, FieldCond, Filter, Instant, Node, RangeOp, Scalar};
use crate::validate::InvalidInput;

/// The stored tag of a payload kind.
pub(crate) fn kind_tag(kind: PayloadKind) -> u8 {
    match kind {
        PayloadKind::Keyword => 0,
        PayloadKind::Integer => 1,
        PayloadKind::Float => 2,
        PayloadKind::Bool => 3,
        PayloadKind::Datetime => 4,
    }
}

/// The payload kind of a stored tag.
pub(crate) fn kind_of(tag: u8) -> Option<PayloadKind> {
    Some(match tag {
        0 => PayloadKind::Keyword,
        1 => PayloadKind::Integer,
        2 => PayloadKind::Float,
        3 => PayloadKind::Bool,
        4 => PayloadKind::Datetime,
        _ => return None,
    })
}

/// A number as an ordered key: total order, `-0.0` stored as `0.0` (JSON numbers are
/// finite, so the order is the numeric one).
#[derive(Debug, Clone, Copy)]
struct Num(f64);

impl Num {
    fn new(x: f64) -> Self {
        Self(if x == 0.0 { 0.0 } else { x })
    }
}

impl PartialEq for Num {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}
impl Eq for Num {}
impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Num {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The values of one payload index.
enum Values {
    Keyword(HashMap<Box<str>, Bits>),
    Number(BTreeMap<Num, Bits>),
    Bool([Bits; 2]),
    Time(BTreeMap<Instant, Bits>),
}

/// One payload index: a field, its value type, and its postings.
pub(crate) struct PayloadIndex {
    kind: PayloadKind,
    path: Vec<String>,
    /// Labels whose metadata has the field at all (any type).
    present: Bits,
    values: Values,
}

fn mismatch(at: &str, kind: PayloadKind, reason: &str) -> InvalidInput {
    InvalidInput {
        field: at.to_owned(),
        reason: format!("the field has a payload index of type {}: {reason}", kind.name()),
    }
}

fn label_bit(label: i64) -> u64 {
    u64::try_from(label).unwrap_or(0)
}

/// Bitmaps united by [`MultiOps`] at most; more (a range over many distinct values,
/// each a small bitmap) go through a dense bitset, one pass over their labels.
const UNION_DIRECT_MAX: usize = 64;

/// The union of `sets`.
fn union_all<'a>(sets: impl Iterator<Item = &'a Bits>) -> Bits {
    let sets: Vec<&Bits> = sets.collect();
    if sets.len() <= UNION_DIRECT_MAX {
        return sets.into_iter().union();
    }
    let Some(max) = sets.iter().filter_map(|s| s.max()).max() else { return Bits::new() };
    let Ok(words) = usize::try_from(max / 64 + 1) else { return sets.into_iter().union() };
    let mut dense = vec![0u64; words];
    for set in &sets {
        for bit in set.iter() {
            if let Some(word) = dense.get_mut((bit / 64) as usize) {
                *word |= 1u64 << (bit % 64);
            }
        }
    }
    let mut labels = Vec::new();
    for (i, &word) in dense.iter().enumerate() {
        let mut w = word;
        while w != 0 {
            labels.push((i as u64) * 64 + u64::from(w.trailing_zeros()));
            w &= w - 1;
        }
    }
    Bits::from_sorted_iter(labels).unwrap_or_default()
}

fn edges<K: Copy>(op: RangeOp, bound: K) -> (Edge<K>, Edge<K>) {
    match op {
        RangeOp::Gt => (Edge::Excluded(bound), Edge::Unbounded),
        RangeOp::Gte => (Edge::Included(bound), Edge::Unbounded),
        RangeOp::Lt => (Edge::Unbounded, Edge::Excluded(bound)),
        RangeOp::Lte => (Edge::Unbounded, Edge::Included(bound)),
    }
}

impl PayloadIndex {
    fn new(field: &str, kind: PayloadKind) -> Self {
        let values = match kind {
            PayloadKind::Keyword => Values::Keyword(HashMap::new()),
            PayloadKind::Integer | PayloadKind::Float => Values::Number(BTreeMap::new()),
            PayloadKind::Bool => Values::Bool([Bits::new(), Bits::new()]),
            PayloadKind::Datetime => Values::Time(BTreeMap::new()),
        };
        Self { kind, path: field.split('.').map(str::to_owned).collect(), present: Bits::new(), values }
    }

    /// The type this index holds.
    pub(crate) fn kind(&self) -> PayloadKind {
        self.kind
    }

    /// Add (`add`) or remove a record's values, read from its metadata document.
    fn update(&mut self, label: u64, doc: &Value, add: bool) {
        if !crate::filter::present(doc, &self.path) {
            return;
        }
        let flip = |bits: &mut Bits| {
            if add {
                bits.insert(label);
            } else {
                bits.remove(label);
            }
        };
        flip(&mut self.present);
        let mut found = Vec::new();
        values_at(doc, &self.path, &mut found);
        for value in found {
            match (&mut self.values, value) {
                (Values::Keyword(map), Value::String(s)) => {
                    if add {
                        map.entry(s.as_str().into()).or_default().insert(label);
                    } else if let Some(bits) = map.get_mut(s.as_str()) {
                        bits.remove(label);
                        if bits.is_empty() {
                            map.remove(s.as_str());
                        }
                    }
                }
                (Values::Number(map), Value::Number(n)) => {
                    let Some(key) = n.as_f64().map(Num::new) else { continue };
                    if add {
                        map.entry(key).or_default().insert(label);
                    } else if let Some(bits) = map.get_mut(&key) {
                        bits.remove(label);
                        if bits.is_empty() {
                            map.remove(&key);
                        }
                    }
                }
                (Values::Bool(sets), Value::Bool(b)) => flip(&mut sets[usize::from(*b)]),
                (Values::Time(map), Value::String(s)) => {
                    let Some(key) = instant(s) else { continue };
                    if add {
                        map.entry(key).or_default().insert(label);
                    } else if let Some(bits) = map.get_mut(&key) {
                        bits.remove(label);
                        if bits.is_empty() {
                            map.remove(&key);
                        }
                    }
                }
                // A value of another type is not indexed; no condition this index
                // answers can match it (see `answer`).
                _ => {}
            }
        }
    }

    /// The labels satisfying `cond` on this field, when the index answers it exactly;
    /// `None` when it must be evaluated on the metadata instead. A condition whose
    /// operand cannot be of this index's type is the caller's error. `Exists` is
    /// answered by [`Payload::resolve`], which knows the live set.
    fn answer(&self, cond: &Cond, at: &str) -> Result<Option<Bits>, InvalidInput> {
        let kind = self.kind;
        let scalar = |s: &Scalar| -> Result<Option<Bits>, InvalidInput> {
            Ok(match (&self.values, s) {
                // Null equality is evaluated: an index does not hold nulls.
                (_, Scalar::Null) => None,
                (Values::Keyword(map), Scalar::Str(s)) => {
                    Some(map.get(s.as_str()).cloned().unwrap_or_default())
                }
                (Values::Number(map), Scalar::Number(n)) => {
                    if kind == PayloadKind::Integer && n.fract() != 0.0 {
                        return Err(mismatch(at, kind, &format!("{n} is not an integer")));
                    }
                    Some(map.get(&Num::new(*n)).cloned().unwrap_or_default())
                }
                (Values::Bool(sets), Scalar::Bool(b)) => Some(sets[usize::from(*b)].clone()),
                // String equality on a datetime field compares text, not instants.
                (Values::Time(_), Scalar::Str(_)) => None,
                (_, other) => {
                    let got = match other {
                        Scalar::Bool(_) => "a boolean",
                        Scalar::Number(_) => "a number",
                        Scalar::Str(_) => "a string",
                        Scalar::Null => "null",
                    };
                    return Err(mismatch(at, kind, &format!("it cannot equal {got}")));
                }
            })
        };
        match cond {
            Cond::Eq(s) => scalar(s),
            Cond::In(list) => {
                let mut sets = Vec::with_capacity(list.len());
                let mut exact = true;
                for s in list {
                    match scalar(s)? {
                        Some(bits) => sets.push(bits),
                        None => exact = false,
                    }
                }
                Ok(exact.then(|| sets.union()))
            }
            Cond::Range(op, bound) => match (&self.values, bound) {
                (Values::Number(map), Bound::Number(b)) => {
                    Ok(Some(union_all(map.range(edges(*op, Num::new(*b))).map(|(_, bits)| bits))))
                }
                (Values::Time(map), Bound::Time(t)) => {
                    Ok(Some(union_all(map.range(edges(*op, *t)).map(|(_, b)| b))))
                }
                (Values::Number(_), Bound::Time(_)) => {
                    Err(mismatch(at, kind, &format!("{} takes a number, not a timestamp", op.name())))
                }
                (Values::Time(_), Bound::Number(_)) => Err(mismatch(
                    at,
                    kind,
                    &format!("{} takes an RFC 3339 timestamp, not a number", op.name()),
                )),
                _ => Err(mismatch(at, kind, &format!("{} is not defined on it", op.name()))),
            },
            Cond::Exists(_) => Ok(Some(self.present.clone())),
        }
    }

    /// Approximate heap bytes of the postings.
    fn bytes(&self) -> u64 {
        let bits = |b: &Bits| b.serialized_size() as u64;
        let values: u64 = match &self.values {
            Values::Keyword(map) => map.iter().map(|(k, b)| k.len() as u64 + 48 + bits(b)).sum(),
            Values::Number(map) => map.values().map(|b| 40 + bits(b)).sum(),
            Values::Bool(sets) => sets.iter().map(bits).sum(),
            Values::Time(map) => map.values().map(|b| 44 + bits(b)).sum(),
        };
        values + bits(&self.present)
    }

    /// Distinct values held.
    fn distinct(&self) -> u64 {
        match &self.values {
            Values::Keyword(map) => map.len() as u64,
            Values::Number(map) => map.len() as u64,
            Values::Bool(sets) => sets.iter().filter(|s| !s.is_empty()).count() as u64,
            Values::Time(map) => map.len() as u64,
        }
    }
}

fn write_bits(e: &mut Enc, bits: &Bits) {
    let mut out = Vec::with_capacity(bits.serialized_size());
    // Writing to a Vec cannot fail.
    let _ = bits.serialize_into(&mut out);
    e.bytes(&out);
}

/// A bitmap of a snapshot: it must decode and hold only live labels.
fn read_bits(d: &mut Dec<'_>, live: &Bits) -> Result<Bits, DecodeError> {
    let bytes = d.bytes()?;
    let bits =
        Bits::deserialize_from(bytes).map_err(|e| d.error(format!("a bitmap does not decode: {e}")))?;
    if !bits.is_subset(live) {
        return Err(d.error("a bitmap holds labels that are not live"));
    }
    Ok(bits)
}

impl PayloadIndex {
    /// The postings as a snapshot keeps them (layout in docs/FORMAT.md, "`payload`
    /// section"): the present bitmap, then each value (in order) and its bitmap.
    fn write(&self, e: &mut Enc) {
        write_bits(e, &self.present);
        match &self.values {
            Values::Keyword(map) => {
                let mut keys: Vec<&Box<str>> = map.keys().collect();
                keys.sort_unstable();
                e.u64(keys.len() as u64);
                for key in keys {
                    e.str(key);
                    write_bits(e, &map[key]);
                }
            }
            Values::Number(map) => {
                e.u64(map.len() as u64);
                for (key, bits) in map {
                    e.u64(key.0.to_bits());
                    write_bits(e, bits);
                }
            }
            Values::Bool(sets) => {
                e.u64(2);
                for bits in sets {
                    write_bits(e, bits);
                }
            }
            Values::Time(map) => {
                e.u64(map.len() as u64);
                for ((secs, nanos), bits) in map {
                    e.i64(*secs);
                    e.u32(*nanos);
                    write_bits(e, bits);
                }
            }
        }
    }

    /// Postings written by [`PayloadIndex::write`].
    fn read(d: &mut Dec<'_>, field: &str, kind: PayloadKind, live: &Bits) -> Result<Self, DecodeError> {
        let mut index = Self::new(field, kind);
        index.present = read_bits(d, live)?;
        let n = d.count(8 + 8)?;
        match &mut index.values {
            Values::Keyword(map) => {
                for _ in 0..n {
                    let key: Box<str> = d.str()?.into();
                    map.insert(key, read_bits(d, live)?);
                }
            }
            Values::Number(map) => {
                for _ in 0..n {
                    let key = f64::from_bits(d.u64()?);
                    if !key.is_finite() {
                        return Err(d.error(format!("number key {key} is not finite")));
                    }
                    map.insert(Num::new(key), read_bits(d, live)?);
                }
            }
            Values::Bool(sets) => {
                if n != 2 {
                    return Err(d.error(format!("a bool index has 2 bitmaps, not {n}")));
                }
                for set in sets.iter_mut() {
                    *set = read_bits(d, live)?;
                }
            }
            Values::Time(map) => {
                for _ in 0..n {
                    let key = (d.i64()?, d.u32()?);
                    map.insert(key, read_bits(d, live)?);
                }
            }
        }
        if index.distinct() != n as u64 && !matches!(index.values, Values::Bool(_)) {
            return Err(d.error(format!("payload index {field:?} repeats a value")));
        }
        Ok(index)
    }
}

/// Payload indexes built off to the side ([`Payload::build`]).
pub(crate) struct BuiltIndexes(Vec<(String, PayloadIndex)>);

/// A payload index as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadIndexInfo {
    /// The metadata field (dotted path).
    pub field: String,
    /// The value type.
    pub kind: PayloadKind,
    /// Records holding the field.
    pub records: u64,
    /// Distinct values indexed.
    pub distinct: u64,
    /// Approximate memory of its postings, bytes.
    pub bytes: u64,
}

/// What the payload indexes make of a filter: a superset of the matching labels
/// (`None`: every live record), exact when no condition needs evaluating.
pub(crate) struct Resolved {
    pub(crate) set: Option<Bits>,
    pub(crate) exact: bool,
}

/// Every payload index of one vector index, and the live labels.
#[derive(Default)]
pub(crate) struct Payload {
    indexes: BTreeMap<String, PayloadIndex>,
    /// Every live label (what `$not` and `$exists: false` complement against).
    pub(crate) live: Bits,
}

impl Payload {
    pub(crate) fn get(&self, field: &str) -> Option<&PayloadIndex> {
        self.indexes.get(field)
    }

    /// A record became live with `metadata`.
    pub(crate) fn insert(&mut self, label: i64, metadata: Option<&str>) {
        self.live.insert(label_bit(label));
        self.update(label, metadata, true);
    }

    /// A live record with `metadata` was deleted or replaced.
    pub(crate) fn remove(&mut self, label: i64, metadata: Option<&str>) {
        self.live.remove(label_bit(label));
        self.update(label, metadata, false);
    }

    /// A live record's metadata changed.
    pub(crate) fn replace(&mut self, label: i64, old: Option<&str>, new: Option<&str>) {
        self.update(label, old, false);
        self.update(label, new, true);
    }

    fn update(&mut self, label: i64, metadata: Option<&str>, add: bool) {
        if self.indexes.is_empty() {
            return;
        }
        let Some(doc) = metadata.and_then(|text| serde_json::from_str::<Value>(text).ok()) else { return };
        for index in self.indexes.values_mut() {
            index.update(label_bit(label), &doc, add);
        }
    }

    /// Index each field of `defs` as its kind, built from `records` (every live label
    /// and its metadata, each parsed once). Replaces an index on the same field.
    #[cfg(test)]
    pub(crate) fn create<'a>(
        &mut self,
        defs: &[(String, PayloadKind)],
        records: impl Iterator<Item = (i64, Option<&'a str>)>,
    ) {
        let built = Self::build(defs, records);
        self.install(built);
    }

    /// The payload indexes of `defs`, built from `records` (every live label and its
    /// metadata, each parsed once), to [`Payload::install`] later: the projector builds
    /// them under the index's read lock (searches go on) and installs them under a
    /// short write lock; it is the only thread that changes records in between.
    pub(crate) fn build<'a>(
        defs: &[(String, PayloadKind)],
        records: impl Iterator<Item = (i64, Option<&'a str>)>,
    ) -> BuiltIndexes {
        let mut built: Vec<PayloadIndex> =
            defs.iter().map(|(field, kind)| PayloadIndex::new(field, *kind)).collect();
        for (label, metadata) in records {
            if let Some(doc) = metadata.and_then(|text| serde_json::from_str::<Value>(text).ok()) {
                for index in &mut built {
                    index.update(label_bit(label), &doc, true);
                }
            }
        }
        BuiltIndexes(defs.iter().map(|(field, _)| field.clone()).zip(built).collect())
    }

    /// Put built indexes in place, replacing any on the same fields.
    pub(crate) fn install(&mut self, built: BuiltIndexes) {
        self.indexes.extend(built.0);
    }

    /// Drop the index on `field`; false if there was none.
    pub(crate) fn drop_index(&mut self, field: &str) -> bool {
        self.indexes.remove(field).is_some()
    }

    /// The indexes, by field.
    pub(crate) fn infos(&self) -> Vec<PayloadIndexInfo> {
        self.indexes
            .iter()
            .map(|(field, index)| PayloadIndexInfo {
                field: field.clone(),
                kind: index.kind,
                records: index.present.len(),
                distinct: index.distinct(),
                bytes: index.bytes(),
            })
            .collect()
    }

    /// The definitions (field, kind), by field.
    pub(crate) fn definitions(&self) -> Vec<(String, PayloadKind)> {
        self.indexes.iter().map(|(field, index)| (field.clone(), index.kind)).collect()
    }

    /// Every payload index with its postings, by field: `u64` count, then each
    /// field's `str` name, `u8` kind tag and postings.
    pub(crate) fn write(&self, e: &mut Enc) {
        e.u64(self.indexes.len() as u64);
        for (field, index) in &self.indexes {
            e.str(field);
            e.u8(kind_tag(index.kind));
            index.write(e);
        }
    }

    /// Replace the payload indexes with those [`Payload::write`] wrote (the live set
    /// stays: it comes from the records).
    pub(crate) fn read(&mut self, d: &mut Dec<'_>) -> Result<(), DecodeError> {
        let n = d.count(8 + 1 + 8)?;
        let mut indexes = BTreeMap::new();
        for _ in 0..n {
            let field = d.str()?.to_owned();
            let tag = d.u8()?;
            let kind = kind_of(tag).ok_or_else(|| d.error(format!("payload kind tag {tag}")))?;
            let index = PayloadIndex::read(d, &field, kind, &self.live)?;
            if indexes.insert(field.clone(), index).is_some() {
                return Err(d.error(format!("payload index {field:?} appears twice")));
            }
        }
        self.indexes = indexes;
        Ok(())
    }

    /// Resolve `filter` against the indexes (see [`Resolved`]).
    ///
    /// # Errors
    /// A condition on an indexed field whose operand cannot be of its type, naming
    /// the clause.
    pub(crate) fn resolve(&self, filter: &Filter) -> Result<Resolved, InvalidInput> {
        let (set, exact) = self.node(&filter.root)?;
        Ok(Resolved { set, exact })
    }

    fn node(&self, node: &Node) -> Result<(Option<Bits>, bool), InvalidInput> {
        Ok(match node {
            Node::Field(field) => self.field(field)?,
            Node::All(children) => {
                let mut sets = Vec::new();
                let mut exact = true;
                for child in children {
                    let (set, child_exact) = self.node(child)?;
                    exact &= child_exact;
                    sets.extend(set);
                }
                if sets.is_empty() {
                    (None, exact && children.is_empty())
                } else {
                    (Some(sets.intersection()), exact)
                }
            }
            Node::Any(children) => {
                let mut sets = Vec::new();
                let mut all_known = true;
                let mut exact = true;
                for child in children {
                    let (set, child_exact) = self.node(child)?;
                    exact &= child_exact;
                    match set {
                        Some(set) => sets.push(set),
                        None => all_known = false,
                    }
                }
                if all_known {
                    (Some(sets.union()), exact)
                } else {
                    (None, false)
                }
            }
            Node::Not(child) => match self.node(child)? {
                (Some(set), true) => (Some(&self.live - &set), true),
                _ => (None, false),
            },
        })
    }

    fn field(&self, field: &FieldCond) -> Result<(Option<Bits>, bool), InvalidInput> {
        let Some(index) = self.indexes.get(&field.key) else { return Ok((None, false)) };
        Ok(match &field.cond {
            Cond::Exists(true) => (Some(index.present.clone()), true),
            Cond::Exists(false) => (Some(&self.live - &index.present), true),
            cond => match index.answer(cond, &field.at)? {
                Some(set) => (Some(set), true),
                None => (None, false),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Records 0..n: `{"k": "v{i%4}", "n": i, "tags": ["t{i%3}"], "b": i%2==0,
    /// "at": "2024-01-{1+i%28}T00:00:00Z"}`; record 7 has `"n": "seven"` instead.
    fn docs(n: i64) -> Vec<(i64, String)> {
        (0..n)
            .map(|i| {
                let num = if i == 7 { json!("seven") } else { json!(i) };
                let doc = json!({"k": format!("v{}", i % 4), "n": num, "tags": [format!("t{}", i % 3)],
                    "b": i % 2 == 0, "at": format!("2024-01-{:02}T00:00:00Z", 1 + i % 28)});
                (i, doc.to_string())
            })
            .collect()
    }

    fn payload(docs: &[(i64, String)]) -> Payload {
        let mut p = Payload::default();
        for (label, text) in docs {
            p.insert(*label, Some(text));
        }
        let records = || docs.iter().map(|(l, t)| (*l, Some(t.as_str())));
        let defs = [
            ("k", PayloadKind::Keyword),
            ("n", PayloadKind::Integer),
            ("tags", PayloadKind::Keyword),
            ("b", PayloadKind::Bool),
            ("at", PayloadKind::Datetime),
        ]
        .map(|(f, k)| (f.to_owned(), k));
        p.create(&defs[..2], records());
        p.create(&defs[2..], records());
        p
    }

    #[test]
    fn indexed_answers_equal_evaluation_on_the_metadata() {
        let docs = docs(100);
        let p = payload(&docs);
        let filters = [
            json!({"k": "v1"}),
            json!({"k": {"$in": ["v1", "v2"]}}),
            json!({"k": {"$ne": "v1"}}),
            json!({"n": {"$gte": 10, "$lt": 20}}),
            json!({"n": {"$nin": [3, 4]}}),
            json!({"tags": {"$contains": "t2"}}),
            json!({"b": true, "k": {"$nin": ["v0"]}}),
            json!({"at": {"$gt": "2024-01-20T00:00:00Z"}}),
            json!({"$or": [{"k": "v3"}, {"n": {"$lt": 5}}]}),
            json!({"$not": {"n": {"$exists": true}}}),
            json!({"n": {"$exists": false}}),
            json!({"$or": [{"k": "v3"}, {"unindexed": 1}]}),
            json!({"n": null}),
        ];
        for value in filters {
            let filter = Filter::parse("filter", &value).unwrap();
            let resolved = p.resolve(&filter).unwrap();
            let expected: Vec<u64> =
                docs.iter().filter(|(_, t)| filter.matches_text(Some(t))).map(|(l, _)| *l as u64).collect();
            let candidates: Vec<u64> =
                resolved.set.as_ref().map_or_else(|| p.live.iter().collect(), |s| s.iter().collect());
            if resolved.exact {
                assert_eq!(candidates, expected, "{value}");
            } else {
                assert!(expected.iter().all(|l| candidates.contains(l)), "superset for {value}");
            }
        }
    }

    #[test]
    fn postings_written_and_read_back_serialize_identically_and_answer_the_same() {
        let docs = docs(300);
        let mut built = payload(&docs);
        built.remove(5, Some(&docs[5].1));
        let mut e = Enc::default();
        built.write(&mut e);
        let mut restored = Payload { live: built.live.clone(), ..Payload::default() };
        restored.read(&mut Dec::new(&e.buf)).unwrap();
        let mut again = Enc::default();
        restored.write(&mut again);
        assert_eq!(again.buf, e.buf, "canonical bytes");
        let wide = Filter::parse("filter", &json!({"n": {"$gte": 3, "$lt": 250}})).unwrap();
        let a: Vec<u64> = built.resolve(&wide).unwrap().set.unwrap().iter().collect();
        let b: Vec<u64> = restored.resolve(&wide).unwrap().set.unwrap().iter().collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 247 - 2, "3..250, less 5 (removed) and 7 (a string)");
        // A bitmap naming a label that is not live is refused.
        let mut fewer = Payload { live: (0..100).collect(), ..Payload::default() };
        assert!(fewer.read(&mut Dec::new(&e.buf)).is_err());
    }

    #[test]
    fn removals_and_replacements_leave_no_stale_postings() {
        let docs = docs(10);
        let mut p = payload(&docs);
        p.remove(1, Some(&docs[1].1));
        p.replace(2, Some(&docs[2].1), Some(r#"{"k": "v1"}"#));
        let filter = Filter::parse("filter", &json!({"k": "v1"})).unwrap();
        let set: Vec<u64> = p.resolve(&filter).unwrap().set.unwrap().iter().collect();
        assert_eq!(set, [2, 5, 9]);
        let n = Filter::parse("filter", &json!({"n": 2})).unwrap();
        assert!(p.resolve(&n).unwrap().set.unwrap().is_empty(), "record 2 no longer has n");
    }

    #[test]
    fn an_operand_of_the_wrong_type_for_an_indexed_field_names_its_clause() {
        let p = payload(&docs(4));
        for (value, at) in [
            (json!({"k": {"$gt": 3}}), "filter.k.$gt"),
            (json!({"$and": [{"b": true}, {"n": {"$gt": "2024-01-01T00:00:00Z"}}]}), "filter.$and[1].n.$gt"),
            (json!({"n": 2.5}), "filter.n"),
            (json!({"k": {"$in": ["a", 3]}}), "filter.k.$in"),
            (json!({"b": "yes"}), "filter.b"),
        ] {
            let filter = Filter::parse("filter", &value).unwrap();
            let err = p.resolve(&filter).err().unwrap_or_else(|| panic!("{value} resolved"));
            assert_eq!(err.field, at, "{value}: {err}");
        }
    }
}
