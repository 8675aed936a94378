//! The `filter` of a request body (search, items, count, delete): parsed into the
//! engine's selection, described for OpenAPI, and its plan shaped for `explain`.

use annal_engine::{Filter, Plan, Select};
use serde_json::{json, Value};

use super::error::ApiError;

/// A metadata filter, as OpenAPI documents it.
pub(crate) struct FilterSchema;

impl schemars::JsonSchema for FilterSchema {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Filter".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A metadata filter (docs/OPERATIONS.md, \"Metadata filters\"): an object of field conditions, all of which must hold. A field (a dotted path for nested keys, `a.b`) maps to a value ($eq) or to an object of operators: $eq, $ne, $in, $nin, $gt, $gte, $lt, $lte (numbers or RFC 3339 timestamps), $exists, $contains (array membership), $not. $and and $or take arrays of filters, $not a filter.",
            "type": "object",
            "examples": [{"tenant": "t1", "year": {"$gte": 2020}, "$or": [{"tags": {"$contains": "news"}}, {"draft": false}]}]
        })
    }
}

/// The selection of a read or delete from its `filter` and `partition` fields.
pub(crate) fn select(filter: Option<&Value>, partition: Option<String>) -> Result<Select, ApiError> {
    let filter = filter.map(|f| Filter::parse("filter", f)).transpose().map_err(annal_engine::Error::from)?;
    Ok(Select { partition, filter })
}

/// A plan as `explain` shows it.
pub(crate) fn plan_json(plan: &Plan) -> Value {
    json!({
        "strategy": plan.strategy.name(),
        "estimate": plan.estimate,
        "estimate_exact": true,
        "live": plan.live,
        "selectivity": plan.selectivity,
        "indexed": plan.indexed,
        "evaluated": plan.evaluated,
        "ef_search": plan.ef_search,
        "exact_max": plan.exact_max,
        "fallback": plan.fallback,
    })
}
