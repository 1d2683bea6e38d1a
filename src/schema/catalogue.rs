//! The event catalogue: which events exist, their SSE names and their rules,
//! read from the `events.v1.Event` envelope in the descriptor pool.
//!
//! Like `rules`, this file is also compiled into `build.rs`, so a catalogue
//! that breaks the naming rules never builds.

use std::collections::HashMap;

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor, Value};

use super::rules::{EVENT_NAME_EXT, MessageRules, RuleError};

/// Full name of the envelope message producers publish.
pub const ENVELOPE: &str = "events.v1.Event";
/// The oneof of the envelope that holds the payload.
pub const PAYLOAD_ONEOF: &str = "payload";
/// Event names with this prefix are the bridge's own control events.
pub const RESERVED_PREFIX: &str = "bridge.";

/// Why an event name is not a valid `<resource>.<verb>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Shape,
    Reserved,
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::Shape => f.write_str(
                "event names must be `<resource>.<verb>` matching ^[a-z][a-z0-9_]*\\.[a-z][a-z0-9_]*$",
            ),
            NameError::Reserved => write!(
                f,
                "the `{RESERVED_PREFIX}` prefix is reserved for the bridge's control events"
            ),
        }
    }
}

fn is_word(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// Checks `name` against `^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$`, with the
/// reserved prefix allowed only when `allow_reserved`.
pub fn check_event_name(name: &str, allow_reserved: bool) -> Result<(), NameError> {
    let Some((resource, verb)) = name.split_once('.') else {
        return Err(NameError::Shape);
    };
    if !is_word(resource) || !is_word(verb) {
        return Err(NameError::Shape);
    }
    if !allow_reserved && name.starts_with(RESERVED_PREFIX) {
        return Err(NameError::Reserved);
    }
    Ok(())
}

/// One event type of the catalogue.
#[derive(Debug, Clone)]
pub struct EventType {
    /// The SSE `event:` name, `<resource>.<verb>`; shared, since every
    /// publish of the type carries it.
    pub name: std::sync::Arc<str>,
    /// The payload message.
    pub message: MessageDescriptor,
    /// The envelope field that carries it.
    pub field: FieldDescriptor,
    /// Its compiled field rules.
    pub rules: MessageRules,
    /// Where its rules' violations are reported (`event.<field>`), made
    /// once rather than per publish.
    pub path: String,
}

/// Every event of the envelope, by envelope field number and by name.
#[derive(Debug, Clone)]
pub struct Catalogue {
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
            if let Err(e) = check_event_name(&name, false) {
                errors.push(RuleError {
                    location: message.full_name().to_owned(),
                    problem: format!("event name `{name}`: {e}"),
                });
                continue;
            }
            if let Some(&first) = by_name.get(&name) {
                errors.push(RuleError {
                    location: message.full_name().to_owned(),
                    problem: format!(
                        "event name `{name}` is already used by `{}`; names must be unique",
                        events[first].message.full_name()
                    ),
                });
                continue;
            }
            let rules = match MessageRules::compile(pool, &message) {
                Ok(rules) => rules,
                Err(mut e) => {
                    errors.append(&mut e);
                    continue;
                }
            };
            by_name.insert(name.clone(), events.len());
            by_field.insert(field.number(), events.len());
            events.push(EventType {
                name: name.into(),
                path: format!("event.{}", field.name()),
                message,
                field,
                rules,
            });
        }
        if events.is_empty() && errors.is_empty() {
            errors.push(RuleError {
                location: ENVELOPE.to_owned(),
                problem: "the catalogue has no events".to_owned(),
            });
        }
        if errors.is_empty() {
            Ok(Catalogue {
                envelope,
                events,
                by_field,
                by_name,
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
}
