//! The `sse-bridge` command line: one file per command, the flags in
//! [`args`], and the `serve` flags' conversion into a node's settings in
//! [`settings`].

mod args;
mod config;
mod disconnect;
mod health;
mod invocation;
mod publish;
mod schema;
mod serve;
mod settings;
mod tail;
mod token;

use anyhow::Result;
use clap::{Parser, Subcommand};

pub use config::{ConfigError, Loaded, parse};

pub use args::{
    CodegenArgs, CodegenTarget, DisconnectArgs, LogFormat, PublishArgs, SchemaArgs, ServeArgs,
    TailArgs, TokenArgs,
};

#[derive(Parser, Debug)]
#[command(
    name = "sse-bridge",
    version,
    about = "Typed events from gRPC producers to browsers over Server-Sent Events"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a bridge node (gRPC publish API + SSE endpoint).
    Serve(Box<ServeArgs>),
    /// Mint an HS256 token for a subscriber or a publisher.
    Token(TokenArgs),
    /// Publish one event from JSON through the gRPC API.
    Publish(PublishArgs),
    /// Close streams on every node: a tenant's, a user's or a channel's
    /// (gRPC `Disconnect`; needs a `streams:admin` token).
    Disconnect(DisconnectArgs),
    /// Print the events of one or more channels as they arrive.
    Tail(TailArgs),
    /// List the event catalogue: names, fields, rules and an example each.
    Schema(SchemaArgs),
    /// Generate client code from the catalogue.
    Codegen(CodegenArgs),
    /// Load-test a bridge through its real APIs (see docs/benchmarks.md).
    Bench(Box<crate::bench::BenchArgs>),
    /// The stand-in server `bench idle-floor` spawns and measures.
    #[command(hide = true)]
    BenchFloorServer(crate::bench::FloorServerArgs),
    /// The configuration file: print a complete commented one, or check one.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Exit 0 when a bridge's /healthz answers 200 (or /readyz, with
    /// --ready), 1 otherwise: a container HEALTHCHECK without curl.
    Health(health::HealthArgs),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print every `serve` key, commented, with its help and default.
    Default,
    /// Validate a configuration file (with the environment) and print the
    /// effective configuration: each value's source, secrets redacted.
    Check {
        #[arg(long, env = "SSE_BRIDGE_CONFIG")]
        config: std::path::PathBuf,
    },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::serve(*args).await,
        Command::Token(args) => token::mint_token(args),
        Command::Publish(args) => publish::publish(args).await,
        Command::Disconnect(args) => disconnect::disconnect(args).await,
        Command::Tail(args) => tail::tail(args).await,
        Command::Schema(args) => schema::schema(args),
        Command::Codegen(args) => schema::codegen(args),
        Command::Bench(args) => crate::bench::run(*args).await,
        Command::BenchFloorServer(args) => crate::bench::serve_floor(args).await,
        Command::Config(ConfigCommand::Default) => {
            print!("{}", config::default_file());
            Ok(())
        }
        Command::Config(ConfigCommand::Check { config }) => check(config).await,
        Command::Health(args) => health::health(args).await,
    }
}

/// `config check`: the file parsed as `serve --config` would, the settings
/// built (keys loaded), the effective configuration printed.
async fn check(path: std::path::PathBuf) -> Result<()> {
    let argv = vec![
        "sse-bridge".into(),
        "serve".into(),
        "--config".into(),
        path.clone().into_os_string(),
    ];
    let loaded = parse(argv).map_err(|e| match e {
        ConfigError::Clap(e) => anyhow::anyhow!("{}", e.render()),
        other => other.into(),
    })?;
    let Command::Serve(args) = &loaded.cli.command else {
        anyhow::bail!("not a serve command line");
    };
    args.settings().await?;
    for line in loaded.effective() {
        println!("{line}");
    }
    eprintln!("{}: valid", path.display());
    Ok(())
}
