//! What every HTTP handler shares: the node's hub and streams, the
//! subscriber auth, the endpoint's settings and the drain signal.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::auth::SubscriberAuth;
use crate::hub::Hub;
use crate::streams::Streams;

/// What the SSE endpoint needs.
#[derive(Clone)]
pub struct HttpConfig {
    pub max_channels: usize,
    pub keepalive: Duration,
    /// Reconnect delay sent in the opening `retry:` line.
    pub retry: Duration,
    /// When a draining node ends its streams, each gets a `retry:` drawn
    /// from up to this long, so its clients do not return all at once.
    pub drain_jitter: Duration,
    pub cors_origins: Vec<HeaderValue>,
    /// Longest accepted request target (path and query), in bytes.
    pub max_url_bytes: usize,
    /// Largest accepted sum of header names and values, in bytes.
    pub max_header_bytes: usize,
    /// The gRPC port the developer console calls, when `/console` is on.
    pub console: Option<u16>,
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(super) hub: Hub,
    /// The node's open streams and their limits.
    pub(super) streams: Arc<Streams>,
    pub(super) auth: Arc<SubscriberAuth>,
    pub(super) config: Arc<HttpConfig>,
    /// True from SIGTERM on: `/readyz` says 503 while the node still serves.
    pub(super) draining: watch::Receiver<bool>,
    pub(super) metrics: Option<PrometheusHandle>,
    /// What every stream shares.
    pub(super) stream_settings: Arc<super::sse::StreamSettings>,
}
