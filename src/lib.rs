//! sse-bridge: typed events from gRPC producers to browsers over
//! Server-Sent Events.
//!
//! Modules by layer, dependencies pointing down:
//!
//! - entry points: [`cli`] (the binary's commands), [`server`] (wires a
//!   node), [`client`] (the Rust publisher client), [`bench`];
//! - transports: [`grpc`], [`http`], and what bounds their connections,
//!   [`connections`] and [`tls`];
//! - the domain: [`publish`], [`auth`] (with [`key`] and [`jwks`]),
//!   [`schema`], [`hub`], [`streams`] (open streams, their limits and
//!   revocation), [`rate`], [`metrics`];
//! - the [`bus`] (embedded and Valkey);
//! - value types and formats: [`channel`], [`cursor`], [`revocation`],
//!   [`wire`], [`proto`], [`clock`], [`token`] (minting, for the CLI and
//!   tests).

pub mod auth;
pub mod bench;
pub mod bus;
pub mod channel;
pub mod cli;
pub mod client;
pub mod clock;
pub mod connections;
pub mod cursor;
pub mod grpc;
pub mod http;
pub mod hub;
pub mod jwks;
pub mod key;
pub mod metrics;
pub mod proto;
pub mod publish;
pub mod rate;
pub mod revocation;
pub mod schema;
pub mod server;
pub mod streams;
pub mod tls;
pub mod token;
pub mod wire;
