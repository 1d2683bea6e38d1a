//! End-to-end tests: a real bridge, real gRPC calls through the generated
//! client, real SSE reads over HTTP.

mod asleep;
mod balancer;
mod black_hole;
mod catalogue;
mod cli;
mod cluster;
mod connections;
mod console;
mod delivery;
mod deploy;
mod docs;
mod durability;
mod grpc_web;
mod hardening;
mod harness;
mod lifecycle;
mod limits;
mod memory_bounds;
mod publish_errors;
mod resume;
mod revocation;
mod soak;
mod subscriber_auth;
mod telemetry;
mod tls;
mod valkey_faults;
mod valkey_server;
