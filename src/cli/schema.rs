//! `sse-bridge schema` and `sse-bridge codegen`: the catalogue for people
//! and for client code.

use anyhow::{Context, Result};

use super::args::{CodegenArgs, CodegenTarget, SchemaAction, SchemaArgs};
use crate::schema::Schema;
use crate::schema::compat::{Snapshot, diff as compare};

pub(super) fn schema(args: SchemaArgs) -> Result<()> {
    match args.action {
        Some(SchemaAction::Snapshot) => {
            print!("{}", Snapshot::of(Schema::embedded()).to_json());
            return Ok(());
        }
        Some(SchemaAction::Diff { against }) => return diff(&against),
        None => {}
    }
    let described = Schema::embedded().describe();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&described)?);
        return Ok(());
    }
    let empty = Vec::new();
    for event in described["events"].as_array().unwrap_or(&empty) {
        let prefixes: Vec<&str> = event["prefixes"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .filter_map(|p| p.as_str())
            .collect();
        println!(
            "{}  ({})  on channels: {}",
            event["name"].as_str().unwrap_or(""),
            event["message"].as_str().unwrap_or(""),
            prefixes
                .iter()
                .map(|p| format!("{p}:<tenant>:<id>"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for f in event["fields"].as_array().unwrap_or(&empty) {
            let rules: Vec<&str> = f["rules"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter_map(|r| r.as_str())
                .collect();
            let rules = if rules.is_empty() {
                String::new()
            } else {
                format!("  [{}]", rules.join(", "))
            };
            println!(
                "  {} {}{}",
                f["type"].as_str().unwrap_or(""),
                f["name"].as_str().unwrap_or(""),
                rules
            );
        }
        println!("  example: {}\n", event["example"]);
    }
    Ok(())
}

/// Prints every change from the baseline, breaking ones first; a breaking
/// one is an error (exit 1).
fn diff(against: &std::path::Path) -> Result<()> {
    let text = std::fs::read_to_string(against)
        .with_context(|| format!("cannot read the baseline {}", against.display()))?;
    let before = Snapshot::parse(&text).with_context(|| against.display().to_string())?;
    let changes = compare(&before, &Snapshot::of(Schema::embedded()));
    for c in &changes {
        println!(
            "{}: {}",
            if c.breaking { "breaking" } else { "safe" },
            c.what
        );
    }
    let breaking = changes.iter().filter(|c| c.breaking).count();
    if breaking > 0 {
        anyhow::bail!(
            "{breaking} breaking change(s) against {}. Producers or browsers built for it would fail. \
             If the break is deliberate (a new major version of the catalogue), record the new \
             catalogue with scripts/update-proto-baseline and say so in the release notes",
            against.display()
        );
    }
    if changes.is_empty() {
        println!("no change against {}", against.display());
    }
    Ok(())
}

pub(super) fn codegen(args: CodegenArgs) -> Result<()> {
    let text = match args.target {
        CodegenTarget::Typescript => crate::schema::typescript::generate(Schema::embedded()),
    };
    match args.out {
        Some(path) => std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
