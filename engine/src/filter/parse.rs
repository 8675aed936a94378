//! Parsing a filter's JSON into its tree, with every error naming the clause's path.

use serde_json::{Map, Value};

use super::{instant, Bound, Cond, FieldCond, Node, RangeOp, Scalar};
use crate::limits::{FILTER_CLAUSES_MAX, FILTER_DEPTH_MAX, FILTER_IN_MAX, FILTER_KEY_BYTES_MAX};
use crate::validate::InvalidInput;

fn invalid(at: &str, reason: impl Into<String>) -> InvalidInput {
    InvalidInput { field: at.to_owned(), reason: reason.into() }
}

/// Parse `value`, found at `at` (`filter`).
pub(super) fn parse(at: &str, value: &Value) -> Result<Node, InvalidInput> {
    let mut parser = Parser { clauses: 0 };
    parser.filter(at, value, 1)
}

struct Parser {
    clauses: usize,
}

/// `a.b`, `$and[1]`: how a child's path is written after its parent's.
fn child(at: &str, key: &str) -> String {
    format!("{at}.{key}")
}

impl Parser {
    /// Count one clause and check the depth.
    fn clause(&mut self, at: &str, depth: usize) -> Result<(), InvalidInput> {
        self.clauses += 1;
        if self.clauses > FILTER_CLAUSES_MAX {
            return Err(invalid(at, format!("the filter has more than {FILTER_CLAUSES_MAX} clauses")));
        }
        if depth > FILTER_DEPTH_MAX {
            return Err(invalid(at, format!("nested deeper than {FILTER_DEPTH_MAX} levels")));
        }
        Ok(())
    }

    /// A filter object: field keys and `$and`/`$or`/`$not`, all of which must hold.
    fn filter(&mut self, at: &str, value: &Value, depth: usize) -> Result<Node, InvalidInput> {
        self.clause(at, depth)?;
        let Value::Object(map) = value else {
            return Err(invalid(at, format!("a filter is a JSON object, got {}", kind(value))));
        };
        let mut all = Vec::with_capacity(map.len());
        for (key, value) in map {
            let here = child(at, key);
            let node = match key.as_str() {
                "$and" | "$or" => {
                    let Value::Array(items) = value else {
                        return Err(invalid(
                            &here,
                            format!("takes an array of filters, got {}", kind(value)),
                        ));
                    };
                    if items.is_empty() {
                        return Err(invalid(&here, "takes at least one filter"));
                    }
                    let children = items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| self.filter(&format!("{here}[{i}]"), item, depth + 1))
                        .collect::<Result<Vec<_>, _>>()?;
                    if key == "$and" {
                        Node::All(children)
                    } else {
                        Node::Any(children)
                    }
                }
                "$not" => Node::Not(Box::new(self.filter(&here, value, depth + 1)?)),
                op if op.starts_with('$') => {
                    return Err(invalid(
                        &here,
                        format!("unknown operator {op:?} (a filter's keys are fields, $and, $or or $not)"),
                    ))
                }
                field => self.field(&here, field, value, depth + 1)?,
            };
            all.push(node);
        }
        Ok(match all.len() {
            1 => all.pop().unwrap_or(Node::All(Vec::new())),
            _ => Node::All(all),
        })
    }

    /// The conditions on one field: a bare scalar (`$eq`) or an object of operators.
    fn field(&mut self, at: &str, key: &str, value: &Value, depth: usize) -> Result<Node, InvalidInput> {
        if key.is_empty() || key.len() > FILTER_KEY_BYTES_MAX {
            return Err(invalid(at, format!("a field name must be 1 to {FILTER_KEY_BYTES_MAX} bytes")));
        }
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(invalid(at, format!("field {key:?} has an empty part between dots")));
        }
        match value {
            Value::Object(ops) => self.operators(at, key, &path, ops, depth),
            Value::Array(_) => Err(invalid(
                at,
                "an array is not a value to compare with: use {\"$in\": [...]} or {\"$contains\": v}",
            )),
            scalar => {
                self.clause(at, depth)?;
                let cond = Cond::Eq(self.scalar(at, scalar)?);
                Ok(Node::Field(FieldCond { key: key.to_owned(), path, cond, at: at.to_owned() }))
            }
        }
    }

    fn operators(
        &mut self,
        at: &str,
        key: &str,
        path: &[String],
        ops: &Map<String, Value>,
        depth: usize,
    ) -> Result<Node, InvalidInput> {
        if ops.is_empty() {
            return Err(invalid(at, "an empty object is not a condition (use an operator such as $eq)"));
        }
        let mut all = Vec::with_capacity(ops.len());
        for (op, operand) in ops {
            let here = child(at, op);
            self.clause(&here, depth)?;
            let field = |cond| {
                Node::Field(FieldCond { key: key.to_owned(), path: path.to_vec(), cond, at: here.clone() })
            };
            let node = match op.as_str() {
                "$eq" | "$contains" => field(Cond::Eq(self.scalar(&here, operand)?)),
                "$ne" => Node::Not(Box::new(field(Cond::Eq(self.scalar(&here, operand)?)))),
                "$in" => field(Cond::In(self.list(&here, operand)?)),
                "$nin" => Node::Not(Box::new(field(Cond::In(self.list(&here, operand)?)))),
                "$gt" | "$gte" | "$lt" | "$lte" => {
                    let range = match op.as_str() {
                        "$gt" => RangeOp::Gt,
                        "$gte" => RangeOp::Gte,
                        "$lt" => RangeOp::Lt,
                        _ => RangeOp::Lte,
                    };
                    field(Cond::Range(range, bound(&here, operand)?))
                }
                "$exists" => {
                    let Value::Bool(wanted) = operand else {
                        return Err(invalid(&here, format!("takes true or false, got {}", kind(operand))));
                    };
                    field(Cond::Exists(*wanted))
                }
                "$not" => {
                    let Value::Object(inner) = operand else {
                        return Err(invalid(
                            &here,
                            format!("takes an object of operators, got {}", kind(operand)),
                        ));
                    };
                    Node::Not(Box::new(self.operators(&here, key, path, inner, depth + 1)?))
                }
                other if other.starts_with('$') => {
                    return Err(invalid(
                        &here,
                        format!(
                            "unknown operator {other:?} (use $eq, $ne, $in, $nin, $gt, $gte, $lt, $lte, \
                             $exists, $contains or $not)"
                        ),
                    ))
                }
                other => {
                    return Err(invalid(
                        &here,
                        format!(
                            "{other:?} is not an operator: a field's object holds operators; write a nested \
                             field as a dotted key (\"{key}.{other}\")"
                        ),
                    ))
                }
            };
            all.push(node);
        }
        Ok(match all.len() {
            1 => all.pop().unwrap_or(Node::All(Vec::new())),
            _ => Node::All(all),
        })
    }

    fn scalar(&self, at: &str, value: &Value) -> Result<Scalar, InvalidInput> {
        Ok(match value {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => Scalar::Number(
                n.as_f64().ok_or_else(|| invalid(at, format!("number {n} is not representable")))?,
            ),
            Value::String(s) => Scalar::Str(s.clone()),
            other => {
                return Err(invalid(
                    at,
                    format!("takes a string, number, boolean or null, got {}", kind(other)),
                ))
            }
        })
    }

    fn list(&self, at: &str, value: &Value) -> Result<Vec<Scalar>, InvalidInput> {
        let Value::Array(items) = value else {
            return Err(invalid(at, format!("takes an array of values, got {}", kind(value))));
        };
        if items.is_empty() || items.len() > FILTER_IN_MAX {
            return Err(invalid(at, format!("takes 1 to {FILTER_IN_MAX} values, got {}", items.len())));
        }
        items.iter().enumerate().map(|(i, item)| self.scalar(&format!("{at}[{i}]"), item)).collect()
    }
}

fn bound(at: &str, value: &Value) -> Result<Bound, InvalidInput> {
    match value {
        Value::Number(n) => n
            .as_f64()
            .map(Bound::Number)
            .ok_or_else(|| invalid(at, format!("number {n} is not representable"))),
        Value::String(s) => instant(s).map(Bound::Time).ok_or_else(|| {
            invalid(at, format!("takes a number or an RFC 3339 timestamp, got the string {s:?}"))
        }),
        other => Err(invalid(at, format!("takes a number or an RFC 3339 timestamp, got {}", kind(other)))),
    }
}

/// A JSON value's kind, for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::super::Filter;
    use serde_json::json;

    fn error(value: serde_json::Value) -> (String, String) {
        let e = Filter::parse("filter", &value).unwrap_err();
        (e.field, e.reason)
    }

    #[test]
    fn errors_name_the_path_of_the_offending_clause() {
        assert_eq!(
            error(json!({"$and": [{"a": 1}, {"price": {"$gt": true}}]})).0,
            "filter.$and[1].price.$gt"
        );
        assert_eq!(error(json!({"a": {"$regex": "x"}})).0, "filter.a.$regex");
        assert_eq!(error(json!({"$nor": []})).0, "filter.$nor");
        assert_eq!(error(json!({"a": {"$in": [1, [2]]}})).0, "filter.a.$in[1]");
        assert_eq!(error(json!({"a": {"$gt": "yesterday"}})).0, "filter.a.$gt");
        assert_eq!(error(json!({"a": {"b": 1}})).0, "filter.a.b");
        assert_eq!(error(json!({"a..b": 1})).0, "filter.a..b");
        assert_eq!(error(json!([1])).0, "filter");
        assert_eq!(error(json!({"$or": []})).0, "filter.$or");
        assert_eq!(error(json!({"a": {"$exists": 1}})).0, "filter.a.$exists");
    }

    #[test]
    fn depth_and_clause_counts_are_bounded() {
        let mut deep = json!({"a": 1});
        for _ in 0..crate::limits::FILTER_DEPTH_MAX {
            deep = json!({ "$not": deep });
        }
        assert!(error(deep).1.contains("deeper"));
        let wide: serde_json::Map<String, serde_json::Value> =
            (0..=crate::limits::FILTER_CLAUSES_MAX).map(|i| (format!("f{i}"), json!(i))).collect();
        assert!(error(serde_json::Value::Object(wide)).1.contains("clauses"));
        let many: Vec<_> = (0..=crate::limits::FILTER_IN_MAX).collect();
        assert!(error(json!({"a": {"$in": many}})).1.contains("1 to"));
    }
}
