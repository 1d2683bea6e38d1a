//! Traces and the delivery-latency histogram, seen from outside: the binary
//! exports to an OTLP receiver that the test runs (a tonic server built
//! from the opentelemetry-proto definitions), and the test reads the spans
//! it was sent: names, parents, attributes and status.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use sse_bridge::client;

use crate::harness::*;

const BIN: &str = env!("CARGO_BIN_EXE_sse-bridge");
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// Every span the receiver was sent, with its service name.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Span)>>>);

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| text(a.value.as_ref()?.value.as_ref()?))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    got.push((service.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn text(v: &Any) -> Option<String> {
    match v {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        Any::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| text(a.value.as_ref()?.value.as_ref()?))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn receiver() -> (Received, std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let service = TraceServiceServer::new(received.clone());
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    (received, addr, server)
}

struct Node {
    child: tokio::process::Child,
    http: String,
    grpc: String,
}

async fn start(otlp: std::net::SocketAddr, extra: &[&str]) -> Node {
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let grpc = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (http_addr, grpc_addr) = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
    drop((http, grpc));
    let child = tokio::process::Command::new(BIN)
        .args([
            "serve",
            "--jwt-secret",
            SECRET,
            "--http-addr",
            &http_addr.to_string(),
            "--grpc-addr",
            &grpc_addr.to_string(),
            "--otlp-endpoint",
            &format!("http://{otlp}"),
        ])
        .args(extra)
        .env_remove("OTEL_SERVICE_NAME")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the bridge starts");
    let node = Node {
        child,
        http: format!("http://{http_addr}"),
        grpc: format!("http://{grpc_addr}"),
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while http_client()
        .get(format!("{}/readyz", node.http))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node
}

impl Node {
    async fn subscribe(&self, resource: &str, last_event_id: Option<&str>) -> Sse {
        let mut req = http_client()
            .get(format!(
                "{}/v1/events?channel={}",
                self.http,
                channel(resource)
            ))
            .bearer_auth(subscriber_token(TENANT));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let response = req.send().await.expect("subscribe");
        assert_eq!(response.status(), 200);
        Sse::new(response)
    }

    /// Publishes a `scan.progress`, with a `traceparent` when given.
    async fn publish(
        &self,
        resource: &str,
        traceparent: Option<&str>,
    ) -> Result<String, tonic::Status> {
        let mut publisher = client::connect(&self.grpc, &publisher_token(&["*"]))
            .await
            .expect("connect");
        let mut request = tonic::Request::new(client::request(
            pb_channel(TENANT, resource),
            progress(1, 2),
            "",
        ));
        if let Some(tp) = traceparent {
            request
                .metadata_mut()
                .insert("traceparent", tp.parse().expect("ascii"));
        }
        publisher.publish(request).await.map(|r| r.into_inner().id)
    }

    async fn metrics(&self) -> String {
        http_client()
            .get(format!("{}/metrics", self.http))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("a body")
    }

    /// SIGTERM, then waits for the exit: buffered spans go out on the way.
    async fn stop(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("exits")
            .unwrap();
        assert!(status.success(), "{status:?}");
    }
}

fn spans_named<'a>(spans: &'a [(String, Span)], name: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|(_, s)| s.name == name)
        .map(|(_, s)| s)
        .collect()
}

fn count_of(metrics: &str, event: &str) -> u64 {
    let line = format!("sse_bridge_delivery_latency_seconds_count{{event=\"{event}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .unwrap_or_else(|| panic!("no {line} in\n{metrics}"))
        .parse()
        .expect("a count")
}

/// A publish carrying a `traceparent` continues the producer's trace:
/// `publish` (server) → `bus.publish` → `fanout`, with the channel prefix,
/// event name and id, and no tenant unless asked for. A publish without one
/// starts a trace; a refused one is marked failed. Spans buffered at SIGTERM
/// are exported before the exit. Live frames feed the latency histogram;
/// a replayed one does not.
#[tokio::test(flavor = "multi_thread")]
async fn publish_spans_continue_the_producers_trace() {
    let (received, otlp, server) = receiver().await;
    let node = start(otlp, &[]).await;
    let mut stream = node.subscribe("traced", None).await;
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let first = node
        .publish("traced", Some(&traceparent))
        .await
        .expect("published");
    assert_eq!(
        stream.next_event().await.id.as_deref(),
        Some(first.as_str())
    );
    let second = node.publish("traced", None).await.expect("published");
    assert_eq!(
        stream.next_event().await.id.as_deref(),
        Some(second.as_str())
    );
    let mut bad = client::connect(&node.grpc, &publisher_token(&["*"]))
        .await
        .unwrap();
    let mut request = tonic::Request::new(client::request(
        pb_channel(TENANT, "bad resource!"),
        progress(1, 2),
        "",
    ));
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    let status = bad.publish(request).await.expect_err("a bad channel");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    // Two live frames on the first stream; a stream resumed after the
    // first replays the second, which is not live.
    let metrics = node.metrics().await;
    assert_eq!(count_of(&metrics, "scan.progress"), 2, "{metrics}");
    let mut resumed = node.subscribe("traced", Some(&first)).await;
    assert_eq!(
        resumed.next_event().await.id.as_deref(),
        Some(second.as_str())
    );
    assert_eq!(count_of(&node.metrics().await, "scan.progress"), 2);
    drop((stream, resumed));
    node.stop().await;

    let spans = received.0.lock().unwrap().clone();
    assert!(spans.iter().all(|(service, _)| service == "sse-bridge"));
    let publishes = spans_named(&spans, "publish");
    assert_eq!(publishes.len(), 3, "{publishes:#?}");
    let traced = publishes
        .iter()
        .find(|s| attr(s, "event.id").as_deref() == Some(first.as_str()))
        .expect("the first publish's span");
    assert_eq!(hex(&traced.trace_id), TRACE_ID);
    assert_eq!(hex(&traced.parent_span_id), PARENT_ID);
    assert_eq!(attr(traced, "channel.prefix").as_deref(), Some("scans"));
    assert_eq!(attr(traced, "event.name").as_deref(), Some("scan.progress"));
    assert_eq!(attr(traced, "sse_bridge.tenant"), None, "tenant is opt-in");
    assert_eq!(traced.kind, 2, "SPAN_KIND_SERVER");

    let bus = spans_named(&spans, "bus.publish")
        .into_iter()
        .find(|s| s.parent_span_id == traced.span_id)
        .expect("a bus span under the publish");
    assert_eq!(bus.trace_id, traced.trace_id);
    let fanout = spans_named(&spans, "fanout")
        .into_iter()
        .find(|s| s.parent_span_id == bus.span_id)
        .expect("a fan-out span under the bus step");
    assert_eq!(attr(fanout, "listeners").as_deref(), Some("1"));
    assert_eq!(attr(fanout, "event.id").as_deref(), Some(first.as_str()));

    let untraced = publishes
        .iter()
        .find(|s| attr(s, "event.id").as_deref() == Some(second.as_str()))
        .expect("the second publish's span");
    assert!(untraced.parent_span_id.is_empty(), "a new trace");
    assert_ne!(hex(&untraced.trace_id), TRACE_ID);

    let failed = publishes
        .iter()
        .find(|s| s.status.as_ref().map(|s| s.code) == Some(StatusCode::Error as i32))
        .expect("the refused publish is marked failed");
    assert_eq!(hex(&failed.trace_id), TRACE_ID);
    let why = &failed.status.as_ref().unwrap().message;
    assert!(why.contains("InvalidArgument"), "{why}");
    assert_eq!(attr(failed, "event.id"), None);
    server.abort();
}

/// With a sample ratio of 0 only producers' sampled traces are exported,
/// and `--otlp-tenant-attribute` adds the tenant.
#[tokio::test(flavor = "multi_thread")]
async fn sampling_follows_the_producer_and_the_tenant_is_opt_in() {
    let (received, otlp, server) = receiver().await;
    let node = start(
        otlp,
        &["--otlp-sample-ratio", "0", "--otlp-tenant-attribute"],
    )
    .await;
    let unsampled = node.publish("sampled", None).await.expect("published");
    let sampled = node
        .publish("sampled", Some(&format!("00-{TRACE_ID}-{PARENT_ID}-01")))
        .await
        .expect("published");
    node.stop().await;
    let spans = received.0.lock().unwrap().clone();
    let publishes = spans_named(&spans, "publish");
    assert_eq!(publishes.len(), 1, "{publishes:#?}");
    assert_eq!(attr(publishes[0], "event.id"), Some(sampled));
    assert_eq!(
        attr(publishes[0], "sse_bridge.tenant").as_deref(),
        Some(TENANT)
    );
    assert!(
        spans
            .iter()
            .all(|(_, s)| attr(s, "event.id").as_deref() != Some(unsampled.as_str())),
        "the unsampled publish exported nothing"
    );
    server.abort();
}

/// A mistyped endpoint stops start-up with a message that says what to use.
#[test]
fn a_bad_endpoint_is_refused_at_start() {
    let out = std::process::Command::new(BIN)
        .args([
            "serve",
            "--jwt-secret",
            SECRET,
            "--otlp-endpoint",
            "collector:4317",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--otlp-endpoint") && err.contains("http://"),
        "{err}"
    );
}
