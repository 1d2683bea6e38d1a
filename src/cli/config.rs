//! `serve --config <file>`: a TOML file with one key per `serve` flag (the
//! flag's name with `-` → `_`), optionally grouped in tables (`[valkey]
//! url = …` is `valkey_url`). A flag or an environment variable wins over
//! the file, the file over the default. An unknown key, or a value of the
//! wrong type, stops start-up with the key's path and a "did you mean".
//!
//! The file's keys become flags after the command line's, for those the
//! command line and the environment left unset, so clap checks them exactly
//! as it checks flags. `sse-bridge config default` prints every key,
//! commented; `sse-bridge config check` prints the effective configuration
//! with each value's source, secrets redacted.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use super::{Cli, Command, ServeArgs};

/// Why a command line, with its configuration file, was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Clap's own error (it prints usage and help itself).
    #[error(transparent)]
    Clap(#[from] clap::Error),
    #[error("cannot read the configuration file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: not valid TOML: {reason}")]
    Toml { path: PathBuf, reason: String },
    #[error("{path}: unknown key `{key}`{hint}")]
    Unknown {
        path: PathBuf,
        key: String,
        hint: String,
    },
    #[error("{path}: key `{key}`: {reason}")]
    Value {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("cannot read {flag} from {path}: {reason}")]
    SecretFile {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// Keys whose values `config check` never prints.
const SECRETS: [&str; 3] = ["jwt_secret", "publisher_jwt_secret", "valkey_url"];

/// A parsed command line, and for `serve` where each value came from.
pub struct Loaded {
    pub cli: Cli,
    /// The `serve` flags the configuration file supplied (by arg id).
    pub from_file: HashSet<String>,
    matches: Option<ArgMatches>,
}

/// Parses the command line, reading `serve`'s configuration file when one
/// is named (`--config` or `SSE_BRIDGE_CONFIG`), and the secret files.
pub fn parse(argv: Vec<OsString>) -> Result<Loaded, ConfigError> {
    let matches = Cli::command().try_get_matches_from(&argv)?;
    let Some(("serve", serve)) = matches.subcommand() else {
        return Ok(Loaded {
            cli: Cli::from_arg_matches(&matches)?,
            from_file: HashSet::new(),
            matches: None,
        });
    };
    let (argv, from_file) = match serve.get_one::<PathBuf>("config") {
        Some(path) => with_file(argv, serve, path)?,
        None => (argv, HashSet::new()),
    };
    let matches = match Cli::command().try_get_matches_from(&argv) {
        Ok(m) => m,
        // The command line alone parsed: the file's value is at fault.
        Err(e) if !from_file.is_empty() => return Err(blame_file(e, serve)),
        Err(e) => return Err(e.into()),
    };
    let mut cli = Cli::from_arg_matches(&matches)?;
    if let Command::Serve(args) = &mut cli.command {
        read_secret_files(args)?;
    }
    let matches = matches.subcommand_matches("serve").cloned();
    Ok(Loaded {
        cli,
        from_file,
        matches,
    })
}

/// `argv` with the file's keys appended as flags (those the command line
/// and the environment left to their defaults); the ids of those flags.
fn with_file(
    mut argv: Vec<OsString>,
    given: &ArgMatches,
    path: &Path,
) -> Result<(Vec<OsString>, HashSet<String>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Toml {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    let mut pairs = Vec::new();
    flatten("", &table, &mut pairs);
    let command = Cli::command();
    let serve = command
        .find_subcommand("serve")
        .expect("the serve subcommand exists");
    let keys: Vec<(String, &clap::Arg)> = serve
        .get_arguments()
        .filter_map(|a| Some((a.get_long()?.replace('-', "_"), a)))
        .filter(|(k, _)| k != "config" && k != "help")
        .collect();
    let mut from_file = HashSet::new();
    for (key, value) in pairs {
        let Some((_, arg)) = keys.iter().find(|(k, _)| *k == key) else {
            let best = keys
                .iter()
                .map(|(k, _)| (strsim::jaro_winkler(k, &key), k))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let hint = match best {
                Some((score, k)) if score > 0.8 => format!("; did you mean `{k}`?"),
                _ => String::from(" (`sse-bridge config default` lists every key)"),
            };
            return Err(ConfigError::Unknown {
                path: path.to_owned(),
                key,
                hint,
            });
        };
        let id = arg.get_id().as_str();
        if matches!(
            given.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let bad = |reason: String| ConfigError::Value {
            path: path.to_owned(),
            key: key.clone(),
            reason,
        };
        let long = format!("--{}", arg.get_long().unwrap_or(id));
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            match value {
                toml::Value::Boolean(true) => argv.push(long.into()),
                toml::Value::Boolean(false) => {}
                other => return Err(bad(format!("expected true or false, got {other}"))),
            }
        } else {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) if arg.get_value_delimiter().is_some() => items
                    .iter()
                    .map(|v| match v {
                        toml::Value::String(s) => Ok(s.clone()),
                        other => Err(bad(format!("expected a list of strings, got {other}"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(","),
                other => return Err(bad(format!("expected one value, got {other}"))),
            };
            argv.push(format!("{long}={text}").into());
        }
        from_file.insert(id.to_owned());
    }
    Ok((argv, from_file))
}

/// A clap error about a value the configuration file gave, as the file's.
fn blame_file(e: clap::Error, given: &ArgMatches) -> ConfigError {
    let path = given
        .get_one::<PathBuf>("config")
        .cloned()
        .unwrap_or_default();
    let flag = match e.get(clap::error::ContextKind::InvalidArg) {
        Some(clap::error::ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let key = flag
        .trim_start_matches("--")
        .split([' ', '=', '<'])
        .next()
        .unwrap_or_default()
        .replace('-', "_");
    let rendered = e.render().to_string();
    let reason = rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned();
    ConfigError::Value { path, key, reason }
}

/// `a.b = 1` and `[a] b = 1` are both `a_b`.
fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}_{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            other => out.push((key, other.clone())),
        }
    }
}

/// Reads the `*_file` secrets into their flags.
fn read_secret_files(args: &mut ServeArgs) -> Result<(), ConfigError> {
    let read = |flag: &'static str, path: &Path| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| ConfigError::SecretFile {
                flag,
                path: path.to_owned(),
                reason: e.to_string(),
            })
    };
    if let Some(p) = &args.jwt_secret_file {
        args.jwt_secret = Some(read("--jwt-secret-file", p)?);
    }
    if let Some(p) = &args.publisher_jwt_secret_file {
        args.publisher_jwt_secret = Some(read("--publisher-jwt-secret-file", p)?);
    }
    if let Some(p) = &args.valkey_url_file {
        args.valkey_url = Some(read("--valkey-url-file", p)?);
    }
    Ok(())
}

impl Loaded {
    /// The effective `serve` configuration as TOML lines, each with its
    /// source; secrets redacted.
    pub fn effective(&self) -> Vec<String> {
        let Some(matches) = &self.matches else {
            return Vec::new();
        };
        let command = Cli::command();
        let Some(serve) = command.find_subcommand("serve") else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let id = arg.get_id().as_str();
            if id == "help" || id == "config" {
                continue;
            }
            let key = long.replace('-', "_");
            let source = if self.from_file.contains(id) {
                "file"
            } else {
                match matches.value_source(id) {
                    Some(ValueSource::CommandLine) => "flag",
                    Some(ValueSource::EnvVariable) => "environment",
                    Some(ValueSource::DefaultValue) => "default",
                    _ => "unset",
                }
            };
            let values: Vec<String> = matches
                .get_raw(id)
                .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            let shown = if values.is_empty() {
                if source == "unset" {
                    lines.push(format!("# {key} (unset)"));
                    continue;
                }
                String::from("true")
            } else if SECRETS.contains(&key.as_str()) {
                String::from("\"<redacted>\"")
            } else {
                literal(&values.join(","))
            };
            lines.push(format!("{key} = {shown}  # {source}"));
        }
        lines
    }
}

/// `text` in lines of at most `width` characters (longer words alone).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}

/// A TOML literal for a flag's text: numbers and booleans bare.
fn literal(text: &str) -> String {
    if text.parse::<i64>().is_ok() || text == "true" || text == "false" {
        text.to_owned()
    } else {
        toml::Value::String(text.to_owned()).to_string()
    }
}

/// Every `serve` key, commented out with its help and default: a file to
/// start from.
pub fn default_file() -> String {
    let command = Cli::command();
    let mut out = String::from(
        "# sse-bridge configuration (`sse-bridge serve --config <file>`).\n\
         # Each key is a `serve` flag with `-` → `_`; a flag or an environment\n\
         # variable (SSE_BRIDGE_…) wins over this file. Uncomment what you set.\n",
    );
    let Some(serve) = command.find_subcommand("serve") else {
        return out;
    };
    for arg in serve.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "config" {
            continue;
        }
        out.push('\n');
        if let Some(help) = arg.get_help() {
            for line in wrap(&help.to_string(), 76) {
                out.push_str(&format!("# {line}\n"));
            }
        }
        if let Some(env) = arg.get_env() {
            out.push_str(&format!("# Environment: {}\n", env.to_string_lossy()));
        }
        let key = long.replace('-', "_");
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let value = if matches!(arg.get_action(), ArgAction::SetTrue) {
            String::from("false")
        } else if defaults.is_empty() {
            String::from("\"\"")
        } else {
            literal(&defaults.join(","))
        };
        out.push_str(&format!("# {key} = {value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_names_every_key_and_parses() {
        let text = default_file();
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let table: toml::Table = uncommented.parse().expect("valid TOML once uncommented");
        for key in [
            "http_addr",
            "valkey_url",
            "jwt_secret_file",
            "drain_delay_secs",
            "cors_origin",
        ] {
            assert!(table.contains_key(key), "{key} missing");
        }
        assert!(!table.contains_key("config"));
    }

    #[test]
    fn tables_flatten_to_flag_names() {
        let table: toml::Table = "a = 1\n[valkey]\nurl = \"x\"\n[b.c]\nd = true\n"
            .parse()
            .unwrap();
        let mut out = Vec::new();
        flatten("", &table, &mut out);
        let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b_c_d", "valkey_url"]);
    }
}
