//! A proto compile error as a person reads it: the message, then each
//! place it points at as `file:line: label`, so a collision names both
//! fields' lines. Compiled into `build.rs` and the catalogue tests, not into
//! the crate: protox, whose errors these are, is a build dependency only.

use miette::Diagnostic;

/// `error` with every labelled place on a line of its own.
pub fn render(error: &dyn Diagnostic, fallback: &str) -> String {
    let mut out = fallback.to_owned();
    let (Some(labels), Some(source)) = (error.labels(), error.source_code()) else {
        return with_related(error, out);
    };
    for label in labels {
        let Ok(at) = source.read_span(label.inner(), 0, 0) else {
            continue;
        };
        let file = at.name().unwrap_or("proto");
        // miette counts lines from 0.
        let line = at.line() + 1;
        match label.label() {
            Some(text) => out.push_str(&format!("\n  {file}:{line}: {text}")),
            None => out.push_str(&format!("\n  {file}:{line}")),
        }
    }
    with_related(error, out)
}

/// Errors reported together (protox gathers several checks in one) each
/// rendered in turn.
fn with_related(error: &dyn Diagnostic, mut out: String) -> String {
    if let Some(related) = error.related() {
        for r in related {
            out.push('\n');
            out.push_str(&render(r, &r.to_string()));
        }
    }
    out
}
