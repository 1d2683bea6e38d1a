//! The event catalogue: which events exist, their SSE names and their rules,
//! read from the `events.v1.Event` envelope in the descriptor pool.
//!
//! Like `rules`, this file is also compiled into `build.rs`, so a catalogue
//! that breaks the naming rules never builds.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor, Value};

use super::name::EventName;
use super::rules::{EVENT_NAME_EXT, MessageRules, PREFIX_EXT, RuleError};

/// Full name of the envelope message producers publish.
pub const ENVELOPE: &str = "events.v1.Event";
/// The oneof of the envelope that holds the payload.
pub const PAYLOAD_ONEOF: &str = "payload";
/// One event type of the catalogue.
#[derive(Debug, Clone)]
pub struct EventType {
    /// The SSE `event:` name, `<resource>.<verb>`; shared, since every
    /// publish of the type carries it.
    pub name: EventName,
    /// The payload message.
    pub message: MessageDescriptor,
    /// The envelope field that carries it.
    pub field: FieldDescriptor,
    /// Its compiled field rules.
    pub rules: MessageRules,
    /// The channel prefixes it may be published to, as declared.
    pub prefixes: Arc<[String]>,
    /// Where its rules' violations are reported (`event.<field>`), made
    /// once rather than per publish.
    pub path: String,
}

/// Every event of the envelope, by envelope field number and by name.
#[derive(Debug, Clone)]
pub struct Catalogue {
    prefixes: BTreeSet<String>,
    pub envelope: MessageDescriptor,
    events: Vec<EventType>,
    by_field: HashMap<u32, usize>,
    by_name: HashMap<String, usize>,
}

impl Catalogue {
    /// Reads and checks the catalogue. Every problem is reported, each naming
    /// the message and the broken rule.
    pub fn load(pool: &DescriptorPool) -> Result<Catalogue, Vec<RuleError>> {
        let mut errors = Vec::new();
        let Some(envelope) = pool.get_message_by_name(ENVELOPE) else {
            return Err(vec![RuleError {
                location: ENVELOPE.to_owned(),
                problem: "the envelope message is missing from proto/".to_owned(),
            }]);
        };
        let name_ext = pool.get_extension_by_name(EVENT_NAME_EXT);
        let mut events: Vec<EventType> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut by_field = HashMap::new();

        for field in envelope.fields() {
            let location = format!("{}.{}", envelope.full_name(), field.name());
            let in_oneof = field
                .containing_oneof()
                .is_some_and(|o| o.name() == PAYLOAD_ONEOF);
            if !in_oneof {
                errors.push(RuleError {
                    location,
                    problem: format!(
                        "every field of the envelope must be in `oneof {PAYLOAD_ONEOF}`"
                    ),
                });
                continue;
            }
            let Kind::Message(message) = field.kind() else {
                errors.push(RuleError {
                    location,
                    problem: "payloads must be messages".to_owned(),
                });
                continue;
            };
            let options = message.options();
            let name = match &name_ext {
                Some(ext) if options.has_extension(ext) => {
                    match options.get_extension(ext).as_ref() {
                        Value::String(s) => Some(s.clone()),
                        _ => None,
                    }
                }
                _ => None,
            };
            let Some(name) = name else {
                errors.push(RuleError {
                    location: message.full_name().to_owned(),
                    problem: format!(
                        "payload of `{location}` lacks `option ({EVENT_NAME_EXT}) = \"<resource>.<verb>\";`"
                    ),
                });
                continue;
            };
            // Every problem of the message is reported in one build: its
            // name's, then its rules'.
            let event_name = EventName::published(&name).map_err(|e| RuleError {
                location: message.full_name().to_owned(),
                problem: format!("event name `{name}`: {e}"),
            });
            let repeated = by_name.get(&name).map(|&first| RuleError {
                location: message.full_name().to_owned(),
                problem: format!(
                    "event name `{name}` is already used by `{}`; names must be unique",
                    events[first].message.full_name()
                ),
            });
            let rules = MessageRules::compile(pool, &message);
            let prefixes = declared_prefixes(pool, &message);
            let (event_name, rules, prefixes) = match (event_name, repeated, rules, prefixes) {
                (Ok(event_name), None, Ok(rules), Ok(prefixes)) => (event_name, rules, prefixes),
                (event_name, repeated, rules, prefixes) => {
                    errors.extend(event_name.err());
                    errors.extend(repeated);
                    errors.extend(rules.err().into_iter().flatten());
                    errors.extend(prefixes.err().into_iter().flatten());
                    continue;
                }
            };
            by_name.insert(name.clone(), events.len());
            by_field.insert(field.number(), events.len());
            events.push(EventType {
                name: event_name,
                path: format!("event.{}", field.name()),
                message,
                field,
                rules,
                prefixes: prefixes.into(),
            });
        }
        // A message named as an event but left out of the envelope would
        // build and simply not exist.
        if let Some(ext) = &name_ext {
            let members: Vec<String> = envelope
                .fields()
                .filter_map(|f| match f.kind() {
                    Kind::Message(m) => Some(m.full_name().to_owned()),
                    _ => None,
                })
                .collect();
            for message in pool.all_messages() {
                if message.options().has_extension(ext)
                    && !members.iter().any(|m| m == message.full_name())
                {
                    errors.push(RuleError {
                        location: message.full_name().to_owned(),
                        problem: format!(
                            "declares `option ({EVENT_NAME_EXT})` but is not a member of \
                             `{ENVELOPE}.{PAYLOAD_ONEOF}`: add a `{}` field to the oneof",
                            message.name()
                        ),
                    });
                }
            }
        }
        if events.is_empty() && errors.is_empty() {
            errors.push(RuleError {
                location: ENVELOPE.to_owned(),
                problem: "the catalogue has no events".to_owned(),
            });
        }
        if errors.is_empty() {
            let prefixes = events
                .iter()
                .flat_map(|e| e.prefixes.iter().cloned())
                .collect();
            Ok(Catalogue {
                envelope,
                events,
                by_field,
                by_name,
                prefixes,
            })
        } else {
            Err(errors)
        }
    }

    pub fn events(&self) -> &[EventType] {
        &self.events
    }

    pub fn by_field(&self, number: u32) -> Option<&EventType> {
        self.by_field.get(&number).map(|&i| &self.events[i])
    }

    pub fn by_name(&self, name: &str) -> Option<&EventType> {
        self.by_name.get(name).map(|&i| &self.events[i])
    }

    /// Every declared channel prefix, sorted: the only valid ones.
    pub fn prefixes(&self) -> &BTreeSet<String> {
        &self.prefixes
    }
}

/// The channel prefix rule, `^[a-z][a-z0-9-]{0,62}$`. `channel.rs` has its
/// own copy (this file is compiled into `build.rs` without it); a test keeps
/// the two in agreement.
pub fn is_prefix(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// The prefixes `message` declares with `(ssebridge.v1.prefix)`: at least
/// one, each well formed, none twice.
fn declared_prefixes(
    pool: &DescriptorPool,
    message: &MessageDescriptor,
) -> Result<Vec<String>, Vec<RuleError>> {
    let error = |problem: String| RuleError {
        location: message.full_name().to_owned(),
        problem,
    };
    let values = match pool.get_extension_by_name(PREFIX_EXT) {
        Some(ext) if message.options().has_extension(&ext) => {
            match message.options().get_extension(&ext).as_ref() {
                Value::List(items) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    };
    if values.is_empty() {
        return Err(vec![error(format!(
            "declares no channel prefix: add `option ({PREFIX_EXT}) = \"<prefix>\";` for each prefix the event may be published to"
        ))]);
    }
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for p in &values {
        if !is_prefix(p) {
            errors.push(error(format!(
                "channel prefix `{p}` breaks the prefix rule ^[a-z][a-z0-9-]{{0,62}}$"
            )));
        } else if !seen.insert(p.as_str()) {
            errors.push(error(format!("channel prefix `{p}` is declared twice")));
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// Where `location` (a message's full name, or a message's and then a
/// field's) is declared: `events/v1/events.proto:51`.
pub fn source_line(pool: &DescriptorPool, location: &str) -> Option<String> {
    let (file, path) = match pool.get_message_by_name(location) {
        Some(m) => (m.parent_file(), m.path().to_vec()),
        None => {
            let (message, field) = location.rsplit_once('.')?;
            let f = pool
                .get_message_by_name(message)?
                .get_field_by_name(field)?;
            (f.parent_file(), f.path().to_vec())
        }
    };
    let line = file
        .file_descriptor_proto()
        .source_code_info
        .as_ref()?
        .location
        .iter()
        .find(|l| l.path == path)?
        .span
        .first()?;
    // Spans count lines from 0.
    Some(format!("{}:{}", file.name(), line + 1))
}

/// Each error on a line of its own, after the place it points at.
pub fn placed(pool: &DescriptorPool, errors: &[RuleError]) -> Vec<String> {
    errors
        .iter()
        .map(|e| match source_line(pool, &e.location) {
            Some(at) => format!("{at}: {e}"),
            None => e.to_string(),
        })
        .collect()
}
