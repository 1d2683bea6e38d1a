//! The docs that name code stay true: every path `ARCHITECTURE.md` names
//! exists, and every module under `src/` is on its map (by its path, or by
//! its directory).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The backticked spans of `text` that look like paths.
fn named_paths(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_/.".contains(c))
                && (t.ends_with(".rs") || t.ends_with(".lua") || t.ends_with('/'))
        })
        .map(str::to_owned)
        .collect()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn architecture_md_names_only_what_exists_and_maps_every_module() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let named = named_paths(&text);
    let mut all = Vec::new();
    files(&root().join("src"), &mut all);
    let relative: Vec<String> = all
        .iter()
        .map(|p| {
            p.strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    // Each named path is a file or directory: from the repository's root,
    // or the end of some path under src/.
    for name in &named {
        let exists = root().join(name).exists()
            || relative.iter().any(|r| {
                if name.ends_with('/') {
                    r.contains(&format!("/{name}"))
                } else {
                    r.ends_with(&format!("/{name}"))
                }
            });
        assert!(
            exists,
            "ARCHITECTURE.md names `{name}`, which does not exist"
        );
    }
    for module in relative.iter().filter(|r| r.ends_with(".rs")) {
        let dir = Path::new(module)
            .parent()
            .unwrap()
            .to_string_lossy()
            .into_owned()
            + "/";
        let mapped = named.iter().any(|n| {
            module == n
                || (n.contains('/') && module.ends_with(&format!("/{n}")))
                // A directory named as a whole maps its files; `src/` itself
                // maps nothing.
                || (*n == dir && dir != "src/")
        });
        assert!(mapped, "`{module}` is not on ARCHITECTURE.md's code map");
    }
}
