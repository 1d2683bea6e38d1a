//! Publish → SSE delivery, exact frames, headers and the stream's framing.

use serde_json::json;
use sse_bridge::client;

use crate::harness::*;

#[tokio::test]
async fn idle_streams_get_keepalive_comments() {
    let bridge = Bridge::start(&["--keepalive-secs", "1"]).await;
    let mut sse = bridge
        .subscribe(&[&channel("k")], &subscriber_token(TENANT), None)
        .await;
    let opening = sse.next_frame().await.unwrap();
    assert!(opening.retry.is_some());
    let next = sse.next_frame().await.unwrap();
    assert!(next.comment, "{next:?}");
    assert!(next.event.is_none());
    bridge.stop().await;
}

#[tokio::test]
async fn cors_headers_on_streams_errors_and_preflight() {
    let origin = "https://app.example.com";
    let bridge = Bridge::start(&["--cors-origin", origin]).await;
    let url = bridge.events_url(&[&channel("c")]);
    let token = format!("Bearer {}", subscriber_token(TENANT));
    let ok = bridge
        .get(&url, &[("origin", origin), ("authorization", &token)])
        .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["access-control-allow-origin"], origin);
    let denied = bridge.get(&url, &[("origin", origin)]).await;
    assert_eq!(denied.status(), 401);
    assert_eq!(denied.headers()["access-control-allow-origin"], origin);
    let foreign = bridge
        .get(
            &url,
            &[
                ("origin", "https://evil.example"),
                ("authorization", &token),
            ],
        )
        .await;
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let preflight = http_client()
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header(
            "access-control-request-headers",
            "authorization, last-event-id",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], origin);
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("last-event-id"));
    bridge.stop().await;
}

#[tokio::test]
async fn health_readiness_and_grpc_health() {
    let bridge = Bridge::start(&[]).await;
    let c = http_client();
    let h = c
        .get(format!("{}/healthz", bridge.http))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let r = c
        .get(format!("{}/readyz", bridge.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let transport = tonic::transport::Endpoint::from_shared(bridge.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(transport);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "ssebridge.v1.Publisher".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    bridge.stop().await;
}

#[tokio::test]
async fn shutdown_closes_open_streams() {
    let bridge = Bridge::start(&[]).await;
    let mut sse = bridge
        .subscribe(&[&channel("down")], &subscriber_token(TENANT), None)
        .await;
    sse.next_frame().await.unwrap();
    bridge.stop().await;
    // A short retry, then the end of the stream.
    let mut saw_retry = false;
    while let Some(f) = sse.next_frame().await {
        saw_retry |= f.retry.is_some();
    }
    assert!(saw_retry);
}

crate::on_both_buses! {
async fn typed_events_arrive_as_exact_frames(backend: Backend) {
    let bridge = Bridge::on(&backend, &[]).await;
    let ch = channel("scan-1");
    let mut sse = bridge
        .subscribe(&[&ch], &subscriber_token(TENANT), None)
        .await;
    assert_eq!(sse.headers["content-type"], "text/event-stream");
    assert_eq!(sse.headers["cache-control"], "no-cache");
    assert_eq!(sse.headers["x-accel-buffering"], "no");
    let first = sse.next_frame().await.expect("opening frame");
    assert!(first.retry.is_some(), "stream opens with retry: {first:?}");

    let mut p = bridge.publisher().await;
    let cases = [
        (
            progress(0, 10),
            "scan.progress",
            format!(r#"{{"scan_id":"{TENANT}","checked":0,"total":10}}"#),
        ),
        (
            event(
                "scan.error",
                json!({"scan_id": TENANT, "code": "x", "detail": "Hel\nlo \"x\""}),
            ),
            "scan.error",
            format!(r#"{{"scan_id":"{TENANT}","code":"x","detail":"Hel\nlo \"x\""}}"#),
        ),
        (
            event(
                "finding.created",
                json!({"finding_id": TENANT, "title": "t", "severity": "SEVERITY_HIGH"}),
            ),
            "finding.created",
            format!(
                r#"{{"finding_id":"{TENANT}","title":"t","severity":"SEVERITY_HIGH"}}"#
            ),
        ),
        (
            event(
                "scan.end",
                json!({"scan_id": TENANT, "state": "SCAN_STATE_COMPLETED", "duration_ms": "1500"}),
            ),
            "scan.end",
            format!(
                r#"{{"scan_id":"{TENANT}","state":"SCAN_STATE_COMPLETED","findings":0,"duration_ms":"1500"}}"#
            ),
        ),
    ];
    for (ev, name, data) in cases {
        let id = publish(&mut p, "scan-1", ev).await;
        let f = sse.next_event().await;
        assert_eq!(f.id.as_deref(), Some(id.as_str()));
        assert_eq!(f.event.as_deref(), Some(name));
        assert_eq!(f.data.as_deref(), Some(data.as_str()));
    }
    bridge.stop().await;
}

async fn every_subscriber_gets_every_event_and_only_its_channels(backend: Backend) {
    let bridge = Bridge::on(&backend, &[]).await;
    let token = subscriber_token(TENANT);
    let mut a1 = bridge.subscribe(&[&channel("a")], &token, None).await;
    let mut a2 = bridge.subscribe(&[&channel("a")], &token, None).await;
    let mut b = bridge.subscribe(&[&channel("b")], &token, None).await;
    let mut p = bridge.publisher().await;
    let ida = publish(&mut p, "a", progress(1, 2)).await;
    let idb = publish(&mut p, "b", progress(2, 2)).await;
    assert_eq!(a1.next_event().await.id, Some(ida.clone()));
    assert_eq!(a2.next_event().await.id, Some(ida));
    assert_eq!(b.next_event().await.id, Some(idb));
    bridge.stop().await;
}

async fn idempotent_publish_returns_the_first_id_and_delivers_once(backend: Backend) {
    let bridge = Bridge::on(&backend, &[]).await;
    let mut sse = bridge
        .subscribe(&[&channel("i")], &subscriber_token(TENANT), None)
        .await;
    let mut p = bridge.publisher().await;
    let req = || client::request(pb_channel(TENANT, "i"), progress(1, 5), "key-1");
    let first = p.publish(req()).await.unwrap().into_inner();
    let second = p.publish(req()).await.unwrap().into_inner();
    assert_eq!(first.id, second.id);
    assert!(!first.duplicate);
    assert!(second.duplicate);
    let marker = publish(&mut p, "i", progress(2, 5)).await;
    assert_eq!(sse.next_event().await.id, Some(first.id));
    // The next event is the marker: the duplicate was not delivered.
    assert_eq!(sse.next_event().await.id, Some(marker));
    bridge.stop().await;
}

async fn publish_stream_answers_in_order_and_survives_bad_items(backend: Backend) {
    let bridge = Bridge::on(&backend, &[]).await;
    let mut sse = bridge
        .subscribe(&[&channel("s")], &subscriber_token(TENANT), None)
        .await;
    let mut p = bridge.publisher().await;
    let good = |n| client::request(pb_channel(TENANT, "s"), progress(n, 10), "");
    let bad = client::request(pb_channel(TENANT, "s"), progress(11, 10), "");
    let requests = vec![good(1), bad, good(2)];
    let got = publish_all(&mut p, requests).await;
    assert_eq!(got.len(), 3);
    assert!(!got[0].id.is_empty() && got[0].error.is_none());
    let err = got[1].error.as_ref().expect("second item rejected");
    assert_eq!(got[1].id, "");
    assert_eq!(err.code, tonic::Code::InvalidArgument as i32);
    assert_eq!(err.violations[0].field, "event.scan_progress.checked");
    assert!(!got[2].id.is_empty() && got[2].error.is_none());
    assert!(got[0].id < got[2].id || got[0].id.len() < got[2].id.len());
    assert_eq!(sse.next_event().await.id, Some(got[0].id.clone()));
    assert_eq!(sse.next_event().await.id, Some(got[2].id.clone()));
    bridge.stop().await;
}

async fn publish_stream_batches_keep_order_and_outcomes(backend: Backend) {
    let bridge = Bridge::on(&backend, &[]).await;
    let mut sse = bridge
        .subscribe(&[&channel("batch")], &subscriber_token(TENANT), None)
        .await;
    let mut p = bridge.publisher().await;
    // Sent all at once, so the bridge sees many ready items per batch.
    let requests: Vec<_> = (0..300u32)
        .map(|i| {
            let (checked, key) = match i {
                _ if i % 50 == 7 => (i + 1000, String::new()), // breaks checked <= total
                100 | 101 => (100, "same-key".to_owned()),
                _ => (i, String::new()),
            };
            client::request(pb_channel(TENANT, "batch"), progress(checked, 999), &key)
        })
        .collect();
    let got = publish_all(&mut p, requests).await;
    assert_eq!(got.len(), 300);
    let mut delivered_ids = Vec::new();
    for (i, r) in got.iter().enumerate() {
        if i % 50 == 7 {
            assert_eq!(r.error.as_ref().map(|e| e.code), Some(tonic::Code::InvalidArgument as i32));
        } else if i == 101 {
            assert!(r.duplicate && r.id == got[100].id, "duplicate within a batch");
        } else {
            assert!(r.error.is_none() && !r.duplicate, "{i}: {r:?}");
            delivered_ids.push(r.id.clone());
        }
    }
    for id in delivered_ids {
        assert_eq!(sse.next_event().await.id, Some(id), "delivered in request order");
    }
    bridge.stop().await;
}

// Batches that span channels (one bus call for several channels on
// Valkey): each channel gets its own events in order, idempotency keys
// count per channel, and each item's outcome is its own.
async fn publish_stream_batches_across_channels(backend: Backend) {
    let bridge = Bridge::on(&backend, &[]).await;
    let names = ["x0", "x1", "x2"];
    let mut streams = Vec::new();
    for name in names {
        let sse = bridge
            .subscribe(&[&channel(name)], &subscriber_token(TENANT), None)
            .await;
        streams.push(sse);
    }
    let mut p = bridge.publisher().await;
    // Round robin over the channels; every fifth item carries key `k<i/15>`,
    // the same key on all three channels (keys are per channel, so none of
    // those is a duplicate), and item 40 repeats item 25's key and channel.
    let item = |i: u32| {
        let ch = names[i as usize % 3];
        let key = match i {
            40 => "k1".to_owned(),
            _ if i % 5 == 0 => format!("k{}", i / 15),
            _ => String::new(),
        };
        client::request(pb_channel(TENANT, ch), progress(i, 999), &key)
    };
    let requests: Vec<_> = (0..240u32).map(item).collect();
    let got = publish_all(&mut p, requests).await;
    assert_eq!(got.len(), 240);
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); 3];
    for (i, r) in got.iter().enumerate() {
        assert!(r.error.is_none(), "{i}: {r:?}");
        if i == 40 {
            assert!(r.duplicate && r.id == got[25].id, "40 repeats 25: {r:?}");
        } else {
            assert!(!r.duplicate, "{i}: {r:?}");
            expected[i % 3].push(r.id.clone());
        }
    }
    for (sse, ids) in streams.iter_mut().zip(expected) {
        for id in ids {
            assert_eq!(sse.next_event().await.id, Some(id));
        }
    }
    // Nothing else arrives on any channel (a marker comes next).
    for (name, sse) in names.iter().zip(streams.iter_mut()) {
        let marker = publish(&mut p, name, progress(1, 2)).await;
        assert_eq!(sse.next_event().await.id, Some(marker));
    }
    bridge.stop().await;
}
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_text() {
    let bridge = Bridge::start(&[]).await;
    let mut sse = bridge
        .subscribe(&[&channel("m")], &subscriber_token(TENANT), None)
        .await;
    let mut p = bridge.publisher().await;
    let id = publish(&mut p, "m", progress(1, 2)).await;
    assert_eq!(sse.next_event().await.id, Some(id));
    let bad = p
        .publish(client::request(pb_channel(TENANT, "m"), progress(3, 2), ""))
        .await;
    assert!(bad.is_err());
    let _ = bridge.get(&bridge.events_url(&[&channel("m")]), &[]).await;
    let r = http_client()
        .get(format!("{}/metrics", bridge.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    // The recorder is process-wide and tests run in parallel: check that
    // each series exists with a positive value, not exact counts.
    let value = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    for series in [
        "sse_bridge_streams_open",
        "sse_bridge_channels_watched",
        "sse_bridge_events_published_total{kind=\"new\"}",
        "sse_bridge_events_delivered_total",
        "sse_bridge_publish_rejected_total{code=\"InvalidArgument\"}",
        "sse_bridge_auth_failures_total{side=\"subscriber\",reason=\"missing\"}",
        "sse_bridge_publish_seconds_count",
    ] {
        assert!(value(series) > 0.0, "{series} in:\n{text}");
    }
    drop(sse);
    bridge.stop().await;
}
