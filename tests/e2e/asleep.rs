//! Streams asleep: a stream with nothing to write for a second sleeps in
//! its channel's slot with no task of its own. Everything a stream awake
//! does must still reach it: events (none lost, in order), keep-alives,
//! its token's expiry, the node's shutdown, and its client leaving.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

/// Longer than a stream takes to fall asleep (1 s quiet, then the next
/// look), so the step after it meets a sleeping stream.
const ASLEEP: Duration = Duration::from_millis(2_500);

/// Publishes `n` events to `resource` in one `PublishStream`: their ids.
async fn burst(p: &mut sse_bridge::client::Client, resource: &str, n: u32) -> Vec<String> {
    let requests = (0..n)
        .map(|i| sse_bridge::client::request(pb_channel(TENANT, resource), progress(i, n), ""))
        .collect();
    publish_all(p, requests)
        .await
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// Opens a stream on `resource` and reads its opening `retry:`.
async fn open(bridge: &Bridge, resource: &str, token: &str) -> Sse {
    let mut sse = bridge.subscribe(&[&channel(resource)], token, None).await;
    let opening = sse.next_frame().await.expect("the opening frame");
    assert!(opening.retry.is_some(), "{opening:?}");
    sse
}

async fn every_event_wakes_a_stream_asleep(backend: Backend) {
    let bridge = Bridge::on(&backend, &[]).await;
    let token = subscriber_token(TENANT);
    let mut sse = open(&bridge, "asleep-events", &token).await;
    let mut p = bridge.publisher().await;
    for round in 0..2u32 {
        tokio::time::sleep(ASLEEP).await;
        // A burst: the first event wakes the stream; the rest arrive while
        // it wakes and after. All of them, in order, once each.
        let ids = burst(&mut p, "asleep-events", 300).await;
        for (n, id) in ids.iter().enumerate() {
            let f = sse.next_event().await;
            assert_eq!(f.id.as_ref(), Some(id), "round {round}, event {n}");
        }
    }
    // A stream that slept resumes like any other from its last cursor.
    let last = publish(&mut p, "asleep-events", progress(7, 7)).await;
    assert_eq!(sse.next_event().await.id, Some(last.clone()));
    drop(sse);
    let next = publish(&mut p, "asleep-events", progress(8, 8)).await;
    let mut resumed = bridge
        .subscribe(&[&channel("asleep-events")], &token, Some(&last))
        .await;
    assert_eq!(resumed.next_event().await.id, Some(next));
    bridge.stop().await;
}

#[tokio::test]
async fn every_event_wakes_a_stream_asleep_on_the_embedded_bus() {
    every_event_wakes_a_stream_asleep(Backend::Memory).await;
}

#[tokio::test]
async fn every_event_wakes_a_stream_asleep_on_valkey() {
    every_event_wakes_a_stream_asleep(Backend::valkey()).await;
}

/// A channel's streams sleep together and all wake, few or many.
#[tokio::test]
async fn streams_on_one_channel_all_get_every_event() {
    let bridge = Bridge::start(&[]).await;
    let token = subscriber_token(TENANT);
    let mut few = Vec::new();
    for _ in 0..4 {
        few.push(open(&bridge, "asleep-few", &token).await);
    }
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(open(&bridge, "asleep-shared", &token).await);
    }
    tokio::time::sleep(ASLEEP).await;
    let mut p = bridge.publisher().await;
    for (resource, group) in [("asleep-few", &mut few), ("asleep-shared", &mut streams)] {
        let ids = burst(&mut p, resource, 50).await;
        for sse in group.iter_mut() {
            for id in &ids {
                assert_eq!(sse.next_event().await.id.as_ref(), Some(id));
            }
        }
    }
    bridge.stop().await;
}

#[tokio::test]
async fn a_stream_asleep_gets_keepalives() {
    let bridge = Bridge::start(&["--keepalive-secs", "1"]).await;
    let mut sse = open(&bridge, "asleep-keepalive", &subscriber_token(TENANT)).await;
    // Five keep-alives take four seconds and more: most are written while
    // the stream sleeps.
    for n in 0..5 {
        let f = sse.next_frame().await.expect("the stream stays open");
        assert!(f.comment, "keep-alive {n}: {f:?}");
    }
    bridge.stop().await;
}

#[tokio::test]
async fn a_stream_asleep_ends_at_its_tokens_exp() {
    let bridge = Bridge::start(&[]).await;
    let token = hs256(json!({"tenant_id": TENANT, "exp": now_secs() + 4}));
    let mut sse = open(&bridge, "asleep-exp", &token).await;
    let expired = sse.next_event().await;
    assert_eq!(expired.event.as_deref(), Some("bridge.expired"));
    assert!(sse.next_frame().await.is_none(), "the stream closes");
    bridge.stop().await;
}

/// A client that leaves while its stream sleeps gives back its place under
/// the limits: nothing waits for an event or a keep-alive to notice.
#[tokio::test]
async fn a_client_that_leaves_while_its_stream_sleeps_frees_its_place() {
    let bridge = Bridge::start(&["--max-streams-per-subject", "1"]).await;
    let token = subscriber_token(TENANT);
    let sse = open(&bridge, "asleep-leave", &token).await;
    let url = bridge.events_url(&[&channel("asleep-leave")]);
    let bearer = format!("Bearer {token}");
    let second = bridge.get(&url, &[("authorization", &bearer)]).await;
    assert_eq!(second.status(), 429, "one stream per subject");
    tokio::time::sleep(ASLEEP).await;
    drop(sse);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let again = bridge.get(&url, &[("authorization", &bearer)]).await;
        if again.status() == 200 {
            break;
        }
        assert_eq!(again.status(), 429);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place of a client that left is never freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bridge.stop().await;
}

/// A node shutting down tells its streams asleep to reconnect elsewhere,
/// each within the jitter window, as it does its streams awake.
#[tokio::test]
async fn a_node_shutting_down_tells_its_streams_asleep_to_reconnect() {
    let bridge = Bridge::start(&[]).await;
    let mut sse = open(&bridge, "asleep-drain", &subscriber_token(TENANT)).await;
    tokio::time::sleep(ASLEEP).await;
    let reader = tokio::spawn(async move {
        let mut frames = Vec::new();
        while let Some(f) = sse.next_frame().await {
            frames.push(f);
        }
        frames
    });
    bridge.stop().await;
    let frames = tokio::time::timeout(PATIENCE, reader)
        .await
        .expect("the stream closes")
        .unwrap();
    let retries: Vec<u64> = frames
        .iter()
        .filter_map(|f| f.retry.as_deref()?.parse().ok())
        .collect();
    assert_eq!(retries.len(), 1, "{frames:?}");
    assert!(retries[0] <= 1000, "{retries:?}");
}

/// The node's `sse_bridge_streams_asleep` gauge, read from `/metrics`.
async fn asleep_gauge(http: &str) -> f64 {
    let text = http_client()
        .get(format!("{http}/metrics"))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("a body");
    text.lines()
        .find_map(|l| l.strip_prefix("sse_bridge_streams_asleep "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until the gauge reads `want`, within [`PATIENCE`].
async fn until_asleep(http: &str, want: f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = asleep_gauge(http).await;
        if now == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sse_bridge_streams_asleep stayed {now}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A quiet stream really sleeps, and sleeps again after an event and after
/// its keep-alives: the tests above pass for a stream awake too, so this
/// one reads the node's gauge. The bridge runs as a process of its own:
/// the metrics recorder is process-wide, and the other tests' streams
/// would count in an in-process one.
#[tokio::test]
async fn a_quiet_stream_sleeps_and_sleeps_again() {
    let port = |_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
    };
    let (http, grpc) = (port(0), port(1));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-bridge"))
        .args(["serve", "--jwt-secret", SECRET, "--keepalive-secs", "1"])
        .args([
            "--http-addr",
            &http.to_string(),
            "--grpc-addr",
            &grpc.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the bridge starts");
    let bridge = Bridge {
        running: None,
        http: format!("http://{http}"),
        grpc: format!("http://{grpc}"),
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while http_client()
        .get(format!("{}/readyz", bridge.http))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(tokio::time::Instant::now() < deadline, "did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(asleep_gauge(&bridge.http).await, 0.0);
    let mut sse = open(&bridge, "asleep-gauge", &subscriber_token(TENANT)).await;
    until_asleep(&bridge.http, 1.0).await;
    // Keep-alives are written while it sleeps: three of them, and it is
    // asleep after them.
    for n in 0..3 {
        let f = sse.next_frame().await.expect("the stream stays open");
        assert!(f.comment, "keep-alive {n}: {f:?}");
    }
    until_asleep(&bridge.http, 1.0).await;
    // An event wakes it; quiet again, it sleeps again.
    let mut p = bridge.publisher().await;
    let id = publish(&mut p, "asleep-gauge", progress(1, 1)).await;
    assert_eq!(sse.next_event().await.id, Some(id));
    until_asleep(&bridge.http, 1.0).await;
    // A client that leaves takes its stream out of the count.
    drop(sse);
    until_asleep(&bridge.http, 0.0).await;
    let _ = child.kill().await;
}
