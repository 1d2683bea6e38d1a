//! Node memory stays bounded whatever clients and producers do: resuming
//! streams that never read cost one catch-up page each, and one tenant's
//! producer cannot grow the embedded bus's history past its bound.
//!
//! Each test runs the bridge as its own process and reads its `VmRSS` from
//! `/proc`, with generous margins; nothing here is timed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use sse_bridge::client;

use crate::harness::*;

const BIN: &str = env!("CARGO_BIN_EXE_sse-bridge");

/// A bridge in a process of its own, killed when dropped.
pub struct Spawned {
    child: tokio::process::Child,
    pub http: SocketAddr,
    pub grpc: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Spawned {
    pub async fn start(backend: &Backend, extra: &[&str]) -> Spawned {
        let (http, grpc) = (free_port(), free_port());
        let http = SocketAddr::from(([127, 0, 0, 1], http));
        let mut args = vec![
            "serve".to_owned(),
            "--http-addr".to_owned(),
            http.to_string(),
            "--grpc-addr".to_owned(),
            format!("127.0.0.1:{grpc}"),
            "--jwt-secret".to_owned(),
            SECRET.to_owned(),
        ];
        if let Backend::Valkey(_) = backend {
            args.extend(["--valkey-url".to_owned(), backend.server().url()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = tokio::process::Command::new(BIN)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("BRIDGE_LOGS").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the bridge");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while http_client()
            .get(format!("http://{http}/readyz"))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "bridge did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Spawned {
            child,
            http,
            grpc: format!("http://127.0.0.1:{grpc}"),
        }
    }

    /// Resident memory of the bridge process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// The largest RSS seen over a couple of seconds: the bridge's work for
    /// the clients has settled by then, whatever the machine's speed.
    pub async fn peak_rss_kib(&self) -> u64 {
        let mut peak = 0;
        for _ in 0..30 {
            peak = peak.max(self.rss_kib());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    }

    /// One metric's value from `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = http_client()
            .get(format!("http://{}/metrics", self.http))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
    }
}

/// A 16 KB `message.delta`.
fn big_event(n: usize) -> sse_bridge::proto::events::v1::Event {
    let content: String = std::iter::repeat_n(char::from(b'a' + (n % 26) as u8), 16_000).collect();
    event("message.delta", json!({ "content": content }))
}

/// Opens a stream on a socket with a 4 KiB receive buffer that is then
/// never read: the server can write only a few KiB before it blocks.
fn stalled_stream(http: SocketAddr, channel: &str, token: &str, last_event_id: &str) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&http.into()).expect("connect");
    let mut tcp: TcpStream = socket.into();
    write!(
        tcp,
        "GET /v1/events?channel={channel} HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer {token}\r\nLast-Event-ID: {last_event_id}\r\n\r\n"
    )
    .expect("request");
    // Read the status line only, then never again.
    let mut head = [0u8; 12];
    tcp.set_read_timeout(Some(PATIENCE)).expect("timeout");
    tcp.read_exact(&mut head).expect("status line");
    assert_eq!(&head, b"HTTP/1.1 200", "stream opened");
    tcp
}

crate::on_both_buses! {
    async fn resuming_streams_that_never_read_cost_one_page_each(backend: Backend) {
        let bridge = Spawned::start(&backend, &["--history-len", "2000"]).await;
        let mut publisher = client::connect(&bridge.grpc, &publisher_token(&["*"]))
            .await
            .expect("connect");
        // 1,000 events of 16 KB: 16 MB of history on one channel.
        let ch = conversation("replay");
        let requests: Vec<_> = (0..1000)
            .map(|n| client::request(pb_conversation(TENANT, "replay"), big_event(n), ""))
            .collect();
        for chunk in requests.chunks(100) {
            let answers = publish_all(&mut publisher, chunk.to_vec()).await;
            assert!(answers.iter().all(|a| !a.id.is_empty()), "published");
        }
        let before = bridge.peak_rss_kib().await;
        let token = subscriber_token(TENANT);
        let streams: Vec<TcpStream> = (0..20)
            .map(|_| stalled_stream(bridge.http, &ch, &token, "0-0"))
            .collect();
        let during = bridge.peak_rss_kib().await;
        eprintln!("RSS before {before} KiB, with 20 stalled resumes {during} KiB");
        // Before paging each such stream held the whole history, encoded
        // for it alone: about 13 MB each, 260 MB for these 20.
        assert!(
            during < before + 64 * 1024,
            "20 stalled resumes grew the bridge from {before} KiB to {during} KiB"
        );
        drop(streams);
        // A stream that reads gets the whole history, in order, a page at
        // a time.
        let sse_url = format!("http://{}/v1/events?channel={ch}", bridge.http);
        let response = http_client()
            .get(&sse_url)
            .bearer_auth(&token)
            .header("last-event-id", "0-0")
            .send()
            .await
            .expect("stream");
        let mut sse = Sse::new(response);
        let mut last = String::new();
        for n in 0..1000 {
            let frame = sse.next_event().await;
            let id = frame.id.clone().expect("id");
            assert!(last.is_empty() || id_after(&id, &last), "{id} after {last}");
            let content = frame.data_json()["content"].as_str().expect("content").to_owned();
            assert_eq!(content.chars().next(), Some(char::from(b'a' + (n % 26) as u8)), "event {n}");
            last = id;
        }
        let after = bridge.peak_rss_kib().await;
        assert!(
            after < before + 64 * 1024,
            "memory came back after the streams closed: {before} KiB before, {after} KiB after"
        );
    }
}

fn id_after(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> (u64, u64) {
        let (ms, seq) = s.split_once('-').expect("stream id");
        (ms.parse().expect("ms"), seq.parse().expect("seq"))
    };
    parse(a) > parse(b)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_tenants_producer_cannot_grow_the_embedded_history_past_its_bound() {
    let bridge = Spawned::start(&Backend::Memory, &["--max-history-bytes", "8000000"]).await;
    let token = subscriber_token(TENANT);
    // A stream that watches the first channel; it will resume later.
    let mut publisher = client::connect(&bridge.grpc, &publisher_token(&[TENANT]))
        .await
        .expect("connect");
    // Two events on the first channel: a client has seen the first.
    let first = (0..2)
        .map(|n| client::request(pb_conversation(TENANT, "flood-0"), big_event(n), ""))
        .collect();
    let seen = publish_all(&mut publisher, first).await[0].id.clone();
    let before = bridge.peak_rss_kib().await;
    // 4,000 channels × 16 KB: 64 MB offered, 8 MB kept.
    for batch in 0..40 {
        let requests: Vec<_> = (0..100)
            .map(|i| {
                let n = batch * 100 + i + 1;
                client::request(
                    pb_conversation(TENANT, &format!("flood-{n}")),
                    big_event(n),
                    "",
                )
            })
            .collect();
        let answers = publish_all(&mut publisher, requests).await;
        assert!(answers.iter().all(|a| !a.id.is_empty()), "published");
    }
    let history = bridge.metric("sse_bridge_history_bytes").await;
    assert!(history <= 8_000_000.0, "history holds {history} bytes");
    assert!(
        bridge.metric("sse_bridge_history_evicted_total").await > 0.0,
        "the oldest events went"
    );
    let after = bridge.peak_rss_kib().await;
    eprintln!("RSS before the flood {before} KiB, after {after} KiB");
    // Unbounded, this held 64 MB more.
    assert!(
        after < before + 50 * 1024,
        "the flood grew the bridge from {before} KiB to {after} KiB"
    );
    // The oldest events, on the first channel, were dropped: a client that
    // resumes from before one of them is told, never silently skips.
    let resumed = http_client()
        .get(format!(
            "http://{}/v1/events?channel={}",
            bridge.http,
            conversation("flood-0")
        ))
        .bearer_auth(&token)
        .header("last-event-id", seen.as_str())
        .send()
        .await
        .expect("stream");
    assert_eq!(resumed.status(), 200);
    let mut sse = Sse::new(resumed);
    let reset = sse.next_event().await;
    assert_eq!(reset.event.as_deref(), Some("bridge.reset"), "{reset:?}");
    assert_eq!(
        reset.data_json()["channels"],
        json!([conversation("flood-0")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_recent_frame_cache_keeps_to_its_node_wide_budget() {
    let bridge = Spawned::start(&Backend::Memory, &["--recent-cache-bytes", "300000"]).await;
    let token = subscriber_token(TENANT);
    // 40 watched channels, each sent 16 KB events: 40 × 5 × 16 KB = 3.2 MB
    // offered to a 300 KB cache.
    let mut streams = Vec::new();
    for i in 0..40 {
        let response = http_client()
            .get(format!(
                "http://{}/v1/events?channel={}",
                bridge.http,
                conversation(&format!("cache-{i}"))
            ))
            .bearer_auth(&token)
            .send()
            .await
            .expect("stream");
        assert_eq!(response.status(), 200);
        streams.push(Sse::new(response));
    }
    let mut publisher = client::connect(&bridge.grpc, &publisher_token(&["*"]))
        .await
        .expect("connect");
    let mut ids = Vec::new();
    for round in 0..5 {
        let requests: Vec<_> = (0..40)
            .map(|i| {
                client::request(
                    pb_conversation(TENANT, &format!("cache-{i}")),
                    big_event(round),
                    "",
                )
            })
            .collect();
        ids.push(publish_all(&mut publisher, requests).await);
    }
    // Every stream still gets every event: eviction only moves catch-up to
    // history.
    for (i, sse) in streams.iter_mut().enumerate() {
        for round in &ids {
            assert_eq!(
                sse.next_event().await.id.as_deref(),
                Some(round[i].id.as_str())
            );
        }
    }
    let cached = bridge.metric("sse_bridge_recent_cache_bytes").await;
    assert!(cached <= 300_000.0, "the cache holds {cached} bytes");
    assert!(bridge.metric("sse_bridge_recent_cache_evicted_total").await > 0.0);
    // A resume from the first round finds the cache evicted and reads
    // history: nothing is lost.
    let resumed = http_client()
        .get(format!(
            "http://{}/v1/events?channel={}",
            bridge.http,
            conversation("cache-0")
        ))
        .bearer_auth(&token)
        .header("last-event-id", ids[0][0].id.as_str())
        .send()
        .await
        .expect("stream");
    let mut sse = Sse::new(resumed);
    for round in &ids[1..] {
        assert_eq!(
            sse.next_event().await.id.as_deref(),
            Some(round[0].id.as_str())
        );
    }
}
