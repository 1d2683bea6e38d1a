//! The catalogue checks `build.rs` runs (the same code, `schema::catalogue`
//! and `schema::rules`), against deliberately broken catalogues compiled
//! with protox exactly as the build does.

use std::path::Path;

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
    compiler.include_imports(true);
    compiler
        .open_file("events/v1/events.proto")
        .map_err(|e| format!("{e:?}"))?;
    let pool = DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Schema::from_pool(pool).map_err(|errors| {
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sse-bridge-catalogue-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn catalogue(messages: &str, envelope: &str) -> String {
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
    use prost_reflect::{DynamicMessage, Value};
    let schema = schema(&catalogue(
        r#"message A { option (ssebridge.v1.event) = "thing.linked";
             string thing_id = 1 [(ssebridge.v1.rules) = {uuid: true}];
             optional string parent_id = 2 [(ssebridge.v1.rules) = {uuid: true}]; }"#,
        "A a = 1;",
    ))
    .unwrap();
    let pool = schema.catalogue().envelope.parent_pool().clone();
    let message = pool.get_message_by_name("events.v1.A").unwrap();
    let id = "0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80";
    let publish = |parent: Option<&str>| {
        let mut a = DynamicMessage::new(message.clone());
        a.set_field_by_name("thing_id", Value::String(id.to_owned()));
        if let Some(parent) = parent {
            a.set_field_by_name("parent_id", Value::String(parent.to_owned()));
        }
        let mut event = DynamicMessage::new(schema.catalogue().envelope.clone());
        event.set_field_by_name("a", Value::Message(a));
        schema
            .prepare_encoded(&prost::Message::encode_to_vec(&event))
            .map(|p| p.json)
            .map_err(|e| e.to_string())
    };
    assert!(publish(None).is_ok(), "unset passes");
    assert!(publish(Some(id)).is_ok(), "set to a UUID passes");
    let empty = publish(Some("")).unwrap_err();
    assert!(empty.contains("event.a.parent_id"), "{empty}");
    let bad = publish(Some("nope")).unwrap_err();
    assert!(bad.contains("event.a.parent_id"), "{bad}");
}
