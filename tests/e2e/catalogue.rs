//! The catalogue checks `build.rs` runs (the same code, `schema::catalogue`
//! and `schema::rules`), against deliberately broken catalogues compiled
//! with protox exactly as the build does.

use std::path::Path;

#[path = "../../src/schema/diagnostic.rs"]
mod diagnostic;

use prost_reflect::DescriptorPool;
use sse_bridge::schema::Schema;

fn load(events_proto: &str) -> Result<(), String> {
    schema(events_proto).map(|_| ())
}

/// Compiles `events_proto` beside the real options as the build does, and
/// loads it as a catalogue.
fn schema(events_proto: &str) -> Result<Schema, String> {
    let dir = tempdir();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    std::fs::create_dir_all(dir.join("ssebridge/v1")).unwrap();
    std::fs::create_dir_all(dir.join("events/v1")).unwrap();
    std::fs::copy(
        root.join("ssebridge/v1/options.proto"),
        dir.join("ssebridge/v1/options.proto"),
    )
    .unwrap();
    std::fs::write(dir.join("events/v1/events.proto"), events_proto).unwrap();
    let mut compiler = protox::Compiler::new([&dir]).unwrap();
    compiler.include_imports(true).include_source_info(true);
    let opened = compiler.open_file("events/v1/events.proto");
    let _ = std::fs::remove_dir_all(&dir);
    opened.map_err(|e| diagnostic::render(&e, &e.to_string()))?;
    let pool = DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice()).unwrap();
    Schema::from_pool(pool.clone())
        .map_err(|errors| sse_bridge::schema::placed(&pool, &errors).join("\n"))
}

/// Prepares an `Event` whose member `a` is an `events.v1.A` that `fill`
/// sets up, as a publish would: the frame's JSON, or the refusal.
fn prepare_a(
    schema: &Schema,
    fill: impl FnOnce(&mut prost_reflect::DynamicMessage),
) -> Result<String, String> {
    use prost_reflect::{DynamicMessage, Value};
    let pool = schema.catalogue().envelope.parent_pool().clone();
    let mut a = DynamicMessage::new(pool.get_message_by_name("events.v1.A").unwrap());
    fill(&mut a);
    let mut event = DynamicMessage::new(schema.catalogue().envelope.clone());
    event.set_field_by_name("a", Value::Message(a));
    schema
        .prepare_encoded(&prost::Message::encode_to_vec(&event))
        .map(|p| p.json)
        .map_err(|e| e.to_string())
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sse-bridge-catalogue-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A scratch catalogue: every event message without a prefix of its own
/// gets `things`, so each test states only what it is about.
fn catalogue(messages: &str, envelope: &str) -> String {
    let messages = if messages.contains("ssebridge.v1.prefix") {
        messages.to_owned()
    } else {
        messages.replace(
            "option (ssebridge.v1.event) =",
            "option (ssebridge.v1.prefix) = \"things\"; option (ssebridge.v1.event) =",
        )
    };
    format!(
        r#"syntax = "proto3";
package events.v1;
import "ssebridge/v1/options.proto";
message Event {{ oneof payload {{ {envelope} }} }}
{messages}"#
    )
}

fn fails_with(messages: &str, envelope: &str, needles: &[&str]) {
    let err = load(&catalogue(messages, envelope)).expect_err("catalogue must be rejected");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in:\n{err}");
    }
}

#[test]
fn a_good_catalogue_loads() {
    load(&catalogue(
        r#"message A { option (ssebridge.v1.event) = "thing.created";
             string thing_id = 1 [(ssebridge.v1.rules) = {uuid: true}]; }"#,
        "A a = 1;",
    ))
    .unwrap();
}

#[test]
fn bad_event_names_name_the_message_and_the_rule() {
    for bad in [
        "Scan.progress",
        "scan",
        "scan.progress.x",
        "scan-x.end",
        "scan.",
        "1scan.end",
    ] {
        fails_with(
            &format!(r#"message A {{ option (ssebridge.v1.event) = "{bad}"; }}"#),
            "A a = 1;",
            &["events.v1.A", "<resource>.<verb>"],
        );
    }
}

#[test]
fn reserved_duplicate_and_missing_names() {
    fails_with(
        r#"message A { option (ssebridge.v1.event) = "bridge.reset"; }"#,
        "A a = 1;",
        &["events.v1.A", "reserved"],
    );
    fails_with(
        r#"message A { option (ssebridge.v1.event) = "scan.end"; }
           message B { option (ssebridge.v1.event) = "scan.end"; }"#,
        "A a = 1; B b = 2;",
        &["events.v1.B", "unique", "events.v1.A"],
    );
    fails_with(
        "message A { string x = 1; }",
        "A a = 1;",
        &["events.v1.A", "lacks"],
    );
}

#[test]
fn rules_on_the_wrong_type_or_unknown_options_fail() {
    fails_with(
        r#"message A { option (ssebridge.v1.event) = "a.created";
             int32 n = 1 [(ssebridge.v1.rules) = {uuid: true}]; }"#,
        "A a = 1;",
        &["events.v1.A.n", "uuid", "string"],
    );
    fails_with(
        r#"message A { option (ssebridge.v1.event) = "a.created";
             option (ssebridge.v1.message_rules) = { lte: {field: "x", other: "missing"} };
             uint32 x = 1; }"#,
        "A a = 1;",
        &["events.v1.A", "lte"],
    );
    // A rule from another vocabulary would be silently unenforced: refused.
    let err = load(
        r#"syntax = "proto3";
package events.v1;
import "ssebridge/v1/options.proto";
import "google/protobuf/descriptor.proto";
extend google.protobuf.FieldOptions { string pattern = 60000; }
message Event { oneof payload { A a = 1; } }
message A { option (ssebridge.v1.event) = "a.created"; string x = 1 [(pattern) = "^a$"]; }
"#,
    )
    .expect_err("foreign rule refused");
    assert!(
        err.contains("events.v1.pattern") && err.contains("not understood"),
        "{err}"
    );
}

#[test]
fn an_event_message_left_out_of_the_envelope_fails_the_build() {
    fails_with(
        r#"message A { option (ssebridge.v1.event) = "a.created"; }
           message Orphan { option (ssebridge.v1.event) = "orphan.created"; }"#,
        "A a = 1;",
        &[
            "events.v1.Orphan",
            "not a member",
            "Event.payload",
            "`Orphan`",
        ],
    );
}

#[test]
fn a_bad_name_does_not_hide_the_same_message_s_rule_errors() {
    fails_with(
        r#"message A { option (ssebridge.v1.event) = "Bad-Name";
             int32 n = 1 [(ssebridge.v1.rules) = {uuid: true}]; }"#,
        "A a = 1;",
        &["event name `Bad-Name`", "events.v1.A.n", "uuid"],
    );
}

/// A UUID rule on a proto3 `optional` field lets it be unset; set (even to
/// an empty string) it must be a UUID. A plain field still may not be empty.
#[test]
fn an_optional_uuid_field_may_be_unset() {
    use prost_reflect::Value;
    let schema = schema(&catalogue(
        r#"message A { option (ssebridge.v1.event) = "thing.linked";
             string thing_id = 1 [(ssebridge.v1.rules) = {uuid: true}];
             optional string parent_id = 2 [(ssebridge.v1.rules) = {uuid: true}]; }"#,
        "A a = 1;",
    ))
    .unwrap();
    let id = "0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80";
    let publish = |parent: Option<&str>| {
        prepare_a(&schema, |a| {
            a.set_field_by_name("thing_id", Value::String(id.to_owned()));
            if let Some(parent) = parent {
                a.set_field_by_name("parent_id", Value::String(parent.to_owned()));
            }
        })
    };
    assert!(publish(None).is_ok(), "unset passes");
    assert!(publish(Some(id)).is_ok(), "set to a UUID passes");
    let empty = publish(Some("")).unwrap_err();
    assert!(empty.contains("event.a.parent_id"), "{empty}");
    let bad = publish(Some("nope")).unwrap_err();
    assert!(bad.contains("event.a.parent_id"), "{bad}");
}

/// A oneof member whose name collides with another's (in proto's camel-case
/// JSON names) is reported with both fields' lines, not just their names.
#[test]
fn a_name_collision_names_both_lines() {
    let err = load(&catalogue(
        r#"message A { option (ssebridge.v1.event) = "thing.created"; }"#,
        "A thing_created = 1;\n  A thingCreated = 2;",
    ))
    .expect_err("a collision");
    assert!(err.contains("events/v1/events.proto:4"), "{err}");
    assert!(err.contains("events/v1/events.proto:5"), "{err}");
}

/// Every error of a catalogue comes at once, each with its line.
#[test]
fn every_rule_error_comes_with_its_line() {
    let err = load(&catalogue(
        r#"message A { option (ssebridge.v1.event) = "Bad";
    int32 n = 1 [(ssebridge.v1.rules) = {uuid: true}]; }
message B { option (ssebridge.v1.event) = "thing.orphan"; }"#,
        "A a = 1;",
    ))
    .expect_err("three errors");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("events/v1/events.proto:5: events.v1.A:")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("events/v1/events.proto:6: events.v1.A.n:")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("events/v1/events.proto:7: events.v1.B:")),
        "{err}"
    );
}

/// `required` on an enum field refuses the zero value (what proto3 sends
/// when a producer forgot the field), naming the values it wants; without
/// it the zero value passes. `required` stays refused on an integer.
#[test]
fn required_on_an_enum_means_a_real_value() {
    use prost_reflect::Value;
    let schema = schema(&catalogue(
        r#"enum Level { LEVEL_UNSPECIFIED = 0; LEVEL_LOW = 1; LEVEL_HIGH = 2; }
message A { option (ssebridge.v1.event) = "thing.rated";
             Level level = 1 [(ssebridge.v1.rules) = {required: true}];
             Level hint = 2; }"#,
        "A a = 1;",
    ))
    .unwrap();
    let publish = |level: i32| {
        prepare_a(&schema, |a| {
            a.set_field_by_name("level", Value::EnumNumber(level));
        })
    };
    let json = publish(1).expect("a real value passes");
    assert!(json.contains("\"LEVEL_LOW\""), "names, not numbers: {json}");
    let unset = publish(0).unwrap_err();
    assert!(
        unset.contains("event.a.level")
            && unset.contains("LEVEL_LOW, LEVEL_HIGH")
            && unset.contains("got LEVEL_UNSPECIFIED"),
        "{unset}"
    );
    assert!(!unset.contains("event.a.hint"), "hint is optional: {unset}");
    let unknown = publish(7).unwrap_err();
    assert!(unknown.contains("got 7"), "{unknown}");
    fails_with(
        r#"message A { option (ssebridge.v1.event) = "thing.counted";
             int32 n = 1 [(ssebridge.v1.rules) = {required: true}]; }"#,
        "A a = 1;",
        &[
            "events.v1.A.n",
            "rule `required` applies to singular string, bytes, message or enum fields",
        ],
    );
}

/// The catalogue check on scratch copies of the real protos, compiled as
/// the build compiles them, against the committed baseline: each kind of
/// break is reported as breaking, additions and loosened rules as safe.
#[test]
fn compat_check_on_edited_copies_of_the_protos() {
    use sse_bridge::schema::compat::{Snapshot, diff};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let baseline =
        Snapshot::parse(&std::fs::read_to_string(root.join("proto/catalogue.json")).unwrap())
            .expect("the committed baseline parses");
    let real = std::fs::read_to_string(root.join("proto/events/v1/events.proto")).unwrap();
    let changes = |from: &str, to: &str| {
        assert!(real.contains(from), "events.proto no longer has `{from}`");
        // A message may follow, appended at the end of the file.
        let (to, appended) = to.split_once("\n---\n").unwrap_or((to, ""));
        let edited = format!("{}\n{appended}", real.replacen(from, to, 1));
        let edited = schema(&edited).expect("the edited copy compiles");
        diff(&baseline, &Snapshot::of(&edited))
    };
    let breaking = |from: &str, to: &str, said: &str| {
        let found = changes(from, to);
        assert!(
            found.iter().any(|c| c.breaking && c.what.contains(said)),
            "`{from}` → `{to}` not reported as breaking `{said}`: {found:?}"
        );
    };
    breaking(
        r#"option (ssebridge.v1.event) = "scan.end";"#,
        r#"option (ssebridge.v1.event) = "scan.ended";"#,
        "event `scan.end` was renamed or removed (now `scan.ended`)",
    );
    breaking(
        "string title = 2 [(ssebridge.v1.rules) = {required: true, max_len: 512}];",
        "string title = 2 [(ssebridge.v1.rules) = {required: true, max_len: 200}];",
        "`title` `max_len` 512 → 200",
    );
    breaking(
        "  SEVERITY_CRITICAL = 4;\n",
        "",
        "lost enum value `SEVERITY_CRITICAL`",
    );
    breaking(
        "string content = 1 [(ssebridge.v1.rules) = {max_len: 16384}];",
        "string content = 1 [(ssebridge.v1.rules) = {required: true, max_len: 16384}];",
        "`content` is now `required`",
    );
    let safe = |from: &str, to: &str| {
        let found = changes(from, to);
        assert!(!found.is_empty(), "`{from}` → `{to}`: no change found");
        assert!(
            found.iter().all(|c| !c.breaking),
            "`{from}` → `{to}` reported as breaking: {found:?}"
        );
    };
    safe(
        "string title = 2 [(ssebridge.v1.rules) = {required: true, max_len: 512}];",
        "string title = 2 [(ssebridge.v1.rules) = {required: true, max_len: 1024}];",
    );
    safe(
        "string content = 1 [(ssebridge.v1.rules) = {max_len: 16384}];",
        "string content = 1 [(ssebridge.v1.rules) = {max_len: 16384}];\n  optional string note = 2;",
    );
    safe(
        "  SEVERITY_CRITICAL = 4;\n",
        "  SEVERITY_CRITICAL = 4;\n  SEVERITY_INFO = 5;\n",
    );
    safe(
        "    FindingDeleted finding_deleted = 11;\n",
        "    FindingDeleted finding_deleted = 11;\n    Archived archived = 12;\n\
         ---\nmessage Archived { option (ssebridge.v1.event) = \"scan.archived\"; \
         option (ssebridge.v1.prefix) = \"scans\"; }",
    );
}

/// Every event declares at least one channel prefix, each well formed and
/// none twice; all three mistakes come in one build, with their lines.
#[test]
fn prefixes_are_declared_well_formed_and_once() {
    let err = load(&catalogue(
        r#"message A { option (ssebridge.v1.event) = "thing.a"; option (ssebridge.v1.prefix) = "things"; }
message B { option (ssebridge.v1.event) = "thing.b"; option (ssebridge.v1.prefix) = "Things"; }
message C { option (ssebridge.v1.event) = "thing.c"; option (ssebridge.v1.prefix) = "c";
            option (ssebridge.v1.prefix) = "c"; }
message D { option (ssebridge.v1.event) = "thing.d"; }"#,
        "A a = 1; B b = 2; C c = 3; D d = 4;",
    ))
    .expect_err("three prefix mistakes");
    for needle in [
        "events.v1.B: channel prefix `Things` breaks the prefix rule",
        "events.v1.C: channel prefix `c` is declared twice",
        "events.v1.D: declares no channel prefix",
    ] {
        assert!(err.contains(needle), "`{needle}` not in:\n{err}");
    }
    assert!(!err.contains("events.v1.A"), "{err}");
}
