//! The HTTP transport: the SSE endpoint, health and readiness, CORS, and
//! JSON errors.

mod console;
mod direct;
mod error;
pub mod listener;
mod sse;
mod state;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use error::ApiError;
use state::AppState;
pub use state::HttpConfig;

use crate::auth::SubscriberAuth;
use crate::hub::Hub;
use crate::streams::Streams;

/// Builds the router of the HTTP listener.
pub fn router(
    hub: Hub,
    streams: Arc<Streams>,
    auth: SubscriberAuth,
    config: HttpConfig,
    draining: watch::Receiver<bool>,
    metrics: Option<PrometheusHandle>,
) -> Router {
    let cors_origins = config.cors_origins.clone();
    let console = config.console.map(console::page);
    let stream_settings = Arc::new(sse::StreamSettings::new(&config));
    let state = AppState {
        hub,
        streams,
        auth: Arc::new(auth),
        config: Arc::new(config),
        draining,
        metrics,
        stream_settings,
    };
    let router = Router::new()
        .route("/v1/events", get(sse::events))
        .route("/v1/schema", get(schema))
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .route("/readyz", get(readyz));
    // Off (404) unless --console or --dev.
    let router = match console {
        Some(page) => router.route("/console", get(move || async move { page })),
        None => router,
    };
    let router = router
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_size,
        ))
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

/// Refuses oversized request targets and headers with a JSON error (hyper
/// itself drops heads far beyond these bounds).
async fn request_size(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let url = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if url > state.config.max_url_bytes {
        return ApiError::UrlTooLong {
            max: state.config.max_url_bytes,
            got: url,
        }
        .into_response();
    }
    let headers: usize = request
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers > state.config.max_header_bytes {
        return ApiError::HeadersTooLarge {
            max: state.config.max_header_bytes,
            got: headers,
        }
        .into_response();
    }
    tracing::debug!(method = %request.method(), target = %redacted_target(request.uri()), "request");
    next.run(request).await
}

/// The request target for logs: the `access_token` query value replaced,
/// so bearer tokens never reach log storage.
pub(crate) fn redacted_target(uri: &axum::http::Uri) -> String {
    let Some(query) = uri.query() else {
        return uri.path().to_owned();
    };
    let mut out = form_urlencoded::Serializer::new(format!("{}?", uri.path()));
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == "access_token" {
            out.append_pair(&k, "[redacted]");
        } else {
            out.append_pair(&k, &v);
        }
    }
    out.finish()
}

/// The event catalogue for tools: names, fields, types, rules, examples.
async fn schema() -> axum::Json<serde_json::Value> {
    axum::Json(crate::schema::Schema::embedded().describe())
}

/// Prometheus text format.
async fn render_metrics(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match &state.metrics {
        Some(handle) => {
            let mut text = handle.render();
            crate::latency::render(&mut text);
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
        }
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

/// 200 when the node should get traffic; 503 while the bus or a Valkey
/// subscription is down, or while the node drains. The body says which:
/// `{"ready":false,"bus":"ok","subscriptions":"down","draining":false}`.
async fn readyz(State(state): State<AppState>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let draining = *state.draining.borrow();
    let bus = state.hub.bus().readiness().await;
    let ready = bus.ready() && !draining;
    let word = |ok: bool| if ok { "ok" } else { "down" };
    let body = serde_json::json!({
        "ready": ready,
        "bus": word(bus.commands),
        "subscriptions": word(bus.subscriptions),
        "draining": draining,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}
