//! `sse-bridge schema` and `sse-bridge codegen`: the catalogue for people
//! and for client code.

use anyhow::{Context, Result};

use super::args::{CodegenArgs, CodegenTarget, SchemaArgs};
use crate::schema::Schema;

pub(super) fn schema(args: SchemaArgs) -> Result<()> {
    let described = Schema::embedded().describe();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&described)?);
        return Ok(());
    }
    let empty = Vec::new();
    for event in described["events"].as_array().unwrap_or(&empty) {
        println!(
            "{}  ({})",
            event["name"].as_str().unwrap_or(""),
            event["message"].as_str().unwrap_or("")
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
