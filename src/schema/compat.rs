//! The catalogue's compatibility check: a snapshot of what producers and
//! browsers rely on (event names, fields, types, rules, enum values), and
//! the embedded catalogue compared with a committed snapshot, each change
//! sorted into breaking or safe.
//!
//! `buf breaking` compares the wire format. The SSE names and the rules live
//! in custom options, whose values buf does not compare: renaming
//! `scan.end` or lowering a `max_len` passes it. This check covers them.

use std::collections::BTreeMap;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde::{Deserialize, Serialize};

use super::Schema;
use super::rules::RuleSet;

/// The snapshot's format; a baseline of another format is refused.
const FORMAT: u32 = 1;

/// What the catalogue promises, by event name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    pub events: BTreeMap<String, EventShape>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventShape {
    pub message: String,
    /// The channel prefixes it may be published to.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Its field number in `Event.payload`.
    pub envelope_field: u32,
    pub fields: BTreeMap<String, FieldShape>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FieldShape {
    pub number: u32,
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub repeated: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub optional: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub uuid: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// Fields this one must be at most.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lte: Vec<String>,
    /// An enum's values: name → number.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, i32>,
    /// A message field's own fields.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, FieldShape>,
}

fn is_false(b: &bool) -> bool {
    !b
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the baseline is not a catalogue snapshot: {0}")]
    Parse(#[from] serde_json::Error),
    #[error(
        "the baseline is snapshot format {0}, this bridge writes {FORMAT}: refresh it with scripts/update-proto-baseline"
    )]
    Format(u32),
}

impl Snapshot {
    /// The snapshot of `schema`'s catalogue.
    pub fn of(schema: &Schema) -> Snapshot {
        let events = schema
            .catalogue()
            .events()
            .iter()
            .map(|e| {
                let shape = EventShape {
                    message: e.message.full_name().to_owned(),
                    prefixes: e.prefixes.to_vec(),
                    envelope_field: e.field.number(),
                    fields: fields(&e.message, &e.rules.rule_sets()),
                };
                (e.name.as_str().to_owned(), shape)
            })
            .collect();
        Snapshot {
            format: FORMAT,
            events,
        }
    }

    pub fn parse(text: &str) -> Result<Snapshot, SnapshotError> {
        let snapshot: Snapshot = serde_json::from_str(text)?;
        if snapshot.format != FORMAT {
            return Err(SnapshotError::Format(snapshot.format));
        }
        Ok(snapshot)
    }

    /// Pretty JSON, keys sorted, ending in a newline: diffs well in review.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

fn fields(
    message: &MessageDescriptor,
    rules: &[(String, RuleSet)],
) -> BTreeMap<String, FieldShape> {
    message
        .fields()
        .map(|f| {
            let set = rules
                .iter()
                .find(|(name, _)| name == f.name())
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            (f.name().to_owned(), field(&f, &set))
        })
        .collect()
}

fn field(f: &FieldDescriptor, rules: &RuleSet) -> FieldShape {
    let ty = match f.kind() {
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
        other => format!("{other:?}").to_lowercase(),
    };
    let nested = match f.kind() {
        Kind::Message(m) if !m.full_name().starts_with("google.protobuf.") => {
            fields(&m, &rules.nested)
        }
        _ => BTreeMap::new(),
    };
    FieldShape {
        number: f.number(),
        ty,
        repeated: f.is_list() || f.is_map(),
        optional: f.supports_presence() && f.containing_oneof().is_some(),
        uuid: rules.uuid,
        required: rules.required,
        max_len: rules.max_chars.or(rules.max_bytes),
        min: rules.min,
        max: rules.max,
        lte: rules.lte.clone(),
        values: rules
            .enum_values
            .iter()
            .map(|(n, name)| (name.clone(), *n))
            .collect(),
        fields: nested,
    }
}

/// One difference between the baseline and the current catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub breaking: bool,
    pub what: String,
}

/// Every difference from `before` to `after`, breaking ones first.
pub fn diff(before: &Snapshot, after: &Snapshot) -> Vec<Change> {
    let mut out = Vec::new();
    for (name, old) in &before.events {
        match after.events.get(name) {
            None => {
                let renamed = after
                    .events
                    .iter()
                    .find(|(_, new)| new.message == old.message)
                    .map(|(new_name, _)| format!(" (now `{new_name}`)"))
                    .unwrap_or_default();
                out.push(breaking(format!(
                    "event `{name}` was renamed or removed{renamed}: browsers listening for it get nothing"
                )));
            }
            // A baseline from before typed channels let every event go to
            // any prefix: the first binding narrows that.
            Some(new) if old.prefixes.is_empty() && !new.prefixes.is_empty() => {
                out.push(breaking(format!(
                    "event `{name}` may now go only to {} channels, not to any prefix",
                    new.prefixes
                        .iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
                fields_diff(&format!("`{name}`"), &old.fields, &new.fields, &mut out)
            }
            Some(new) => {
                for prefix in &old.prefixes {
                    if !new.prefixes.contains(prefix) {
                        out.push(breaking(format!(
                            "event `{name}` may no longer go to `{prefix}` channels: producers publishing it there are refused, and browsers on them get nothing"
                        )));
                    }
                }
                for prefix in &new.prefixes {
                    if !old.prefixes.contains(prefix) {
                        out.push(safe(format!(
                            "event `{name}` may now go to `{prefix}` channels"
                        )));
                    }
                }
                fields_diff(&format!("`{name}`"), &old.fields, &new.fields, &mut out)
            }
        }
    }
    for name in after.events.keys() {
        if !before.events.contains_key(name) {
            out.push(safe(format!("event `{name}` added")));
        }
    }
    out.sort_by_key(|c| !c.breaking);
    out
}

fn breaking(what: String) -> Change {
    Change {
        breaking: true,
        what,
    }
}

fn safe(what: String) -> Change {
    Change {
        breaking: false,
        what,
    }
}

fn fields_diff(
    at: &str,
    before: &BTreeMap<String, FieldShape>,
    after: &BTreeMap<String, FieldShape>,
    out: &mut Vec<Change>,
) {
    for (name, old) in before {
        let here = format!("{at} field `{name}`");
        let Some(new) = after.get(name) else {
            out.push(breaking(format!(
                "{here} was removed: browsers reading it get nothing"
            )));
            continue;
        };
        field_diff(&here, old, new, out);
    }
    for (name, new) in after {
        if before.contains_key(name) {
            continue;
        }
        let here = format!("{at} field `{name}`");
        if new.required || new.uuid && !new.optional {
            out.push(breaking(format!(
                "{here} was added with a rule every publish must meet: producers that do not send it are refused"
            )));
        } else {
            out.push(safe(format!("{here} added")));
        }
    }
}

fn field_diff(here: &str, old: &FieldShape, new: &FieldShape, out: &mut Vec<Change>) {
    if old.ty != new.ty || old.repeated != new.repeated {
        out.push(breaking(format!(
            "{here} changed type from {} to {}",
            shape_type(old),
            shape_type(new)
        )));
        return;
    }
    if old.number != new.number {
        out.push(breaking(format!(
            "{here} changed number from {} to {}",
            old.number, new.number
        )));
    }
    let mut flag = |rule: &str, was: bool, now: bool| match (was, now) {
        (false, true) => out.push(breaking(format!(
            "{here} is now `{rule}`: publishes that passed before are refused"
        ))),
        (true, false) => out.push(safe(format!("{here} is no longer `{rule}`"))),
        _ => {}
    };
    flag("required", old.required, new.required);
    flag("uuid", old.uuid, new.uuid);
    // A bound that is smaller, or new, refuses what passed before.
    let tighter_if_smaller = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (None, Some(_)) => Some(true),
        (Some(_), None) => Some(false),
        (Some(a), Some(b)) if b < a => Some(true),
        (Some(a), Some(b)) if b > a => Some(false),
        _ => None,
    };
    let bound = |rule: &str, was: Option<i64>, now: Option<i64>, tighter: Option<bool>| {
        let show = |v: Option<i64>| v.map_or("none".to_owned(), |v| v.to_string());
        let text = format!("{here} `{rule}` {} → {}", show(was), show(now));
        match tighter {
            Some(true) => Some(breaking(format!(
                "{text}: publishes that passed before are refused"
            ))),
            Some(false) => Some(safe(format!("{text} (loosened)"))),
            None => None,
        }
    };
    let max_len = (old.max_len.map(i64::from), new.max_len.map(i64::from));
    out.extend(bound(
        "max_len",
        max_len.0,
        max_len.1,
        tighter_if_smaller(max_len.0, max_len.1),
    ));
    out.extend(bound(
        "max",
        old.max,
        new.max,
        tighter_if_smaller(old.max, new.max),
    ));
    // For `min` a larger bound is the tighter one.
    out.extend(bound(
        "min",
        old.min,
        new.min,
        tighter_if_smaller(old.min.map(|v| -v), new.min.map(|v| -v)),
    ));
    for other in &new.lte {
        if !old.lte.contains(other) {
            out.push(breaking(format!(
                "{here} must now be <= `{other}`: publishes that passed before are refused"
            )));
        }
    }
    for other in &old.lte {
        if !new.lte.contains(other) {
            out.push(safe(format!("{here} need no longer be <= `{other}`")));
        }
    }
    for (value, number) in &old.values {
        match new.values.get(value) {
            None => out.push(breaking(format!(
                "{here} lost enum value `{value}`: producers sending it are refused, and browsers may still expect it"
            ))),
            Some(n) if n != number => out.push(breaking(format!(
                "{here} enum value `{value}` changed number from {number} to {n}"
            ))),
            Some(_) => {}
        }
    }
    for value in new.values.keys() {
        if !old.values.contains_key(value) {
            out.push(safe(format!("{here} gained enum value `{value}`")));
        }
    }
    fields_diff(here, &old.fields, &new.fields, out);
}

fn shape_type(f: &FieldShape) -> String {
    if f.repeated {
        format!("repeated {}", f.ty)
    } else {
        f.ty.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> Snapshot {
        Snapshot::of(Schema::embedded())
    }

    fn field_mut<'a>(s: &'a mut Snapshot, event: &str, field: &str) -> &'a mut FieldShape {
        s.events
            .get_mut(event)
            .and_then(|e| e.fields.get_mut(field))
            .unwrap_or_else(|| panic!("{event} has no field {field}"))
    }

    fn breaking_of(after: &Snapshot) -> Vec<String> {
        diff(&current(), after)
            .into_iter()
            .filter(|c| c.breaking)
            .map(|c| c.what)
            .collect()
    }

    #[test]
    fn the_snapshot_round_trips_and_matches_itself() {
        let snap = current();
        assert_eq!(Snapshot::parse(&snap.to_json()).expect("parses"), snap);
        assert!(diff(&snap, &snap).is_empty());
        let progress = &snap.events["scan.progress"];
        assert_eq!(progress.fields["checked"].lte, ["total"]);
        assert!(progress.fields["scan_id"].uuid);
        let state = &snap.events["scan.end"].fields["state"];
        assert_eq!(state.values["SCAN_STATE_COMPLETED"], 1);
        assert!(state.required);
    }

    #[test]
    fn a_renamed_event_is_breaking_and_says_its_new_name() {
        let mut after = current();
        let end = after.events.remove("scan.end").expect("scan.end");
        after.events.insert("scan.ended".to_owned(), end);
        let b = breaking_of(&after);
        assert_eq!(b.len(), 1, "{b:?}");
        assert!(
            b[0].contains("`scan.end`") && b[0].contains("now `scan.ended`"),
            "{b:?}"
        );
        assert!(
            diff(&current(), &after)
                .iter()
                .any(|c| !c.breaking && c.what.contains("`scan.ended` added"))
        );
    }

    #[test]
    fn tightened_rules_are_breaking_and_loosened_ones_safe() {
        let mut after = current();
        let title = field_mut(&mut after, "finding.created", "title");
        title.max_len = Some(200);
        let b = breaking_of(&after);
        assert!(b.iter().any(|c| c.contains("`max_len` 512 → 200")), "{b:?}");

        let mut after = current();
        let title = field_mut(&mut after, "finding.created", "title");
        title.max_len = Some(1024);
        assert!(breaking_of(&after).is_empty());

        let mut after = current();
        let checked = field_mut(&mut after, "scan.progress", "total");
        checked.min = Some(1);
        checked.required = false;
        let b = breaking_of(&after);
        assert!(b.iter().any(|c| c.contains("`min` none → 1")), "{b:?}");

        let mut after = current();
        let delta = field_mut(&mut after, "message.delta", "content");
        delta.required = true;
        assert!(
            breaking_of(&after)
                .iter()
                .any(|c| c.contains("now `required`"))
        );
    }

    #[test]
    fn a_removed_enum_value_is_breaking_and_an_added_one_safe() {
        let mut after = current();
        let severity = field_mut(&mut after, "finding.created", "severity");
        severity.values.remove("SEVERITY_CRITICAL");
        severity.values.insert("SEVERITY_INFO".to_owned(), 5);
        let changes = diff(&current(), &after);
        assert!(
            changes
                .iter()
                .any(|c| c.breaking && c.what.contains("lost enum value `SEVERITY_CRITICAL`"))
        );
        assert!(
            changes
                .iter()
                .any(|c| !c.breaking && c.what.contains("gained enum value `SEVERITY_INFO`"))
        );
    }

    #[test]
    fn added_fields_are_safe_unless_every_publish_must_send_them() {
        let add = |after: &mut Snapshot, name: &str, shape: FieldShape| {
            after
                .events
                .get_mut("message.delta")
                .expect("message.delta")
                .fields
                .insert(name.to_owned(), shape);
        };
        let mut after = current();
        add(
            &mut after,
            "note",
            FieldShape {
                number: 9,
                ty: "string".to_owned(),
                ..FieldShape::default()
            },
        );
        assert!(breaking_of(&after).is_empty());
        add(
            &mut after,
            "author",
            FieldShape {
                number: 10,
                ty: "string".to_owned(),
                required: true,
                ..FieldShape::default()
            },
        );
        assert!(breaking_of(&after).iter().any(|c| c.contains("`author`")));
    }

    #[test]
    fn a_removed_prefix_binding_is_breaking_and_an_added_one_safe() {
        let mut after = current();
        let created = after
            .events
            .get_mut("finding.created")
            .expect("finding.created");
        created.prefixes.retain(|p| p != "scans");
        created.prefixes.push("audits".to_owned());
        let changes = diff(&current(), &after);
        assert!(changes.iter().any(|c| {
            c.breaking
                && c.what
                    .contains("`finding.created` may no longer go to `scans` channels")
        }));
        assert!(
            changes
                .iter()
                .any(|c| !c.breaking && c.what.contains("may now go to `audits`"))
        );
    }

    #[test]
    fn a_baseline_of_another_format_is_refused() {
        let e = Snapshot::parse(r#"{"format": 99, "events": {}}"#).expect_err("format 99");
        assert!(e.to_string().contains("update-proto-baseline"), "{e}");
        assert!(Snapshot::parse("[]").is_err());
    }
}
