//! sse-bridge: typed events from gRPC producers to browsers over
//! Server-Sent Events.
//!
//! Modules by layer: transports [`grpc`] and [`http`] (plus [`cli`]); the
//! domain [`publish`], [`auth`], [`schema`] and [`hub`]; the [`bus`]; and
//! the value types [`channel`] and [`cursor`].

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
