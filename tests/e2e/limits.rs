//! Limits of a public endpoint: streams per tenant and subject, publish
//! rate, request size, idle and stalled connections.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use sse_bridge::client;
use sse_bridge::token;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::harness::*;

fn token_for(subject: &str) -> String {
    token::mint(
        SECRET,
        token::subscriber_claims("tenant_id", TENANT, subject),
        600,
    )
    .unwrap()
}

async fn open(bridge: &Bridge, subject: &str) -> reqwest::Response {
    let auth = format!("Bearer {}", token_for(subject));
    bridge
        .get(
            &bridge.events_url(&[&channel("limits")]),
            &[("authorization", &auth)],
        )
        .await
}

async fn json_error(response: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(response.status(), status);
    let body: Value =
        serde_json::from_str(&response.text().await.unwrap()).expect("JSON error body");
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn streams_over_the_subject_or_tenant_limit_are_429() {
    let bridge = Bridge::start(&[
        "--max-streams-per-subject",
        "2",
        "--max-streams-per-tenant",
        "3",
    ])
    .await;
    let a1 = open(&bridge, "alice").await;
    assert_eq!(a1.status(), 200);
    let a2 = open(&bridge, "alice").await;
    assert_eq!(a2.status(), 200);
    let refused = open(&bridge, "alice").await;
    assert_eq!(refused.headers()["retry-after"], "30");
    let message = json_error(refused, 429, "too_many_streams").await;
    assert!(
        message.contains("user (token `sub`) has 2 open streams"),
        "{message}"
    );

    let b1 = open(&bridge, "bob").await;
    assert_eq!(b1.status(), 200, "another subject has its own count");
    let message = json_error(open(&bridge, "carol").await, 429, "too_many_streams").await;
    assert!(message.contains("tenant has 3 open streams"), "{message}");

    // Closing a stream frees its place.
    drop(a1);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let again = open(&bridge, "alice").await;
        if again.status() == 200 {
            break;
        }
        assert_eq!(again.status(), 429);
        assert!(tokio::time::Instant::now() < deadline, "place never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((a2, b1));
    bridge.stop().await;
}

fn publisher_named(subject: &str) -> String {
    token::mint(
        SECRET,
        token::publisher_claims(subject, "events:publish", &["*".to_owned()]),
        600,
    )
    .unwrap()
}

#[tokio::test]
async fn publishing_over_the_rate_is_resource_exhausted_per_publisher() {
    let bridge = Bridge::start(&["--publish-rate", "1", "--publish-burst", "3"]).await;
    let mut fast = bridge.publisher_with(&publisher_named("fast")).await;
    let mut outcomes = Vec::new();
    for n in 0..10 {
        outcomes.push(
            fast.publish(client::request(
                pb_channel(TENANT, "rate"),
                progress(n, 10),
                "",
            ))
            .await,
        );
    }
    // The burst is accepted; at one event a second, ten in a row cannot be.
    for ok in &outcomes[..3] {
        assert!(ok.is_ok(), "{ok:?}");
    }
    let refused = outcomes
        .iter()
        .find_map(|o| o.as_ref().err())
        .expect("some publish over the rate is refused");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused
            .message()
            .contains("publish rate limit reached (1 events/s"),
        "{}",
        refused.message()
    );
    use tonic_types::StatusExt;
    let retry = refused.get_details_retry_info().expect("RetryInfo detail");
    assert!(retry.retry_delay.is_some());

    // Another publisher has its own budget.
    let mut other = bridge.publisher_with(&publisher_named("other")).await;
    publish(&mut other, "rate", progress(1, 2)).await;

    // In a stream, an item over the rate gets its own error and the stream
    // goes on.
    let items: Vec<_> = (0..10)
        .map(|n| client::request(pb_channel(TENANT, "rate"), progress(n, 10), ""))
        .collect();
    let mut responses = other
        .publish_stream(futures::stream::iter(items))
        .await
        .unwrap()
        .into_inner();
    let mut errors = 0;
    let mut count = 0;
    while let Some(r) = responses.next().await {
        let r = r.expect("stream stays up");
        count += 1;
        if let Some(e) = r.error {
            assert_eq!(e.code, Code::ResourceExhausted as i32);
            errors += 1;
        }
    }
    assert_eq!(count, 10);
    assert!(errors > 0);
    bridge.stop().await;
}

#[tokio::test]
async fn oversized_urls_and_headers_are_refused_with_json() {
    let bridge = Bridge::start(&["--max-url-bytes", "2048", "--max-header-bytes", "4096"]).await;
    let long = format!(
        "{}&pad={}",
        bridge.events_url(&[&channel("a")]),
        "x".repeat(3000)
    );
    let message = json_error(bridge.get(&long, &[]).await, 414, "url_too_long").await;
    assert!(message.contains("at most 2048"), "{message}");

    let padding = "y".repeat(5000);
    let response = bridge
        .get(
            &bridge.events_url(&[&channel("a")]),
            &[("x-padding", &padding)],
        )
        .await;
    let message = json_error(response, 431, "headers_too_large").await;
    assert!(message.contains("at most 4096"), "{message}");

    // Far beyond the bounds, hyper refuses before buffering it all.
    let huge = "z".repeat(200_000);
    match http_client()
        .get(bridge.events_url(&[&channel("a")]))
        .header("x-padding", huge)
        .send()
        .await
    {
        Ok(r) => assert_eq!(r.status(), 431),
        Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
    }
    // The node still serves.
    assert_eq!(
        bridge
            .get(&format!("{}/healthz", bridge.http), &[])
            .await
            .status(),
        200
    );
    bridge.stop().await;
}

#[tokio::test]
async fn a_connection_that_never_sends_its_request_is_closed() {
    let bridge = Bridge::start(&["--idle-timeout-secs", "1"]).await;
    let addr = bridge.http.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    socket
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // The server hangs up: EOF (possibly after a 408), never a wait
    // bounded only by the test's patience.
    let read = tokio::time::timeout(PATIENCE, socket.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the half-sent request was never closed");
    bridge.stop().await;
}

/// A raw HTTP/1.1 SSE client with a tiny receive buffer, so that when it
/// stops reading the server's writes block quickly.
struct RawStream {
    socket: tokio::net::TcpStream,
}

impl RawStream {
    async fn open(addr: &str, path: &str, token: &str) -> RawStream {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.set_nonblocking(true).unwrap();
        let std_socket: std::net::TcpStream = socket.into();
        let socket = tokio::net::TcpSocket::from_std_stream(std_socket);
        let mut socket = socket.connect(addr.parse().unwrap()).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        RawStream { socket }
    }

    /// Everything until the server closes the connection.
    async fn read_to_close(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, self.socket.read_to_end(&mut all))
            .await
            .expect("server closes the stalled connection");
        all
    }
}

/// Decodes a chunked HTTP/1.1 response into its SSE frames (partial ones
/// at a cut are dropped).
fn frames_of(raw: &[u8]) -> Vec<Frame> {
    let text = String::from_utf8_lossy(raw);
    let (head, mut rest) = text.split_once("\r\n\r\n").expect("response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let mut frame = Frame::default();
            for line in f.lines() {
                match line.split_once(": ") {
                    Some(("id", v)) => frame.id = Some(v.to_owned()),
                    Some(("event", v)) => frame.event = Some(v.to_owned()),
                    Some(("data", v)) => frame.data = Some(v.to_owned()),
                    _ => frame.comment = true,
                }
            }
            frame
        })
        .collect()
}

async fn metric(bridge: &Bridge, name: &str) -> f64 {
    let text = bridge
        .get(&format!("{}/metrics", bridge.http), &[])
        .await
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_while_10k_events_flow_is_cut_and_others_get_all() {
    const EVENTS: u32 = 10_000;
    let bridge = Bridge::start(&["--idle-timeout-secs", "2", "--history-len", "20000"]).await;
    let addr = bridge.http.trim_start_matches("http://").to_owned();
    let ch = conversation("flood");
    let path = format!("/v1/events?channel={ch}");
    let token = subscriber_token(TENANT);
    let mut stalled = RawStream::open(&addr, &path, &token).await;
    let mut reader = bridge.subscribe(&[&ch], &token, None).await;
    let stalled_before = metric(&bridge, "sse_bridge_stalled_connections_closed_total").await;

    // ~4 KB events: 40 MB in all, far beyond what socket buffers hold.
    let pad = "p".repeat(4000);
    let mut publisher = bridge.publisher().await;
    let items: Vec<_> = (0..EVENTS)
        .map(|n| {
            let ev = event("message.delta", json!({"content": format!("{n:08}{pad}")}));
            client::request(pb_conversation(TENANT, "flood"), ev, "")
        })
        .collect();
    let read_all = tokio::spawn(async move {
        let mut ids = Vec::new();
        while ids.len() < EVENTS as usize {
            let f = reader.next_event().await;
            assert_eq!(f.event.as_deref(), Some("message.delta"), "{f:?}");
            let seq: u32 = f.data_json()["content"].as_str().unwrap()[..8]
                .parse()
                .unwrap();
            assert_eq!(seq as usize, ids.len(), "a reading client misses nothing");
            ids.push(f.id.unwrap());
        }
        ids
    });
    let mut responses = publisher
        .publish_stream(futures::stream::iter(items))
        .await
        .unwrap()
        .into_inner();
    let mut published = Vec::new();
    while let Some(r) = responses.next().await {
        let r = r.unwrap();
        assert!(r.error.is_none(), "{:?}", r.error);
        published.push(r.id);
    }
    let ids = read_all.await.unwrap();
    assert_eq!(
        ids, published,
        "the reading client got every event in order"
    );

    // The stalled client was cut at the idle timeout, not kept forever.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while metric(&bridge, "sse_bridge_stalled_connections_closed_total").await <= stalled_before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled stream never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What it did get is a gap-free prefix; it resumes from its last id and
    // is caught up or told bridge.reset, never silently skipped.
    let raw = stalled.read_to_close().await;
    let frames = frames_of(&raw);
    let got: Vec<String> = frames.iter().filter_map(|f| f.id.clone()).collect();
    // When the kernel aborted the socket (RST), it may have got nothing.
    let Some(last) = got.last() else {
        return bridge.stop().await;
    };
    assert_eq!(
        got[..],
        published[..got.len()],
        "no event skipped before the cut"
    );
    let mut resumed = bridge.subscribe(&[&ch], &token, Some(last)).await;
    let first = resumed.next_event().await;
    let next = published.iter().position(|id| id == last).unwrap() + 1;
    match first.event.as_deref() {
        Some("message.delta") => assert_eq!(first.id.as_ref(), Some(&published[next])),
        Some("bridge.reset") => {}
        other => panic!("unexpected {other:?}"),
    }
    bridge.stop().await;
}

/// A stream request whose head is larger than the first read's buffer
/// (1 KiB) and arrives in pieces is read whole and served.
#[tokio::test]
async fn a_large_head_sent_in_pieces_opens_its_stream() {
    let bridge = Bridge::start(&[]).await;
    let addr = bridge.http.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "GET /v1/events?channel={} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nX-Padding: {}\r\n\r\n",
        channel("large-head"),
        subscriber_token(TENANT),
        "p".repeat(3000),
    );
    for piece in head.as_bytes().chunks(700) {
        socket.write_all(piece).await.unwrap();
        socket.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut publisher = bridge.publisher().await;
    // Published once the stream is surely open: its answer has come.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("retry:") {
        let n = tokio::time::timeout(PATIENCE, socket.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let id = publish(&mut publisher, "large-head", progress(1, 1)).await;
    while !String::from_utf8_lossy(&got).contains(&format!("id: {id}")) {
        let n = tokio::time::timeout(PATIENCE, socket.read(&mut buf))
            .await
            .expect("the event")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    bridge.stop().await;
}
