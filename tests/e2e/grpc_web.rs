//! gRPC-Web on the gRPC port: a browser-style call (HTTP/1.1, the message
//! and the trailers framed in the body) publishes like a gRPC one, errors
//! come back as gRPC statuses, and CORS answers the configured origins only.

use prost::Message;
use sse_bridge::client;
use sse_bridge::proto::ssebridge::v1 as pb;

use crate::harness::*;

const ORIGIN: &str = "https://app.example";

/// One gRPC-Web frame: flag, big-endian length, bytes.
fn frame(flag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

/// The response's message (if any) and its status and message, from the
/// trailers frame or, for a trailers-only answer, the headers.
struct Answer {
    message: Option<Vec<u8>>,
    status: String,
    grpc_message: String,
    allow_origin: Option<String>,
}

async fn call(bridge: &Bridge, request: pb::PublishRequest, origin: &str) -> Answer {
    let response = http_client()
        .post(format!("{}/ssebridge.v1.Publisher/Publish", bridge.grpc))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", origin)
        .bearer_auth(publisher_token(&["*"]))
        .body(frame(0, &request.encode_to_vec()))
        .send()
        .await
        .expect("a gRPC-Web answer");
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let allow_origin = header("access-control-allow-origin");
    let mut status = header("grpc-status");
    let mut grpc_message = header("grpc-message");
    let body = response.bytes().await.expect("a body");
    let mut message = None;
    let mut at = 0;
    while at + 5 <= body.len() {
        let len = u32::from_be_bytes(body[at + 1..at + 5].try_into().unwrap()) as usize;
        let bytes = &body[at + 5..at + 5 + len];
        if body[at] & 0x80 == 0 {
            message = Some(bytes.to_vec());
        } else {
            for line in String::from_utf8_lossy(bytes).split("\r\n") {
                if let Some((k, v)) = line.split_once(':') {
                    match k.trim() {
                        "grpc-status" => status = Some(v.trim().to_owned()),
                        "grpc-message" => grpc_message = Some(v.trim().to_owned()),
                        _ => {}
                    }
                }
            }
        }
        at += 5 + len;
    }
    Answer {
        message,
        status: status.expect("a grpc-status"),
        grpc_message: grpc_message.unwrap_or_default(),
        allow_origin,
    }
}

#[tokio::test]
async fn a_grpc_web_publish_reaches_the_stream_and_errors_are_statuses() {
    let bridge = Bridge::start(&["--cors-origin", ORIGIN]).await;
    let mut sse = bridge
        .subscribe(&[&channel("web")], &subscriber_token(TENANT), None)
        .await;
    let ok = call(
        &bridge,
        client::request(pb_channel(TENANT, "web"), progress(2, 4), ""),
        ORIGIN,
    )
    .await;
    assert_eq!(ok.status, "0", "{}", ok.grpc_message);
    assert_eq!(ok.allow_origin.as_deref(), Some(ORIGIN));
    let id = pb::PublishResponse::decode(ok.message.expect("a response").as_slice())
        .expect("a PublishResponse")
        .id;
    let f = sse.next_event().await;
    assert_eq!(f.id.as_deref(), Some(id.as_str()));
    assert_eq!(f.event.as_deref(), Some("scan.progress"));

    let delta = event("message.delta", serde_json::json!({"content": "x"}));
    let refused = call(
        &bridge,
        client::request(pb_channel(TENANT, "web"), delta, ""),
        ORIGIN,
    )
    .await;
    assert_eq!(refused.status, "3", "INVALID_ARGUMENT");
    assert!(
        percent_decoded(&refused.grpc_message).contains("channel.prefix"),
        "{}",
        refused.grpc_message
    );
    bridge.stop().await;
}

#[tokio::test]
async fn grpc_web_preflights_are_answered_for_configured_origins_only() {
    let bridge = Bridge::start(&["--cors-origin", ORIGIN]).await;
    let allowed = preflight(&bridge, ORIGIN).await;
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(ORIGIN)
    );
    let headers = allowed
        .headers()
        .get("access-control-allow-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("x-grpc-web"),
        "{headers}"
    );
    assert_eq!(
        allowed_origin(&bridge, "https://elsewhere.example").await,
        None
    );
    bridge.stop().await;

    // Without --cors-origin no origin is allowed.
    let closed = Bridge::start(&[]).await;
    assert_eq!(allowed_origin(&closed, ORIGIN).await, None);
    closed.stop().await;
}

/// A browser's preflight for a gRPC-Web call from `origin`.
async fn preflight(bridge: &Bridge, origin: &str) -> reqwest::Response {
    http_client()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/ssebridge.v1.Publisher/Publish", bridge.grpc),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-grpc-web",
        )
        .send()
        .await
        .expect("answered")
}

/// The origin a preflight from `origin` is allowed as, if any.
pub(crate) async fn allowed_origin(bridge: &Bridge, origin: &str) -> Option<String> {
    preflight(bridge, origin)
        .await
        .headers()
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn percent_decoded(s: &str) -> String {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
