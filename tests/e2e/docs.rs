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

/// Every Markdown file of the project, outside build and package folders.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy();
            if path.is_dir() {
                if !name.starts_with('.')
                    && !["target", "node_modules", "dist", "fuzz"].contains(&&*name)
                {
                    walk(&path, out);
                }
            } else if name.ends_with(".md") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &mut out);
    out
}

/// A heading's anchor as GitHub makes it: lower case, spaces to hyphens,
/// other punctuation dropped.
fn anchor_of(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
            }
            !fenced
        })
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| anchor_of(h.trim_start_matches('#')))
        .collect()
}

/// The targets of `[text](target)` links, outside code.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

/// Every relative link in the docs reaches a file that exists, and every
/// `#anchor` a heading of that file.
#[test]
fn internal_links_reach_their_files_and_headings() {
    let files = markdown_files();
    assert!(files.len() > 10, "found only {files:?}");
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let name = file.strip_prefix(root()).unwrap().display();
            if !target.exists() {
                broken.push(format!("{name}: {link} (no such file)"));
                continue;
            }
            if let Some(anchor) = anchor {
                let text = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&text).iter().any(|a| a == anchor) {
                    broken.push(format!("{name}: {link} (no such heading)"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    assert_eq!(anchor_of(" Traces (OpenTelemetry)"), "traces-opentelemetry");
    assert_eq!(
        anchor_of("Results (median of 3 runs)"),
        "results-median-of-3-runs"
    );
    assert_eq!(anchor_of("`Disconnect`: orders"), "disconnect-orders");
    assert_eq!(
        links("see [a](b.md#c) and [d](https://e) `[x](y)`"),
        ["b.md#c", "https://e", "y"]
    );
}

/// The README's shell blocks, continuation lines joined, one command each.
fn readme_commands() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh = !in_sh && trimmed == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

fn readme_command(starts: &str) -> String {
    readme_commands()
        .into_iter()
        .find(|c| c.starts_with(starts))
        .unwrap_or_else(|| panic!("no README command starts with `{starts}`"))
}

/// Runs `command` as a user's shell would, with `sse-bridge` and
/// `cargo run [-q] --` meaning the built binary.
fn shell(command: &str, dir: &Path) -> tokio::process::Command {
    let bin = env!("CARGO_BIN_EXE_sse-bridge");
    let command = ["cargo run -q --", "cargo run --", "sse-bridge"]
        .iter()
        .find_map(|run| command.strip_prefix(run))
        .map(|rest| format!("{bin}{rest}"))
        .unwrap_or_else(|| panic!("`{command}` runs something else"));
    let mut sh = tokio::process::Command::new("sh");
    // `exec`: the test's kill reaches the bridge's command, not a shell.
    sh.arg("-c")
        .arg(format!("exec {command}"))
        .current_dir(dir)
        .kill_on_drop(true);
    sh
}

/// What `serve --dev` printed: its tenant and its two tokens.
struct DevServer {
    _child: tokio::process::Child,
    tenant: String,
    subscriber: String,
    publisher: String,
}

async fn dev_server(http: &str, grpc: &str) -> DevServer {
    use tokio::io::AsyncBufReadExt;
    let command = format!(
        "{} --http-addr {http} --grpc-addr {grpc}",
        readme_command("cargo run -- serve --dev")
    );
    let mut child = shell(&command, &root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve --dev starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut tenant, mut subscriber, mut publisher) = (None, None, None);
    let mut next_is = None;
    while publisher.is_none() {
        let line = tokio::time::timeout(crate::harness::PATIENCE, lines.next_line())
            .await
            .expect("serve --dev prints its tokens")
            .unwrap()
            .expect("a line");
        match next_is.take() {
            Some("subscriber") => subscriber = Some(line.trim().to_owned()),
            Some(_) => publisher = Some(line.trim().to_owned()),
            None => {}
        }
        if let Some(rest) = line.strip_prefix("Subscriber token (tenant ") {
            tenant = rest.split(',').next().map(str::to_owned);
            next_is = Some("subscriber");
        } else if line.starts_with("Publisher token") {
            next_is = Some("publisher");
        }
    }
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    DevServer {
        _child: child,
        tenant: tenant.expect("a tenant"),
        subscriber: subscriber.expect("a subscriber token"),
        publisher: publisher.expect("a publisher token"),
    }
}

/// The README's two-minute walkthrough, its commands run as written (the
/// placeholders filled from what `serve --dev` printed, and free ports for
/// 8080 and 50051): the tail shows the published frame, and the broken rule
/// is refused naming both fields.
#[tokio::test(flavor = "multi_thread")]
async fn the_readme_walkthrough_runs_as_written() {
    use tokio::io::AsyncReadExt;
    let port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .to_string()
    };
    let (http, grpc) = (port(), port());
    let dev = dev_server(&http, &grpc).await;
    let fill = |command: String| {
        command
            .replace("<subscriber token>", &dev.subscriber)
            .replace("<publisher token>", &dev.publisher)
            .replace("<tenant>", &dev.tenant)
            .replace("127.0.0.1:8080", &http)
            .replace("127.0.0.1:50051", &grpc)
    };
    let mut tail = shell(&fill(readme_command("cargo run -q -- tail")), &root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("tail runs");
    let publish = fill(readme_command("cargo run -q -- publish"));
    // The tail may not be subscribed yet: publish until it shows a frame
    // (each publish prints its id; the tail shows some of them).
    let mut ids = Vec::new();
    let mut shown = String::new();
    let mut out = tail.stdout.take().unwrap();
    let deadline = tokio::time::Instant::now() + crate::harness::PATIENCE;
    while !ids
        .iter()
        .any(|id: &String| shown.contains(&format!("id: {id}\n")))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tail showed {shown:?}"
        );
        let published = shell(&publish, &root()).output().await.unwrap();
        assert!(published.status.success(), "{published:?}");
        ids.push(
            String::from_utf8(published.stdout)
                .unwrap()
                .trim()
                .to_owned(),
        );
        let mut buf = [0u8; 4096];
        if let Ok(Ok(n)) =
            tokio::time::timeout(std::time::Duration::from_millis(300), out.read(&mut buf)).await
        {
            shown.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    let id = ids
        .iter()
        .find(|id| shown.contains(&format!("id: {id}\n")))
        .unwrap();
    let expected = format!(
        "id: {id}\nevent: scan.progress\ndata: {{\"scan_id\":\"2c5ea4c0-4067-4a9e-9a6f-1f2e3d4c5b6a\",\"checked\":3,\"total\":10}}\n"
    );
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    for line in expected.lines().skip(1) {
        assert!(
            text.contains(line),
            "the README shows the frame the tail printed, but not `{line}`"
        );
    }
    assert!(shown.contains(&expected), "{shown:?} lacks {expected:?}");

    // Step 4: the same command with the rule-breaking data.
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let bad = text
        .split('`')
        .find(|s| s.starts_with("--data '{\"scan_id\":\"x\""))
        .expect("step 4's --data");
    let good = publish.split(" --data ").next().expect("a publish command");
    let refused = shell(&format!("{good} {bad}"), &root())
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    for needle in [
        "InvalidArgument",
        "event.scan_progress.scan_id",
        "event.scan_progress.checked",
    ] {
        assert!(err.contains(needle), "{needle} not in {err}");
    }
    let _ = tail.kill().await;
}

/// The README's configuration commands, run in a scratch directory.
#[tokio::test(flavor = "multi_thread")]
async fn the_readme_config_commands_run_as_written() {
    let dir = std::env::temp_dir().join(format!("readme-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |starts: &str| {
        let command = readme_command(starts);
        let command = command.split('#').next().unwrap().trim().to_owned();
        let dir = dir.clone();
        async move {
            let out = shell(&command, &dir).output().await.unwrap();
            assert!(out.status.success(), "{command}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        }
    };
    run("sse-bridge config default").await;
    let path = dir.join("bridge.toml");
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.contains("# http_addr = "), "{written}");
    // The edit the README asks for: a key.
    std::fs::write(&path, format!("{written}\njwt_secret_file = \"jwt\"\n")).unwrap();
    std::fs::write(dir.join("jwt"), "a-secret-of-the-readme").unwrap();
    let effective = run("sse-bridge config check").await;
    assert!(effective.contains("jwt_secret"), "{effective}");
    assert!(
        !effective.contains("a-secret-of-the-readme"),
        "redacted: {effective}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Every `serve` flag is in operations.md's tables.
#[test]
fn operations_md_lists_every_serve_flag() {
    let text = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let cli = <sse_bridge::cli::Cli as clap::CommandFactory>::command();
    let serve = cli.find_subcommand("serve").expect("a serve command");
    let missing: Vec<String> = serve
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|&long| long != "help")
        .map(|long| format!("--{long}"))
        .filter(|flag| !text.contains(&format!("`{flag}`")))
        .collect();
    assert!(missing.is_empty(), "not in docs/operations.md: {missing:?}");
}

/// Splits a command line as `sh` would for plain words and quotes.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                any = false;
            }
            (None, c) => word.push(c),
        }
    }
    if any || !word.is_empty() {
        out.push(word);
    }
    out
}

/// The `sse-bridge` command lines in the docs' shell blocks: continuation
/// lines joined, cut at a comment, a pipe, a redirection or a `&`.
fn documented_commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_block = !in_block && ["```sh", "```bash", "```console"].contains(&trimmed);
            continue;
        }
        if !in_block {
            continue;
        }
        let trimmed = trimmed.trim_start_matches("$ ");
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                continue;
            }
            None => current.push_str(trimmed),
        }
        let line = std::mem::take(&mut current);
        let line = [
            "cargo run -q --release --",
            "cargo run -q --",
            "cargo run --",
        ]
        .iter()
        .find_map(|p| line.strip_prefix(p).map(|rest| format!("sse-bridge{rest}")))
        .unwrap_or(line);
        let line = line
            .strip_prefix("target/release/")
            .map(str::to_owned)
            .unwrap_or(line);
        if !line.starts_with("sse-bridge ") {
            continue;
        }
        let cut = [" # ", " | ", " > ", " >> ", " && ", " &", " 2>"]
            .iter()
            .filter_map(|sep| line.find(sep))
            .min()
            .unwrap_or(line.len());
        out.push(line[..cut].trim().to_owned());
    }
    out
}

/// `<subscriber token>` and the like, as one word.
fn without_placeholders(command: &str) -> String {
    let mut out = String::new();
    let mut rest = command;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str("placeholder");
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// Each `sse-bridge …` command in the docs parses: no documented flag or
/// subcommand is misspelt or gone. (The README's walkthrough also runs.)
#[test]
fn every_documented_command_parses() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let inline = text
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with("sse-bridge ") && !s.contains('\n'))
            // `[--flag …]` marks an optional part: check the flag too.
            .map(|s| s.replace(['[', ']'], ""));
        for command in documented_commands(&text).into_iter().chain(inline) {
            checked += 1;
            let args = words(&without_placeholders(&command));
            if let Err(e) = <sse_bridge::cli::Cli as clap::Parser>::try_parse_from(&args) {
                use clap::error::ErrorKind;
                // Prose names a command without its arguments, or with a
                // placeholder where a value is chosen from a list.
                let mention = e.kind() == ErrorKind::MissingRequiredArgument
                    || (e.kind() == ErrorKind::InvalidValue && command.contains('<'));
                if e.kind() != ErrorKind::DisplayHelp && !mention {
                    let name = file.strip_prefix(root()).unwrap().display();
                    wrong.push(format!("{name}: `{command}`: {}", e.kind()));
                }
            }
        }
    }
    assert!(checked >= 10, "only {checked} documented commands found");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn documented_commands_are_read_as_a_shell_would() {
    let text = "```sh\nsse-bridge publish --data '{\"a\": 1}' \\\n  --event x # note\ncargo run -- tail --url u | head\n```\n";
    assert_eq!(
        documented_commands(text),
        [
            "sse-bridge publish --data '{\"a\": 1}' --event x",
            "sse-bridge tail --url u"
        ]
    );
    assert_eq!(words("a 'b c' \"d\" ''"), ["a", "b c", "d", ""]);
}
