//! The event schema at run time: the catalogue read from the embedded
//! descriptor set, field-rule validation, and canonical proto3 JSON.

pub mod catalogue;
pub mod compat;
mod envelope;
pub mod name;
pub mod rules;
pub mod typescript;

use std::sync::LazyLock;

use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, Kind, MessageDescriptor, SerializeOptions, Value,
};
use serde_json::json;

pub use catalogue::{Catalogue, EventType, placed};
pub use name::{EventName, NameError};
pub use rules::Violation;

use crate::proto::events::v1::Event;

/// Why a published event was rejected by the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("event has no payload: set exactly one field of `Event.payload`")]
    EmptyPayload,
    #[error("event does not decode against the catalogue: {0}")]
    Decode(String),
    #[error("event breaks {} field rule(s): {}", .0.len(), describe(.0))]
    Rules(Vec<Violation>),
    #[error("unknown event `{0}`; the `schema` command lists the catalogue")]
    UnknownEvent(String),
    /// A producer's catalogue is newer than this bridge's.
    #[error("{0}: this bridge's catalogue is older than the producer's; deploy the bridge first")]
    Newer(String),
    #[error("event JSON does not match `{name}`: {detail}")]
    Json { name: String, detail: String },
}

fn describe(v: &[Violation]) -> String {
    v.iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An event that passed the schema: its SSE name and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub name: EventName,
    pub json: String,
}

/// The descriptor pool and catalogue compiled into this binary.
pub struct Schema {
    catalogue: Catalogue,
    json: SerializeOptions,
}

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    // build.rs decoded and checked these exact bytes, so failing here means
    // the binary itself is corrupt.
    let pool = DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)
        .expect("embedded descriptor set was checked by build.rs");
    Schema::from_pool(pool).expect("embedded catalogue was checked by build.rs")
});

impl Schema {
    /// The schema compiled into this binary.
    pub fn embedded() -> &'static Schema {
        &SCHEMA
    }

    /// Loads a schema from any pool (used by tests of catalogue rules).
    pub fn from_pool(pool: DescriptorPool) -> Result<Schema, Vec<rules::RuleError>> {
        let catalogue = Catalogue::load(&pool)?;
        Ok(Schema {
            catalogue,
            json: SerializeOptions::new()
                .use_proto_field_name(true)
                .skip_default_fields(false)
                .stringify_64_bit_integers(true),
        })
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Validates an envelope and renders its payload as JSON.
    pub fn prepare(&self, event: &Event) -> Result<Prepared, SchemaError> {
        self.prepare_encoded(&event.encode_to_vec())
    }

    /// Like [`Schema::prepare`], for an already encoded envelope.
    pub fn prepare_encoded(&self, bytes: &[u8]) -> Result<Prepared, SchemaError> {
        self.prepare_checked(bytes, None)
    }

    /// As [`Schema::prepare_encoded`], for a publish to a channel with
    /// `prefix`: an event may go only to the prefixes it declares, and a
    /// wrong one is reported with the payload's own violations.
    pub fn prepare_for_prefix(&self, bytes: &[u8], prefix: &str) -> Result<Prepared, SchemaError> {
        self.prepare_checked(bytes, Some(prefix))
    }

    fn prepare_checked(&self, bytes: &[u8], prefix: Option<&str>) -> Result<Prepared, SchemaError> {
        let found = envelope::payload(bytes, |n| self.catalogue.by_field(n).is_some()).map_err(
            |e| match e {
                envelope::EnvelopeError::Unknown(_) => SchemaError::Newer(e.to_string()),
                _ => SchemaError::Decode(e.to_string()),
            },
        )?;
        let Some(found) = found else {
            return Err(SchemaError::EmptyPayload);
        };
        let event = self
            .catalogue
            .by_field(found.field)
            .ok_or(SchemaError::EmptyPayload)?;
        let mut payload = DynamicMessage::new(event.message.clone());
        for part in found.parts {
            payload
                .merge(part)
                .map_err(|e| SchemaError::Decode(e.to_string()))?;
        }
        // Fields this catalogue does not know would be dropped from the
        // frame without a word: refused instead, so rollouts go bridges
        // first (docs/schema.md).
        if let Some(unknown) = payload.unknown_fields().next() {
            return Err(SchemaError::Newer(format!(
                "field {} of `{}` is unknown",
                unknown.number(),
                event.name
            )));
        }
        let mut violations = Vec::new();
        if let Some(prefix) = prefix {
            if !event.prefixes.iter().any(|p| p == prefix) {
                violations.push(Violation {
                    field: "channel.prefix".to_owned(),
                    description: format!(
                        "event `{}` may be published to channels with prefix {}; got `{prefix}`",
                        event.name,
                        quoted_list(&event.prefixes, "or")
                    ),
                });
            }
        }
        event.rules.check(&payload, &event.path, &mut violations);
        if !violations.is_empty() {
            return Err(SchemaError::Rules(violations));
        }
        Ok(Prepared {
            name: event.name.clone(),
            json: self.to_json(&payload),
        })
    }

    fn to_json(&self, message: &DynamicMessage) -> String {
        let mut out = Vec::with_capacity(128);
        let mut ser = serde_json::Serializer::new(&mut out);
        // Serializing a DynamicMessage into memory cannot fail: every value
        // it holds has a JSON form.
        if message
            .serialize_with_options(&mut ser, &self.json)
            .is_err()
        {
            return "{}".to_owned();
        }
        String::from_utf8(out).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Builds an envelope from an event name and its JSON payload (proto or
    /// JSON field names), as the CLI and tools do.
    pub fn event_from_json(&self, name: &str, json: &str) -> Result<Event, SchemaError> {
        let event = self
            .catalogue
            .by_name(name)
            .ok_or_else(|| SchemaError::UnknownEvent(name.to_owned()))?;
        let mut de = serde_json::Deserializer::from_str(json);
        let payload = DynamicMessage::deserialize(event.message.clone(), &mut de).map_err(|e| {
            SchemaError::Json {
                name: name.to_owned(),
                detail: e.to_string(),
            }
        })?;
        let mut envelope = DynamicMessage::new(self.catalogue.envelope.clone());
        envelope.set_field(&event.field, Value::Message(payload));
        Event::decode(envelope.encode_to_vec().as_slice())
            .map_err(|e| SchemaError::Decode(e.to_string()))
    }

    /// The catalogue as JSON for tools: names, fields, types, rules and an
    /// example payload of each event.
    pub fn describe(&self) -> serde_json::Value {
        let events: Vec<serde_json::Value> = self
            .catalogue
            .events()
            .iter()
            .map(|e| {
                let rules = e.rules.describe();
                let sets = e.rules.rule_sets();
                let fields: Vec<serde_json::Value> = e
                    .message
                    .fields()
                    .map(|f| {
                        let field_rules = rules
                            .iter()
                            .find(|(n, _)| n == f.name())
                            .map(|(_, r)| r.clone())
                            .unwrap_or_default();
                        let set = sets
                            .iter()
                            .find(|(n, _)| n == f.name())
                            .map(|(_, s)| s.clone())
                            .unwrap_or_default();
                        let mut field = json!({
                            "name": f.name(),
                            "number": f.number(),
                            "type": type_name(&f.kind(), f.is_list()),
                            "rules": field_rules,
                            "checks": checks_json(&set),
                        });
                        // Enum values by name and number, for forms and tools.
                        if let Kind::Enum(en) = f.kind() {
                            field["values"] = en
                                .values()
                                .map(|v| json!({"name": v.name(), "number": v.number()}))
                                .collect();
                        }
                        field
                    })
                    .collect();
                json!({
                    "name": &*e.name,
                    "prefixes": &*e.prefixes,
                    "message": e.message.full_name(),
                    "envelope_field": e.field.name(),
                    "envelope_number": e.field.number(),
                    "fields": fields,
                    "example": example(&e.message),
                })
            })
            .collect();
        json!({ "prefixes": self.catalogue.prefixes(), "events": events })
    }
}

/// A field's rules as data a page can check before sending.
fn checks_json(set: &rules::RuleSet) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    if set.uuid {
        out.insert("uuid".into(), json!(true));
    }
    if set.required {
        out.insert("required".into(), json!(true));
    }
    if let Some(n) = set.max_chars.or(set.max_bytes) {
        out.insert("max_len".into(), json!(n));
    }
    if let Some(n) = set.min {
        out.insert("min".into(), json!(n));
    }
    if let Some(n) = set.max {
        out.insert("max".into(), json!(n));
    }
    if let Some(other) = set.lte.first() {
        out.insert("lte".into(), json!(other));
    }
    serde_json::Value::Object(out)
}

/// `` `a` ``, `` `a` or `b` ``, `` `a`, `b` or `c` `` (with `and`: all of them).
pub(crate) fn quoted_list(items: &[String], conjunction: &str) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} {conjunction} {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn type_name(kind: &Kind, list: bool) -> String {
    let base = match kind {
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
        other => format!("{other:?}").to_lowercase(),
    };
    if list {
        format!("repeated {base}")
    } else {
        base
    }
}

/// A plausible example payload: UUID fields get a UUID, strings a word,
/// numbers a small value, enums their first non-zero value.
pub fn example(message: &MessageDescriptor) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for f in message.fields() {
        let v = match f.kind() {
            Kind::String if f.name().ends_with("_id") => {
                json!("0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80")
            }
            Kind::String => json!(format!("example {}", f.name())),
            Kind::Bool => json!(true),
            Kind::Int64 | Kind::Uint64 | Kind::Sint64 | Kind::Fixed64 | Kind::Sfixed64 => {
                json!("1")
            }
            Kind::Double | Kind::Float => json!(0.5),
            Kind::Bytes => json!(""),
            Kind::Enum(e) => {
                let v = e.values().nth(1).or_else(|| e.values().next());
                json!(v.map(|v| v.name().to_owned()).unwrap_or_default())
            }
            Kind::Message(m) => example(&m),
            _ => json!(1),
        };
        out.insert(
            f.name().to_owned(),
            if f.is_list() { json!([v]) } else { v },
        );
    }
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `prepare_encoded` did before it read the envelope itself:
    /// decode it whole, take its one set field.
    fn by_dynamic_envelope(schema: &Schema, bytes: &[u8]) -> Option<(String, String)> {
        let envelope = DynamicMessage::decode(schema.catalogue.envelope.clone(), bytes).ok()?;
        let (field, value) = envelope.fields().next()?;
        let event = schema.catalogue.by_field(field.number())?;
        let Value::Message(payload) = value else {
            return None;
        };
        Some((event.name.to_string(), schema.to_json(payload)))
    }

    #[test]
    fn reading_the_envelope_agrees_with_decoding_it() {
        let schema = Schema::embedded();
        let scan = "0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80";
        let events = [
            (
                "scan.progress",
                serde_json::json!({"scan_id": scan, "checked": 3, "total": 9}),
            ),
            (
                "scan.end",
                serde_json::json!({"scan_id": scan, "state": "SCAN_STATE_FAILED", "findings": 2, "duration_ms": "18446744073709551615"}),
            ),
            (
                "message.delta",
                serde_json::json!({"content": "line one\nline \"two\""}),
            ),
        ];
        let encoded: Vec<Vec<u8>> = events
            .iter()
            .map(|(name, json)| {
                schema
                    .event_from_json(name, &json.to_string())
                    .unwrap()
                    .encode_to_vec()
            })
            .collect();
        for bytes in &encoded {
            let prepared = schema.prepare_encoded(bytes).unwrap();
            let want = by_dynamic_envelope(schema, bytes).unwrap();
            assert_eq!((prepared.name.to_string(), prepared.json), want);
        }
        // Concatenated envelopes merge: two of the same event merge their
        // fields, a different later one replaces it.
        for bytes in [
            [encoded[0].clone(), encoded[0].clone()].concat(),
            [encoded[0].clone(), encoded[2].clone()].concat(),
            [encoded[2].clone(), encoded[0].clone(), encoded[0].clone()].concat(),
        ] {
            let prepared = schema.prepare_encoded(&bytes).unwrap();
            let want = by_dynamic_envelope(schema, &bytes).unwrap();
            assert_eq!((prepared.name.to_string(), prepared.json), want);
        }
        assert_eq!(schema.prepare_encoded(&[]), Err(SchemaError::EmptyPayload));
        assert!(matches!(
            schema.prepare_encoded(&[0x0a, 0x05, 0x00]),
            Err(SchemaError::Decode(_))
        ));
    }
}
