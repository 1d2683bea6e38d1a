//! sse-bridge: typed events from gRPC producers to browsers over
//! Server-Sent Events.
//!
//! # What this library offers
//!
//! - [`client`]: the Rust publisher client, over the generated [`proto`]
//!   types.
//! - [`schema`]: the event catalogue the node enforces.
//! - [`server`]: start a node in-process. Its settings come from the
//!   `serve` flags ([`cli::ServeArgs`]), the one way a node is configured.
//! - [`cli`]: the binary's commands, for programs that wrap it.
//! - [`token`]: mint subscriber and publisher tokens (the `token` command).
//! - [`channel`]: the parsed channel name, for checking names before a
//!   publish.
//! - [`bench`]: the load generator behind `sse-bridge bench`.
//! - [`telemetry`]: logs and the optional OTLP export of traces.
//!
//! Everything else is internal. Modules by layer, dependencies pointing
//! down:
//!
//! - transports: `grpc`, `http`, and what bounds their connections,
//!   `connections` and `tls`;
//! - the domain: `publish`, `auth` (with `key` and `jwks`), `hub`,
//!   `streams` (open streams, their limits and revocation), `rate`,
//!   `metrics`;
//! - the `bus` (embedded and Valkey);
//! - value types and formats: `cursor`, `revocation`, `wire`, `clock`;
//!   and `write_through`, the `AsyncWrite` the connection wrappers share.

pub mod bench;
pub mod channel;
pub mod cli;
pub mod client;
pub mod proto;
pub mod schema;
pub mod server;
pub mod telemetry;
pub mod token;

pub(crate) mod auth;
pub(crate) mod bus;
pub(crate) mod clock;
pub(crate) mod connections;
pub(crate) mod cursor;
pub(crate) mod grpc;
pub(crate) mod http;
pub(crate) mod hub;
pub(crate) mod jwks;
pub(crate) mod key;
pub(crate) mod latency;
pub(crate) mod metrics;
pub(crate) mod publish;
pub(crate) mod rate;
pub(crate) mod revocation;
pub(crate) mod streams;
pub(crate) mod tls;
pub(crate) mod wire;
pub(crate) mod write_through;

/// The parsers that face the network, for the fuzz targets in `fuzz/`
/// (built with `--features fuzzing`). Not an API: it changes with them.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub mod auth {
        pub use crate::auth::{Keys, Rules, SubscriberAuth, Verifier, bearer};
        pub use crate::key::Key;
    }
    pub mod cursor {
        pub use crate::cursor::{decode, encode};
    }
    pub mod wire {
        pub use crate::wire::frame;
    }
}
