//! End-to-end tests: a real bridge, real gRPC calls through the generated
//! client, real SSE reads over HTTP.

#[path = "e2e/harness.rs"]
mod harness;

#[path = "e2e/valkey_server.rs"]
mod valkey_server;

#[path = "e2e/delivery.rs"]
mod delivery;

#[path = "e2e/subscriber_auth.rs"]
mod subscriber_auth;

#[path = "e2e/publish_errors.rs"]
mod publish_errors;

#[path = "e2e/resume.rs"]
mod resume;

#[path = "e2e/catalogue.rs"]
mod catalogue;

#[path = "e2e/cli.rs"]
mod cli;

#[path = "e2e/valkey_faults.rs"]
mod valkey_faults;

#[path = "e2e/limits.rs"]
mod limits;

#[path = "e2e/revocation.rs"]
mod revocation;

#[path = "e2e/lifecycle.rs"]
mod lifecycle;

#[path = "e2e/tls.rs"]
mod tls;

#[path = "e2e/hardening.rs"]
mod hardening;

#[path = "e2e/memory_bounds.rs"]
mod memory_bounds;

#[path = "e2e/connections.rs"]
mod connections;
