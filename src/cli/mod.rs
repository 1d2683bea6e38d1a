//! The `sse-bridge` command line: one file per command, the flags in
//! [`args`], and the `serve` flags' conversion into a node's settings in
//! [`settings`].

mod args;
mod disconnect;
mod publish;
mod schema;
mod serve;
mod settings;
mod tail;
mod token;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
    }
}
