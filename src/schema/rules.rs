//! Field rules: compiled from the `ssebridge.v1` options in the catalogue and
//! checked against every published payload.
//!
//! This file is also compiled into `build.rs`, so a rule the validator does
//! not understand (or one put on a field type it cannot apply to) fails the
//! build instead of being silently ignored. It therefore depends only on
//! `prost-reflect`, `uuid` and the standard library.
//! (Over 500 lines: each rule's compiler and its check belong together, as
//! do the unit tests that run them against the embedded catalogue.)

use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumDescriptor, ExtensionDescriptor, FieldDescriptor, Kind,
    MessageDescriptor, Value,
};

/// Package whose options the validator understands.
pub const OPTIONS_PACKAGE: &str = "ssebridge.v1";
const FIELD_RULES_EXT: &str = "ssebridge.v1.rules";
const MESSAGE_RULES_EXT: &str = "ssebridge.v1.message_rules";
/// The message option naming an event (read by the catalogue, not a rule).
pub const EVENT_NAME_EXT: &str = "ssebridge.v1.event";
/// The message option listing an event's channel prefixes (read by the
/// catalogue, not a rule).
pub const PREFIX_EXT: &str = "ssebridge.v1.prefix";

/// One broken field rule: where it was broken and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Dotted proto field path, e.g. `event.scan_progress.checked`.
    pub field: String,
    pub description: String,
}

/// A rule declared in the catalogue that the validator cannot enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// Full name of the message (and field, when the rule is on a field).
    pub location: String,
    pub problem: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.problem)
    }
}

#[derive(Debug, Clone)]
enum Check {
    Uuid,
    Required,
    MaxChars(u32),
    MaxBytes(u32),
    Min(i64),
    Max(i64),
    /// Every enum field, with no option: only the enum's own values.
    /// Protobuf keeps unknown numbers, and browsers would get a number
    /// where the generated types promise one of the names.
    Enum(EnumDescriptor),
    /// A nested message with rules of its own.
    Nested(Box<MessageRules>),
}

/// One field's rules as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    pub uuid: bool,
    pub required: bool,
    pub max_chars: Option<u32>,
    pub max_bytes: Option<u32>,
    pub min: Option<i64>,
    pub max: Option<i64>,
    /// The fields this one must be at most.
    pub lte: Vec<String>,
    /// An enum field's values, number and name.
    pub enum_values: Vec<(i32, String)>,
    /// A message field's own fields' rules.
    pub nested: Vec<(String, RuleSet)>,
}

#[derive(Debug, Clone)]
struct FieldChecks {
    field: FieldDescriptor,
    checks: Vec<Check>,
}

/// The compiled rules of one message type.
#[derive(Debug, Clone, Default)]
pub struct MessageRules {
    fields: Vec<FieldChecks>,
    lte: Vec<(FieldDescriptor, FieldDescriptor)>,
}

fn is_integer(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::Int32
            | Kind::Int64
            | Kind::Uint32
            | Kind::Uint64
            | Kind::Sint32
            | Kind::Sint64
            | Kind::Fixed32
            | Kind::Fixed64
            | Kind::Sfixed32
            | Kind::Sfixed64
    )
}

fn as_i128(value: &Value) -> Option<i128> {
    match value {
        Value::I32(v) => Some((*v).into()),
        Value::I64(v) => Some((*v).into()),
        Value::U32(v) => Some((*v).into()),
        Value::U64(v) => Some((*v).into()),
        _ => None,
    }
}

fn extension(pool: &DescriptorPool, name: &str) -> Option<ExtensionDescriptor> {
    pool.get_extension_by_name(name)
}

/// Rejects options from any package other than ours: the bridge would not
/// enforce them, and an unenforced rule is worse than none.
fn foreign_extensions(options: &DynamicMessage, location: &str, errors: &mut Vec<RuleError>) {
    for (ext, _) in options.extensions() {
        if ext.parent_file().package_name() != OPTIONS_PACKAGE {
            errors.push(RuleError {
                location: location.to_owned(),
                problem: format!(
                    "option `{}` is not understood by the bridge's validator; \
                     use the rules of `{OPTIONS_PACKAGE}` (see docs/schema.md)",
                    ext.full_name()
                ),
            });
        }
    }
}

impl MessageRules {
    /// Compiles the rules declared on `message` and, recursively, on the
    /// message types of its fields.
    pub fn compile(
        pool: &DescriptorPool,
        message: &MessageDescriptor,
    ) -> Result<MessageRules, Vec<RuleError>> {
        let mut errors = Vec::new();
        let rules = compile_message(pool, message, &mut errors, 0);
        if errors.is_empty() {
            Ok(rules)
        } else {
            Err(errors)
        }
    }

    /// Checks `message`, appending every broken rule to `out` with field
    /// paths under `prefix`.
    pub fn check(&self, message: &DynamicMessage, prefix: &str, out: &mut Vec<Violation>) {
        for fc in &self.fields {
            let value = message.get_field(&fc.field);
            for check in &fc.checks {
                check_value(check, &fc.field, &value, message, prefix, out);
            }
        }
        for (a, b) in &self.lte {
            let left = as_i128(&message.get_field(a));
            let right = as_i128(&message.get_field(b));
            if let (Some(l), Some(r)) = (left, right) {
                if l > r {
                    out.push(Violation {
                        field: format!("{prefix}.{}", a.name()),
                        description: format!("must be <= {} ({l} > {r})", b.name()),
                    });
                }
            }
        }
    }

    /// Each field's rules as plain data, for the compatibility check.
    pub fn rule_sets(&self) -> Vec<(String, RuleSet)> {
        let mut out: Vec<(String, RuleSet)> = self
            .fields
            .iter()
            .map(|fc| {
                let mut set = RuleSet::default();
                for check in &fc.checks {
                    match check {
                        Check::Uuid => set.uuid = true,
                        Check::Required => set.required = true,
                        Check::MaxChars(n) => set.max_chars = Some(*n),
                        Check::MaxBytes(n) => set.max_bytes = Some(*n),
                        Check::Min(n) => set.min = Some(*n),
                        Check::Max(n) => set.max = Some(*n),
                        Check::Enum(e) => {
                            set.enum_values = e
                                .values()
                                .map(|v| (v.number(), v.name().to_owned()))
                                .collect()
                        }
                        Check::Nested(rules) => set.nested = rules.rule_sets(),
                    }
                }
                (fc.field.name().to_owned(), set)
            })
            .collect();
        for (a, b) in &self.lte {
            match out.iter_mut().find(|(name, _)| name == a.name()) {
                Some((_, set)) => set.lte.push(b.name().to_owned()),
                None => out.push((
                    a.name().to_owned(),
                    RuleSet {
                        lte: vec![b.name().to_owned()],
                        ..RuleSet::default()
                    },
                )),
            }
        }
        out
    }

    /// Human-readable rules of each field, for the catalogue listing.
    pub fn describe(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = self
            .fields
            .iter()
            .map(|fc| {
                let rules = fc
                    .checks
                    .iter()
                    .filter_map(|c| match c {
                        Check::Uuid => Some("uuid".to_owned()),
                        Check::Required => Some("required".to_owned()),
                        Check::MaxChars(n) => Some(format!("max_len {n} chars")),
                        Check::MaxBytes(n) => Some(format!("max_len {n} bytes")),
                        Check::Min(n) => Some(format!(">= {n}")),
                        Check::Max(n) => Some(format!("<= {n}")),
                        Check::Enum(e) => Some(format!(
                            "one of {}",
                            e.values()
                                .map(|v| v.name().to_owned())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                        Check::Nested(_) => None,
                    })
                    .collect();
                (fc.field.name().to_owned(), rules)
            })
            .collect();
        for (a, b) in &self.lte {
            let rule = format!("<= {}", b.name());
            match out.iter_mut().find(|(name, _)| name == a.name()) {
                Some((_, rules)) => rules.push(rule),
                None => out.push((a.name().to_owned(), vec![rule])),
            }
        }
        out
    }
}

fn compile_message(
    pool: &DescriptorPool,
    message: &MessageDescriptor,
    errors: &mut Vec<RuleError>,
    depth: usize,
) -> MessageRules {
    let mut rules = MessageRules::default();
    if depth > 16 {
        errors.push(RuleError {
            location: message.full_name().to_owned(),
            problem: "message nesting deeper than 16 levels".to_owned(),
        });
        return rules;
    }
    let options = message.options();
    foreign_extensions(&options, message.full_name(), errors);
    for (ext, value) in options.extensions() {
        match ext.full_name() {
            EVENT_NAME_EXT | PREFIX_EXT => {}
            MESSAGE_RULES_EXT => {
                if let Value::Message(m) = value {
                    compile_message_rules(message, m, &mut rules, errors);
                }
            }
            other if ext.parent_file().package_name() == OPTIONS_PACKAGE => {
                errors.push(RuleError {
                    location: message.full_name().to_owned(),
                    problem: format!("message option `{other}` is not understood by the validator"),
                });
            }
            _ => {}
        }
    }

    let field_ext = extension(pool, FIELD_RULES_EXT);
    for field in message.fields() {
        let location = format!("{}.{}", message.full_name(), field.name());
        let options = field.options();
        foreign_extensions(&options, &location, errors);
        let mut checks = Vec::new();
        if let Some(ext) = &field_ext {
            if options.has_extension(ext) {
                if let Value::Message(m) = options.get_extension(ext).as_ref() {
                    compile_field_rules(&field, m, &location, &mut checks, errors);
                }
            }
        }
        for (ext, _) in options.extensions() {
            if ext.parent_file().package_name() == OPTIONS_PACKAGE
                && ext.full_name() != FIELD_RULES_EXT
            {
                errors.push(RuleError {
                    location: location.clone(),
                    problem: format!(
                        "field option `{}` is not understood by the validator",
                        ext.full_name()
                    ),
                });
            }
        }
        if let Kind::Enum(values) = field.kind() {
            checks.push(Check::Enum(values));
        }
        if let Kind::Message(inner) = field.kind() {
            if !inner.full_name().starts_with("google.protobuf.") {
                let nested = compile_message(pool, &inner, errors, depth + 1);
                if !nested.fields.is_empty() || !nested.lte.is_empty() {
                    checks.push(Check::Nested(Box::new(nested)));
                }
            }
        }
        if !checks.is_empty() {
            rules.fields.push(FieldChecks { field, checks });
        }
    }
    rules
}

fn compile_field_rules(
    field: &FieldDescriptor,
    rules: &DynamicMessage,
    location: &str,
    checks: &mut Vec<Check>,
    errors: &mut Vec<RuleError>,
) {
    let kind = field.kind();
    let wrong_type = |rule: &str, wants: &str| RuleError {
        location: location.to_owned(),
        problem: format!(
            "rule `{rule}` applies to {wants} fields, not to `{}`",
            kind_name(&kind)
        ),
    };
    if rules.unknown_fields().next().is_some() {
        errors.push(RuleError {
            location: location.to_owned(),
            problem: "field rules carry unknown fields".to_owned(),
        });
    }
    let repeated = field.is_list() || field.is_map();
    for (rule, value) in rules.fields() {
        match (rule.name(), value) {
            ("uuid", Value::Bool(true)) => {
                if kind == Kind::String && !repeated {
                    checks.push(Check::Uuid);
                } else {
                    errors.push(wrong_type("uuid", "singular string"));
                }
            }
            ("required", Value::Bool(true)) => {
                if !repeated
                    && matches!(
                        kind,
                        Kind::String | Kind::Bytes | Kind::Message(_) | Kind::Enum(_)
                    )
                {
                    checks.push(Check::Required);
                } else {
                    errors.push(wrong_type(
                        "required",
                        "singular string, bytes, message or enum",
                    ));
                }
            }
            // `false` / `0` turn a rule off; nothing to enforce.
            ("uuid" | "required", Value::Bool(false)) | ("max_len", Value::U32(0)) => {}
            ("max_len", Value::U32(n)) => match kind {
                Kind::String if !repeated => checks.push(Check::MaxChars(*n)),
                Kind::Bytes if !repeated => checks.push(Check::MaxBytes(*n)),
                _ => errors.push(wrong_type("max_len", "singular string or bytes")),
            },
            ("min", Value::I64(n)) => {
                if is_integer(&kind) && !repeated {
                    checks.push(Check::Min(*n));
                } else {
                    errors.push(wrong_type("min", "singular integer"));
                }
            }
            ("max", Value::I64(n)) => {
                if is_integer(&kind) && !repeated {
                    checks.push(Check::Max(*n));
                } else {
                    errors.push(wrong_type("max", "singular integer"));
                }
            }
            // `false` / `0` turn a rule off; nothing to enforce.
            (other, _) => errors.push(RuleError {
                location: location.to_owned(),
                problem: format!("rule `{other}` is not understood by the validator"),
            }),
        }
    }
}

fn compile_message_rules(
    message: &MessageDescriptor,
    value: &DynamicMessage,
    rules: &mut MessageRules,
    errors: &mut Vec<RuleError>,
) {
    let location = message.full_name();
    for (rule, v) in value.fields() {
        match (rule.name(), v) {
            ("lte", Value::List(pairs)) => {
                for pair in pairs {
                    let Value::Message(pair) = pair else { continue };
                    let name = |n: &str| match pair.get_field_by_name(n).as_deref() {
                        Some(Value::String(s)) => s.clone(),
                        _ => String::new(),
                    };
                    let (a, b) = (name("field"), name("other"));
                    let fa = message.get_field_by_name(&a);
                    let fb = message.get_field_by_name(&b);
                    match (fa, fb) {
                        (Some(fa), Some(fb))
                            if is_integer(&fa.kind())
                                && is_integer(&fb.kind())
                                && !fa.is_list()
                                && !fb.is_list() =>
                        {
                            rules.lte.push((fa, fb));
                        }
                        _ => errors.push(RuleError {
                            location: location.to_owned(),
                            problem: format!(
                                "rule `lte {{field: \"{a}\", other: \"{b}\"}}` must name two singular integer fields of this message"
                            ),
                        }),
                    }
                }
            }
            (other, _) => errors.push(RuleError {
                location: location.to_owned(),
                problem: format!("message rule `{other}` is not understood by the validator"),
            }),
        }
    }
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The one form browsers get: `8-4-4-4-12` lowercase hex digits. Braced,
/// `urn:uuid:`, unhyphenated and uppercase forms are refused rather than
/// passed on as they came.
fn is_canonical_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        })
}

fn check_value(
    check: &Check,
    field: &FieldDescriptor,
    value: &Value,
    message: &DynamicMessage,
    prefix: &str,
    out: &mut Vec<Violation>,
) {
    // The field's path is made only when it is needed: every publish runs
    // these checks, and almost all of them pass.
    let path = || format!("{prefix}.{}", field.name());
    let mut fail = |description: String| {
        out.push(Violation {
            field: path(),
            description,
        })
    };
    match (check, value) {
        // An `optional` field may be left unset; set, it must be a UUID.
        (Check::Uuid, _) if field.supports_presence() && !message.has_field(field) => {}
        (Check::Uuid, Value::String(s)) if !is_canonical_uuid(s) => {
            fail(if s.is_empty() {
                "must be a UUID, got an empty string".to_owned()
            } else if uuid::Uuid::try_parse(s).is_ok() {
                format!(
                    "must be a UUID in its canonical form (lowercase, hyphenated) such as 0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80; send `{}`",
                    uuid::Uuid::try_parse(s)
                        .map(|u| u.hyphenated().to_string())
                        .unwrap_or_default()
                )
            } else {
                "must be a UUID such as 0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80".to_owned()
            });
        }
        (Check::Required, Value::String(s)) if s.trim().is_empty() => fail(if s.is_empty() {
            "must not be empty".to_owned()
        } else {
            "must not be only whitespace".to_owned()
        }),
        (Check::Required, Value::Bytes(b)) if b.is_empty() => fail("must not be empty".to_owned()),
        (Check::Required, Value::Message(_)) if !message.has_field(field) => {
            fail("must be set".to_owned())
        }
        // On an enum, `required` means a real value: not the zero one, which
        // proto3 sends when a producer forgot the field.
        (Check::Required, Value::EnumNumber(0)) => fail(match field.kind() {
            Kind::Enum(e) => format!(
                "must be set to one of {}; got {}",
                e.values()
                    .filter(|v| v.number() != 0)
                    .map(|v| v.name().to_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
                e.get_value(0)
                    .map(|v| v.name().to_owned())
                    .unwrap_or_else(|| "0".to_owned())
            ),
            _ => "must be set".to_owned(),
        }),
        (Check::MaxChars(n), Value::String(s)) => {
            let len = s.chars().count();
            if len > *n as usize {
                fail(format!("must be at most {n} characters, got {len}"));
            }
        }
        (Check::MaxBytes(n), Value::Bytes(b)) if b.len() > *n as usize => {
            fail(format!("must be at most {n} bytes, got {}", b.len()));
        }
        (Check::Min(n), v) => {
            if let Some(x) = as_i128(v) {
                if x < i128::from(*n) {
                    fail(format!("must be >= {n}, got {x}"));
                }
            }
        }
        (Check::Max(n), v) => {
            if let Some(x) = as_i128(v) {
                if x > i128::from(*n) {
                    fail(format!("must be <= {n}, got {x}"));
                }
            }
        }
        (Check::Enum(values), Value::EnumNumber(n)) if values.get_value(*n).is_none() => {
            fail(not_a_value(values, *n));
        }
        (Check::Enum(values), Value::List(items)) => {
            let unknown = items.iter().find_map(|item| match item {
                Value::EnumNumber(n) if values.get_value(*n).is_none() => Some(*n),
                _ => None,
            });
            if let Some(n) = unknown {
                fail(not_a_value(values, n));
            }
        }
        (Check::Nested(rules), Value::Message(m)) if message.has_field(field) => {
            rules.check(m, &path(), out);
        }
        _ => {}
    }
}

/// What an enum field with an unknown number is told.
fn not_a_value(values: &EnumDescriptor, n: i32) -> String {
    let names: Vec<String> = values.values().map(|v| v.name().to_owned()).collect();
    format!("must be one of {}; got {n}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_reflect::DynamicMessage;

    use super::{Violation, is_canonical_uuid};
    use crate::proto::events::v1::{ScanEnd, ScanError, ScanProgress};
    use crate::schema::Schema;

    const ID: &str = "0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80";

    /// Checks `payload` with the rules the embedded catalogue compiled for
    /// `event`; returns each violation as `field: description`.
    fn violations(event: &str, payload: &impl Message) -> Vec<String> {
        let Some(event) = Schema::embedded().catalogue().by_name(event) else {
            panic!("{event} is in the catalogue");
        };
        let message =
            DynamicMessage::decode(event.message.clone(), payload.encode_to_vec().as_slice())
                .expect("decodes");
        let mut out = Vec::new();
        event.rules.check(&message, "event.x", &mut out);
        out.into_iter()
            .map(|Violation { field, description }| format!("{field}: {description}"))
            .collect()
    }

    fn progress(scan_id: &str, checked: u32, total: u32) -> ScanProgress {
        ScanProgress {
            scan_id: scan_id.to_owned(),
            checked,
            total,
        }
    }

    #[test]
    fn a_payload_that_keeps_every_rule_passes() {
        assert_eq!(
            violations("scan.progress", &progress(ID, 3, 3)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn uuid_fields_say_what_form_to_send() {
        let upper = ID.to_uppercase();
        assert_eq!(
            violations("scan.progress", &progress(&upper, 0, 0)),
            [format!(
                "event.x.scan_id: must be a UUID in its canonical form (lowercase, hyphenated) such as {ID}; send `{ID}`"
            )]
        );
        assert_eq!(
            violations("scan.progress", &progress("", 0, 0)),
            ["event.x.scan_id: must be a UUID, got an empty string"]
        );
        assert_eq!(
            violations("scan.progress", &progress("scan-1", 0, 0)),
            [format!("event.x.scan_id: must be a UUID such as {ID}")]
        );
    }

    #[test]
    fn a_cross_field_bound_names_both_fields() {
        assert_eq!(
            violations("scan.progress", &progress(ID, 4, 3)),
            ["event.x.checked: must be <= total (4 > 3)"]
        );
    }

    #[test]
    fn required_and_length_rules_count_what_a_person_sees() {
        let error = |code: &str, detail: &str| ScanError {
            scan_id: ID.to_owned(),
            code: code.to_owned(),
            detail: detail.to_owned(),
        };
        assert_eq!(
            violations("scan.error", &error("", " \t")),
            [
                "event.x.code: must not be empty",
                "event.x.detail: must not be only whitespace"
            ]
        );
        // 64 characters of two bytes each: within a limit in characters.
        assert_eq!(
            violations("scan.error", &error(&"é".repeat(64), "d")),
            Vec::<String>::new()
        );
        assert_eq!(
            violations("scan.error", &error(&"é".repeat(65), "d")),
            ["event.x.code: must be at most 64 characters, got 65"]
        );
    }

    #[test]
    fn an_enum_number_outside_the_enum_names_the_allowed_values() {
        let end = |state: i32| ScanEnd {
            scan_id: ID.to_owned(),
            state,
            findings: 0,
            duration_ms: 0,
        };
        assert_eq!(violations("scan.end", &end(1)), Vec::<String>::new());
        assert_eq!(
            violations("scan.end", &end(99)),
            [
                "event.x.state: must be one of SCAN_STATE_UNSPECIFIED, SCAN_STATE_COMPLETED, \
              SCAN_STATE_FAILED, SCAN_STATE_CANCELLED; got 99"
            ]
        );
    }

    #[test]
    fn the_listing_shows_each_fields_rules() {
        let Some(event) = Schema::embedded().catalogue().by_name("scan.progress") else {
            panic!("scan.progress is in the catalogue");
        };
        let listed = event.rules.describe();
        assert!(listed.contains(&("scan_id".to_owned(), vec!["uuid".to_owned()])));
        assert!(listed.contains(&("checked".to_owned(), vec!["<= total".to_owned()])));
    }

    #[test]
    fn only_the_canonical_uuid_form_passes() {
        let canonical = "0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80";
        assert!(is_canonical_uuid(canonical));
        assert!(is_canonical_uuid("00000000-0000-0000-0000-000000000000"));
        for other in [
            "{0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80}",
            "urn:uuid:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80",
            "0b6e1a523a8e4a479d0e2c4f5d6e7f80",
            "0B6E1A52-3A8E-4A47-9D0E-2C4F5D6E7F80",
            "0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f8",
            "0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f800",
            "0b6e1a52+3a8e-4a47-9d0e-2c4f5d6e7f80",
            "0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7fg0",
            "",
        ] {
            assert!(!is_canonical_uuid(other), "{other}");
        }
    }
}
