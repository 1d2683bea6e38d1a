//! The HTTP transport: the SSE endpoint, health and readiness, CORS, and
//! JSON errors.

mod error;
mod sse;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use error::ApiError;

use crate::auth::SubscriberAuth;
use crate::hub::Hub;

/// What the SSE endpoint needs.
#[derive(Clone)]
pub struct HttpConfig {
    pub max_channels: usize,
    pub keepalive: Duration,
    /// Reconnect delay sent in the opening `retry:` line.
    pub retry: Duration,
    pub cors_origins: Vec<HeaderValue>,
}

#[derive(Clone)]
pub(crate) struct AppState {
    hub: Hub,
    auth: SubscriberAuth,
    config: Arc<HttpConfig>,
    /// Flips to true when the node shuts down; open streams then close.
    shutdown: watch::Receiver<bool>,
    metrics: Option<PrometheusHandle>,
}

/// Builds the router of the HTTP listener.
pub fn router(
    hub: Hub,
    auth: SubscriberAuth,
    config: HttpConfig,
    shutdown: watch::Receiver<bool>,
    metrics: Option<PrometheusHandle>,
) -> Router {
    let cors_origins = config.cors_origins.clone();
    let state = AppState {
        hub,
        auth,
        config: Arc::new(config),
        shutdown,
        metrics,
    };
    let router = Router::new()
        .route("/v1/events", get(sse::events))
        .route("/v1/schema", get(schema))
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .route("/readyz", get(readyz))
        .with_state(state);
    if cors_origins.is_empty() {
        return router;
    }
    router.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(cors_origins))
            .allow_methods([Method::GET, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CACHE_CONTROL,
                HeaderName::from_static("last-event-id"),
            ])
            .allow_credentials(true)
            .max_age(Duration::from_secs(600)),
    )
}

/// The event catalogue for tools: names, fields, types, rules, examples.
async fn schema() -> axum::Json<serde_json::Value> {
    axum::Json(crate::schema::Schema::embedded().describe())
}

/// Prometheus text format.
async fn render_metrics(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are recorded by the embedding program\n",
        )
            .into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.hub.bus().ready().await {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "bus unavailable\n")
    }
}
