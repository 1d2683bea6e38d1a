//! How the person at the terminal runs this binary, so the commands the
//! CLI prints run as printed: `cargo run -q --` from a checkout (nothing
//! called `sse-bridge` is on `PATH` then), `sse-bridge` when that is what
//! `PATH` finds, and otherwise the binary's own path.

use std::path::{Path, PathBuf};

/// The words that start a command of this binary.
pub fn command() -> String {
    // `cargo run` sets this for the program it runs.
    if std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
        return "cargo run -q --".to_owned();
    }
    let exe = std::env::current_exe().ok();
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<PathBuf>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("sse-bridge"))
        .find(|candidate| candidate.is_file());
    match (exe, on_path) {
        (Some(exe), Some(found)) if same_file(&exe, &found) => "sse-bridge".to_owned(),
        (Some(exe), _) => shell_word(&exe.display().to_string()),
        (None, _) => "sse-bridge".to_owned(),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Quoted for a POSIX shell when it needs to be.
fn shell_word(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_spaces_are_quoted() {
        assert_eq!(shell_word("/usr/bin/sse-bridge"), "/usr/bin/sse-bridge");
        assert_eq!(shell_word("/a b/sse-bridge"), "'/a b/sse-bridge'");
        assert_eq!(shell_word("/it's"), r"'/it'\''s'");
    }
}
