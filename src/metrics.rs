//! Prometheus metrics: the recorder, and the names the bridge records.
//!
//! Metrics are process-wide (one recorder per process); `/metrics` renders
//! them in the Prometheus text format.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Streams open on this node (gauge).
pub const STREAMS_OPEN: &str = "sse_bridge_streams_open";
/// Of the open streams, those asleep in their channel's slot, with no task
/// of their own (gauge; see `hub::asleep`).
pub const STREAMS_ASLEEP: &str = "sse_bridge_streams_asleep";
/// Channels this node has local listeners for (gauge).
pub const CHANNELS_WATCHED: &str = "sse_bridge_channels_watched";
/// Events accepted by the bus (counter; `duplicate` for idempotent repeats).
pub const EVENTS_PUBLISHED: &str = "sse_bridge_events_published_total";
/// Publishes refused (counter, by gRPC `code`).
pub const PUBLISH_REJECTED: &str = "sse_bridge_publish_rejected_total";
/// Time from a publish request to the bus's answer (histogram, seconds).
pub const PUBLISH_SECONDS: &str = "sse_bridge_publish_seconds";
/// Event frames written to SSE streams (counter).
pub const EVENTS_DELIVERED: &str = "sse_bridge_events_delivered_total";
/// `bridge.reset` frames sent (counter, by `reason`).
pub const RESETS: &str = "sse_bridge_resets_total";
/// Lagging listeners caught up (counter, by `source`: `cache` or `bus`).
pub const CATCH_UPS: &str = "sse_bridge_catch_ups_total";
/// Refused tokens (counter, by `side` and `reason`).
pub const AUTH_FAILURES: &str = "sse_bridge_auth_failures_total";
/// Streams closed by a revocation order (counter).
pub const STREAMS_REVOKED: &str = "sse_bridge_streams_revoked_total";
/// Streams refused by a limit or an order (counter, by `reason`).
pub const STREAMS_REFUSED: &str = "sse_bridge_streams_refused_total";
/// Streams closed because their client stopped reading, or its socket
/// stalled, for longer than the idle timeout (counter).
pub const STALLED_CLOSED: &str = "sse_bridge_stalled_connections_closed_total";
/// Publishes refused by the per-publisher rate limit (counter).
pub const PUBLISH_THROTTLED: &str = "sse_bridge_publish_throttled_total";
/// Bus operations that failed (counter).
pub const BUS_ERRORS: &str = "sse_bridge_bus_errors_total";
/// Lost bus connections (counter).
pub const BUS_DISCONNECTS: &str = "sse_bridge_bus_disconnects_total";
/// Bytes of recent frames this node caches over all channels (gauge;
/// bounded by `--recent-cache-bytes`).
pub const RECENT_BYTES: &str = "sse_bridge_recent_cache_bytes";
/// Recent frames evicted to keep within `--recent-cache-bytes` (counter).
pub const RECENT_EVICTED: &str = "sse_bridge_recent_cache_evicted_total";
/// Bytes of history the embedded bus holds (gauge; bounded by
/// `--max-history-bytes`).
pub const HISTORY_BYTES: &str = "sse_bridge_history_bytes";
/// History entries the embedded bus dropped to keep within
/// `--max-history-bytes`, oldest first across channels (counter).
pub const HISTORY_EVICTED: &str = "sse_bridge_history_evicted_total";
/// Connections open (gauge, by `listener`: `http` or `grpc`).
pub const CONNECTIONS_OPEN: &str = "sse_bridge_connections_open";
/// Connections refused because the listener was at its cap (counter, by
/// `listener`).
pub const CONNECTIONS_REFUSED: &str = "sse_bridge_connections_refused_total";
/// Connections closed because they had no request open for the idle
/// timeout (counter, by `listener`).
pub const IDLE_CLOSED: &str = "sse_bridge_idle_connections_closed_total";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder once and returns its handle; `None` when
/// another recorder was installed first by the embedding program.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(PUBLISH_SECONDS.to_owned()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                    ],
                )
                .ok()?
                .install_recorder()
                .ok()
                .inspect(start_upkeep)
        })
        .clone()
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds histogram samples into their buckets every few seconds. The
/// recorder keeps every sample recorded until then (a scrape also folds
/// them), so a bridge that nobody scrapes would otherwise grow by a few
/// bytes per publish for as long as it runs. A thread rather than a task:
/// the recorder is the process's, and outlives any one runtime.
fn start_upkeep(handle: &PrometheusHandle) {
    let handle = handle.clone();
    let started = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "no metrics upkeep thread; histograms fold only when scraped");
    }
}
