//! The developer console at `/console`: one page shipped inside the binary
//! (no CDN, no build step), served with `--console` or `--dev`. It reads the
//! catalogue from `/v1/schema`, tails channels over `EventSource`, and
//! publishes over gRPC-Web to this node's gRPC port. It holds no secret:
//! the developer pastes tokens, which stay in the page's memory.

use axum::response::Html;

const PAGE: &str = include_str!("console.html");

/// The page, told which port the gRPC-Web calls go to.
pub(super) fn page(grpc_port: u16) -> Html<String> {
    Html(PAGE.replace("__GRPC_PORT__", &grpc_port.to_string()))
}
