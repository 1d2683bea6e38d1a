//! Logs and traces: the process's `tracing` subscriber, and the optional
//! OTLP export of the publish path's spans.
//!
//! Spans meant for export (`publish`, `bus.publish`, `fanout`) use the
//! [`TARGET`] target. The log layer never takes them, and without
//! `--otlp-endpoint` no layer does, so each of those span macros finds its
//! callsite disabled: one cached check, no allocation, no field formatted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// The target of every span that is exported over OTLP.
pub const TARGET: &str = "sse_bridge::otel";

/// Set once an exporter is installed: the request path reads it to skip
/// parsing `traceparent` when nothing would use it.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Where and how much to export.
#[derive(Debug, Clone)]
pub struct Otlp {
    /// An OTLP/gRPC collector, `http://host:4317`.
    pub endpoint: http::Uri,
    /// The fraction of new traces kept; a producer's sampled `traceparent`
    /// is always followed.
    pub sample_ratio: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "--otlp-endpoint `{0}` must be an http:// URL of an OTLP/gRPC collector, such as http://127.0.0.1:4317 \
         (TLS to the collector is not built in: send to a local collector agent)"
    )]
    Endpoint(String),
    #[error("--otlp-sample-ratio must be between 0 and 1, got {0}")]
    Ratio(f64),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
    #[error("cannot install the log subscriber: {0}")]
    Install(String),
}

impl Otlp {
    pub fn parse(endpoint: &str, sample_ratio: f64) -> Result<Otlp, TelemetryError> {
        let bad = || TelemetryError::Endpoint(endpoint.to_owned());
        let uri: http::Uri = endpoint.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(bad());
        }
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(TelemetryError::Ratio(sample_ratio));
        }
        Ok(Otlp {
            endpoint: uri,
            sample_ratio,
        })
    }
}

/// The installed subscriber's exporter, flushed by [`Telemetry::shutdown`].
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs the process's subscriber: logs to standard error at
/// `RUST_LOG` (default `info`), plain or JSON, and the span export when
/// `otlp` is set. Must run inside a Tokio runtime (the exporter's
/// connection lives on it).
pub fn init(json: bool, otlp: Option<&Otlp>) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // More specific than any directive a user writes for the crate, so
        // `RUST_LOG=debug` still leaves exported spans to the exporter.
        .add_directive(off_for_exported_spans());
    let (installed, provider) = match otlp {
        // The filter applies to the whole subscriber: a disabled callsite is
        // then never asked again. Per-layer filters (below) make every span
        // a registry entry: 15-25 % more instructions per delivery.
        None => (
            Registry::default().with(filter).with(logs(json)).try_init(),
            None,
        ),
        Some(otlp) => {
            let provider = provider(otlp)?;
            let traces = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("sse-bridge"))
                .with_filter(Targets::new().with_target(TARGET, LevelFilter::INFO));
            let installed = Registry::default()
                .with(logs(json).with_filter(filter))
                .with(traces)
                .try_init();
            (installed, Some(provider))
        }
    };
    installed.map_err(|e| TelemetryError::Install(e.to_string()))?;
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    Ok(Telemetry { provider })
}

/// Log lines on standard error, for whichever subscriber stack takes them.
fn logs<S>(json: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use std::io::IsTerminal;
    // Colours only for a person at a terminal, not in a log file.
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        logs.json().with_current_span(true).boxed()
    } else {
        logs.boxed()
    }
}

fn off_for_exported_spans() -> tracing_subscriber::filter::Directive {
    format!("{TARGET}=off")
        .parse()
        .expect("a constant target makes a valid directive")
}

fn provider(otlp: &Otlp) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(otlp.endpoint.to_string())
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let exporter = OnRuntime {
        inner: Arc::new(exporter),
        runtime: tokio::runtime::Handle::current(),
    };
    // OTEL_SERVICE_NAME, when set, names the service instead.
    let resource = if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
        opentelemetry_sdk::Resource::builder().build()
    } else {
        opentelemetry_sdk::Resource::builder()
            .with_service_name("sse-bridge")
            .build()
    };
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            otlp.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// Runs each export on the bridge's runtime. The SDK's batch processor
/// exports from its own thread, which has no Tokio reactor, and the tonic
/// exporter's connection needs one: awaited there, it panics and every
/// later span is dropped. Awaiting a spawned task's handle needs no reactor.
#[derive(Debug)]
struct OnRuntime {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
}

impl SpanExporter for OnRuntime {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let inner = self.inner.clone();
        let task = self.runtime.spawn(async move { inner.export(batch).await });
        async move {
            task.await.unwrap_or_else(|e| {
                Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                    e.to_string(),
                ))
            })
        }
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        // Called once, while the provider is built and before any export.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

impl Telemetry {
    /// Exports the spans still buffered. Blocking (the SDK waits on its
    /// thread), so it runs off the runtime's workers.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = flushed {
            eprintln!("warning: spans not exported at shutdown: {e}");
        }
    }
}

/// The publish API's calls that get a server span.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    Publish,
    PublishStream,
}

impl Call {
    /// The span's name, and the RPC method it stands for.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Call::Publish => ("publish", "Publish"),
            Call::PublishStream => ("publish_stream", "PublishStream"),
        }
    }
}

/// A span for one gRPC call of the publish API, continuing the producer's
/// trace when its metadata carries a W3C `traceparent`. One callsite for
/// both calls: `otel.name` names the exported span.
pub fn server_span(call: Call, metadata: &tonic::metadata::MetadataMap) -> tracing::Span {
    let (name, method) = call.names();
    let span = tracing::info_span!(
        target: TARGET,
        "grpc",
        otel.name = name,
        otel.kind = "server",
        rpc.method = method,
        channel.prefix = tracing::field::Empty,
        event.name = tracing::field::Empty,
        event.id = tracing::field::Empty,
        sse_bridge.tenant = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    );
    if exporting() && !span.is_disabled() {
        let parent = TraceContextPropagator::new().extract(&Metadata(metadata.as_ref()));
        // Fails only without the OpenTelemetry layer, which `exporting`
        // rules out.
        let _ = span.set_parent(parent);
    }
    span
}

/// Marks `span` failed with the call's gRPC status.
pub fn record_status(span: &tracing::Span, status: &tonic::Status) {
    if !span.is_disabled() {
        span.record("otel.status_code", "ERROR");
        span.record(
            "otel.status_description",
            tracing::field::display(format_args!("{:?}: {}", status.code(), status.message())),
        );
    }
}

/// gRPC metadata as OpenTelemetry's propagators read it.
struct Metadata<'a>(&'a http::HeaderMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_collectors_with_a_host_are_accepted() {
        assert!(Otlp::parse("http://127.0.0.1:4317", 1.0).is_ok());
        for bad in ["https://collector:4317", "collector:4317", "http://", ""] {
            let e = Otlp::parse(bad, 1.0).expect_err(bad).to_string();
            assert!(e.contains("--otlp-endpoint"), "{bad}: {e}");
        }
        assert!(Otlp::parse("http://c:4317", 1.5).is_err());
        assert!(Otlp::parse("http://c:4317", -0.1).is_err());
    }

    #[test]
    fn the_off_directive_is_built() {
        assert_eq!(
            off_for_exported_spans().to_string(),
            format!("{TARGET}=off")
        );
    }
}
