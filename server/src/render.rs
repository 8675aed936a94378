//! The one JSON rendering of an event, shared by `annal log dump --json`, `annal
//! events`, `annal log tail` and `GET /admin/events`: fields `seq`, `time_ms`, `actor`,
//! `kind` and the kind's fields as `body` (docs/FORMAT.md, "Events as JSON"). With
//! vectors it parses back into the same event ([`event_from_json`]).
//!
//! A leaf: it imports nothing from the rest of the crate.

use annal_engine::event::{Event, EventBody, Stamp};
use serde_json::{json, Value};

/// One event as a JSON object: `seq`, `time_ms`, `actor`, `kind` and the kind's fields
/// as `body`. Without `vectors`, each vector is replaced by its length (`"vector":
/// {"dimension": N}`), which does not parse back.
pub fn event_json(seq: u64, event: &Event, vectors: bool) -> Value {
    let mut value = serde_json::to_value(&event.body).unwrap_or_else(|e| json!({"error": e.to_string()}));
    if !vectors {
        elide_vectors(&mut value);
    }
    let mut out = serde_json::Map::new();
    out.insert("seq".into(), seq.into());
    out.insert("time_ms".into(), event.stamp.time_ms.into());
    out.insert("actor".into(), event.stamp.actor.clone().into());
    if let Value::Object(tagged) = value {
        out.extend(tagged);
    }
    Value::Object(out)
}

fn elide_vectors(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "vector" {
                    if let Value::Array(a) = v {
                        *v = json!({"dimension": a.len()});
                        continue;
                    }
                }
                elide_vectors(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(elide_vectors),
        _ => {}
    }
}

/// Parse a line of `annal log dump --json --vectors` back into its sequence number and
/// event.
///
/// # Errors
/// A missing or mistyped field, named by serde.
pub fn event_from_json(value: &Value) -> Result<(u64, Event), Box<dyn std::error::Error>> {
    let seq = value["seq"].as_u64().ok_or("seq: missing or not a number")?;
    let time_ms = value["time_ms"].as_u64().ok_or("time_ms: missing or not a number")?;
    let actor = value["actor"].as_str().ok_or("actor: missing or not a string")?.to_owned();
    let tagged = json!({"kind": value["kind"], "body": value["body"]});
    let body: EventBody = serde_json::from_value(tagged)?;
    Ok((seq, Event { stamp: Stamp { time_ms, actor }, body }))
}
