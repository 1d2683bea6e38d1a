//! A real bridge on free loopback ports, real gRPC clients and a raw SSE
//! reader, for the end-to-end tests.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use sse_bridge::cli::{Cli, Command};
use sse_bridge::client::{self, Client};
use sse_bridge::proto::events::v1::Event;
use sse_bridge::proto::ssebridge::v1 as pb;
use sse_bridge::schema::Schema;
use sse_bridge::server::{self, Running};
use sse_bridge::token;

pub const SECRET: &str = "test-secret-for-e2e";
pub const TENANT: &str = "0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80";
pub const OTHER_TENANT: &str = "7d3c2b1a-0000-4000-8000-000000000001";
/// Upper bound on any single wait, so a broken build fails instead of
/// hanging. Not a performance assertion.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub use crate::valkey_server::ValkeyServer;

/// The bus a test bridge runs on.
#[derive(Clone)]
pub enum Backend {
    Memory,
    Valkey(std::sync::Arc<std::sync::Mutex<ValkeyServer>>),
}

impl Backend {
    pub fn valkey() -> Backend {
        Backend::Valkey(std::sync::Arc::new(std::sync::Mutex::new(
            ValkeyServer::start(false),
        )))
    }

    pub fn valkey_persistent() -> Backend {
        Backend::Valkey(std::sync::Arc::new(std::sync::Mutex::new(
            ValkeyServer::start(true),
        )))
    }

    /// Runs one command on the backend's Valkey.
    pub async fn cmd(&self, args: &[&str]) -> redis::Value {
        let url = self.server().url();
        crate::valkey_server::cmd(&url, args).await
    }

    pub fn server(&self) -> std::sync::MutexGuard<'_, ValkeyServer> {
        match self {
            Backend::Valkey(s) => s.lock().unwrap(),
            Backend::Memory => panic!("not a Valkey backend"),
        }
    }
}

/// Runs a test body once on the embedded bus and once on Valkey, so both
/// keep the same semantics.
#[macro_export]
macro_rules! on_both_buses {
    ($(async fn $name:ident($backend:ident: Backend) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                async fn body($backend: Backend) $body
                #[tokio::test]
                async fn memory() {
                    body(Backend::Memory).await
                }
                #[tokio::test]
                async fn valkey() {
                    body(Backend::valkey()).await
                }
            }
        )*
    };
}

pub struct Bridge {
    pub running: Option<Running>,
    pub http: String,
    pub grpc: String,
}

impl Bridge {
    /// Starts a bridge with `serve` flags on top of loopback port-0
    /// listeners and the test secret.
    pub async fn start(extra: &[&str]) -> Bridge {
        Bridge::on(&Backend::Memory, extra).await
    }

    /// Starts a bridge on `backend`.
    pub async fn on(backend: &Backend, extra: &[&str]) -> Bridge {
        let url = match backend {
            Backend::Memory => None,
            Backend::Valkey(_) => Some(backend.server().url()),
        };
        Bridge::with_valkey_url(url.as_deref(), extra).await
    }

    /// Starts a bridge on the Valkey at `url`, or the embedded bus.
    pub async fn with_valkey_url(url: Option<&str>, extra: &[&str]) -> Bridge {
        // Logs for debugging a failure: RUST_LOG=sse_bridge=debug.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
        let mut args = vec![
            "sse-bridge",
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ];
        if !extra
            .iter()
            .any(|a| a.starts_with("--jwt-public-key") || a.starts_with("--jwt-jwks"))
        {
            args.extend(["--jwt-secret", SECRET]);
        }
        if let Some(url) = url {
            args.extend(["--valkey-url", url]);
        }
        args.extend(extra);
        let cli = <Cli as clap::Parser>::try_parse_from(args).expect("serve flags parse");
        let Command::Serve(serve) = cli.command else {
            unreachable!()
        };
        let running = server::start(serve.settings().await.expect("settings"))
            .await
            .expect("bridge starts");
        Bridge {
            http: format!("http://{}", running.http_addr),
            grpc: format!("http://{}", running.grpc_addr),
            running: Some(running),
        }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    pub async fn publisher(&self) -> Client {
        self.publisher_with(&publisher_token(&["*"])).await
    }

    pub async fn publisher_with(&self, token: &str) -> Client {
        client::connect(&self.grpc, token).await.expect("connect")
    }

    pub fn events_url(&self, channels: &[&str]) -> String {
        let mut url = format!("{}/v1/events?", self.http);
        for c in channels {
            url.push_str("channel=");
            url.push_str(c);
            url.push('&');
        }
        url
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = http_client().get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("HTTP request")
    }

    /// Opens a stream with a bearer token and expects 200.
    pub async fn subscribe(
        &self,
        channels: &[&str],
        token: &str,
        last_event_id: Option<&str>,
    ) -> Sse {
        let mut headers = vec![("authorization", format!("Bearer {token}"))];
        if let Some(id) = last_event_id {
            headers.push(("last-event-id", id.to_owned()));
        }
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = self.get(&self.events_url(channels), &h).await;
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        Sse::new(response)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            // Best effort when a test panicked before `stop`.
            tokio::spawn(r.shutdown());
        }
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client")
}

pub fn channel(resource: &str) -> String {
    format!("scans:{TENANT}:{resource}")
}

pub fn pb_channel(tenant: &str, resource: &str) -> pb::Channel {
    client::channel("scans", tenant, resource)
}

/// A channel of the `conversations` prefix, where `message.*` and
/// `tool_call.*` events go.
pub fn conversation(resource: &str) -> String {
    format!("conversations:{TENANT}:{resource}")
}

pub fn pb_conversation(tenant: &str, resource: &str) -> pb::Channel {
    client::channel("conversations", tenant, resource)
}

pub fn subscriber_token(tenant: &str) -> String {
    token::mint(
        SECRET,
        token::subscriber_claims("tenant_id", tenant, "user-1"),
        600,
    )
    .expect("mint")
}

pub fn publisher_token(tenants: &[&str]) -> String {
    let tenants: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
    token::mint(
        SECRET,
        token::publisher_claims("svc", "events:publish", &tenants),
        600,
    )
    .expect("mint")
}

pub fn hs256(claims: Value) -> String {
    let Value::Object(map) = claims else {
        panic!("claims object")
    };
    token::mint(SECRET, map, 600).expect("mint")
}

pub fn claims(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("object"),
    }
}

pub fn event(name: &str, json: Value) -> Event {
    Schema::embedded()
        .event_from_json(name, &json.to_string())
        .expect("event")
}

pub fn progress(checked: u32, total: u32) -> Event {
    event(
        "scan.progress",
        json!({"scan_id": TENANT, "checked": checked, "total": total}),
    )
}

pub async fn publish(client: &mut Client, resource: &str, ev: Event) -> String {
    publish_to(client, pb_channel(TENANT, resource), ev).await
}

pub async fn publish_to(client: &mut Client, channel: pb::Channel, ev: Event) -> String {
    client
        .publish(client::request(channel, ev, ""))
        .await
        .expect("publish")
        .into_inner()
        .id
}

/// Sends `requests` over one `PublishStream` and collects every response.
pub async fn publish_all(
    client: &mut Client,
    requests: Vec<sse_bridge::proto::ssebridge::v1::PublishRequest>,
) -> Vec<sse_bridge::proto::ssebridge::v1::PublishResponse> {
    let mut responses = client
        .publish_stream(futures::stream::iter(requests))
        .await
        .expect("stream opens")
        .into_inner();
    let mut got = Vec::new();
    while let Some(r) = responses.message().await.expect("response") {
        got.push(r);
    }
    got
}

/// One SSE frame: its fields, and comments separately.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
    pub retry: Option<String>,
    pub comment: bool,
}

impl Frame {
    pub fn data_json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("data")).expect("JSON data")
    }
}

/// A raw `text/event-stream` reader: exact frames, no reconnect.
pub struct Sse {
    pub headers: reqwest::header::HeaderMap,
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: BytesMut,
}

impl Sse {
    pub fn new(response: reqwest::Response) -> Sse {
        Sse {
            headers: response.headers().clone(),
            body: response.bytes_stream().boxed(),
            buf: BytesMut::new(),
        }
    }

    /// The next frame, or `None` when the server closed the stream.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let raw = self.buf.split_to(pos + 2);
                let text = std::str::from_utf8(&raw[..pos]).expect("UTF-8 frame");
                let mut frame = Frame::default();
                let mut fields: HashMap<&str, String> = HashMap::new();
                for line in text.split('\n') {
                    if line.starts_with(':') {
                        frame.comment = true;
                        continue;
                    }
                    let (k, v) = line.split_once(": ").unwrap_or((line, ""));
                    fields.insert(k, v.to_owned());
                }
                frame.id = fields.remove("id");
                frame.event = fields.remove("event");
                frame.data = fields.remove("data");
                frame.retry = fields.remove("retry");
                assert!(fields.is_empty(), "unexpected fields {fields:?}");
                return Some(frame);
            }
            match tokio::time::timeout(PATIENCE, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(Some(Err(_))) | Ok(None) => return None,
                Err(_) => panic!("no SSE data within {PATIENCE:?}"),
            }
        }
    }

    /// The next frame that is an event (skips `retry:` and comments).
    pub async fn next_event(&mut self) -> Frame {
        let wait = async {
            loop {
                let f = self.next_frame().await.expect("stream open");
                if f.event.is_some() {
                    return f;
                }
            }
        };
        // Keep-alive comments must not stretch the wait forever.
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("no SSE event within {PATIENCE:?}"))
    }
}

/// Whole seconds since 1970, the clock tokens' `exp` and `iat` are on.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
