//! Connections that ask for nothing are closed, on both listeners and in
//! every protocol; a connection with a request open is never idle; and each
//! listener refuses connections past its cap.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

use crate::harness::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// An HTTP/2 client that opens no stream and answers every PING, as a
/// well-behaved but idle peer would: returns once the server closes the
/// connection.
async fn idle_h2_peer(addr: &str) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    // Preface and an empty SETTINGS frame.
    tcp.write_all(PREFACE).await.expect("preface");
    tcp.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .expect("settings");
    let mut pings = 0;
    let closed = async {
        loop {
            let mut head = [0u8; 9];
            if tcp.read_exact(&mut head).await.is_err() {
                return pings;
            }
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0u8; len];
            if tcp.read_exact(&mut payload).await.is_err() {
                return pings;
            }
            let (kind, flags) = (head[3], head[4]);
            if kind == 4 && flags & 1 == 0 {
                // SETTINGS: acknowledge.
                let _ = tcp.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).await;
            }
            if kind == 6 && flags & 1 == 0 {
                pings += 1;
                let mut ack = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                ack.extend_from_slice(&payload);
                let _ = tcp.write_all(&ack).await;
            }
        }
    };
    tokio::time::timeout(PATIENCE, closed)
        .await
        .expect("the server closed the idle connection");
}

/// Waits until the server closes a connection that sent `request`.
async fn closed_after(addr: &str, request: &[u8]) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request).await.expect("write");
    let drained = async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    };
    tokio::time::timeout(PATIENCE, drained)
        .await
        .expect("the server closed the connection");
}

#[tokio::test]
async fn idle_connections_are_closed_on_both_listeners() {
    let bridge = Bridge::start(&["--idle-timeout-secs", "1", "--keepalive-secs", "1"]).await;
    let http = addr_of(&bridge.http);
    let grpc = addr_of(&bridge.grpc);
    // h2c on the HTTP port and HTTP/2 on the gRPC port, answering PINGs.
    idle_h2_peer(&http).await;
    idle_h2_peer(&grpc).await;
    // Only the preface on the gRPC port, and nothing at all on either.
    closed_after(&grpc, PREFACE).await;
    closed_after(&grpc, b"").await;
    closed_after(&http, b"").await;
    // An HTTP/1 keep-alive connection after its answer.
    closed_after(&http, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    bridge.stop().await;
}

#[tokio::test]
async fn a_connection_with_a_request_open_is_not_idle() {
    let bridge = Bridge::start(&["--idle-timeout-secs", "1"]).await;
    // An SSE stream over h2c: quiet for longer than the idle timeout (no
    // keep-alive comment comes within 15 s), then an event still arrives.
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let token = subscriber_token(TENANT);
    let response = h2
        .get(bridge.events_url(&[&channel("busy")]))
        .bearer_auth(&token)
        .send()
        .await
        .expect("stream");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let mut sse = Sse::new(response);
    // A PublishStream open for as long.
    let mut publisher = bridge.publisher().await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut answers = publisher
        .publish_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    tx.send(sse_bridge::client::request(
        pb_channel(TENANT, "busy"),
        progress(1, 2),
        "",
    ))
    .await
    .expect("send");
    let id = answers
        .message()
        .await
        .expect("answer")
        .expect("one answer")
        .id;
    assert_eq!(sse.next_event().await.id.as_deref(), Some(id.as_str()));
    bridge.stop().await;
}

/// Opens an SSE stream that stays open.
async fn open_stream(bridge: &Bridge) -> Sse {
    bridge
        .subscribe(&[&channel("cap")], &subscriber_token(TENANT), None)
        .await
}

#[tokio::test]
async fn each_listener_refuses_connections_past_its_cap() {
    let bridge =
        Bridge::start(&["--max-http-connections", "2", "--max-grpc-connections", "1"]).await;
    let first = open_stream(&bridge).await;
    let second = open_stream(&bridge).await;
    // The third connection is closed at once, before any answer.
    closed_after(
        &addr_of(&bridge.http),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    drop(first);
    // A place frees up when a connection closes.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let metrics = loop {
        if let Ok(r) = http_client()
            .get(format!("{}/metrics", bridge.http))
            .send()
            .await
        {
            break r.text().await.expect("metrics");
        }
        assert!(tokio::time::Instant::now() < deadline, "no place freed up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        metrics.contains("sse_bridge_connections_refused_total{listener=\"http\"}"),
        "{metrics}"
    );
    drop(second);

    // gRPC: one connection publishes; a second one is refused.
    let mut publisher = bridge.publisher().await;
    publish(&mut publisher, "cap", progress(1, 2)).await;
    let refused = match sse_bridge::client::connect(&bridge.grpc, &publisher_token(&["*"])).await {
        Err(_) => true,
        Ok(mut other) => other
            .publish(sse_bridge::client::request(
                pb_channel(TENANT, "cap"),
                progress(1, 2),
                "",
            ))
            .await
            // The server closed the connection: tonic says Cancelled or
            // Unavailable, depending on when it noticed.
            .is_err_and(|s| matches!(s.code(), Code::Cancelled | Code::Unavailable)),
    };
    assert!(refused, "a second gRPC connection is refused");
    // The first one still works.
    publish(&mut publisher, "cap", progress(2, 2)).await;
    bridge.stop().await;
}

/// Stream opens past the number answered at once (256 on plain HTTP/1.1)
/// wait their turn: each one that arrives together with hundreds of others,
/// each needing a subscribe on Valkey, still opens and receives its events.
#[tokio::test]
async fn stream_opens_past_those_answered_at_once_wait_and_then_deliver() {
    const STREAMS: usize = 300;
    let backend = Backend::valkey();
    let bridge = Bridge::on(&backend, &["--max-streams-per-subject", "0"]).await;
    let token = subscriber_token(TENANT);
    let resources: Vec<String> = (0..STREAMS).map(|i| format!("burst-{i}")).collect();
    let opens = resources.iter().map(|r| {
        let (bridge, token) = (&bridge, &token);
        async move { bridge.subscribe(&[&channel(r)], token, None).await }
    });
    let mut streams = futures::future::join_all(opens).await;
    let mut publisher = bridge.publisher().await;
    for (i, r) in resources.iter().enumerate() {
        publish(&mut publisher, r, progress(i as u32, STREAMS as u32)).await;
    }
    for (i, sse) in streams.iter_mut().enumerate() {
        let frame = sse.next_event().await;
        assert_eq!(frame.data_json()["checked"], i, "stream {i}");
    }
    bridge.stop().await;
}
