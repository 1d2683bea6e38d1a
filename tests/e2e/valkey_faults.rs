//! Several nodes on one Valkey, and Valkey faults under live streams: no
//! event is lost silently, streams never hang.

use std::time::Duration;

use redis::Value;
use sse_bridge::client;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::harness::*;

/// The history stream key of a test channel.
fn history_key(resource: &str) -> String {
    format!("sseb:{{{}}}:h", channel(resource))
}

/// A key's remaining time to live in ms (-1: none, -2: no key).
async fn pttl(backend: &Backend, key: &str) -> i64 {
    match backend.cmd(&["PTTL", key]).await {
        Value::Int(ms) => ms,
        other => panic!("PTTL replied {other:?}"),
    }
}

/// Publishes until the bus takes it (after a restart the node reconnects
/// by itself); every refusal must be UNAVAILABLE.
async fn publish_when_back(p: &mut client::Client, resource: &str, checked: u32) -> String {
    for _ in 0..200 {
        match p
            .publish(client::request(
                pb_channel(TENANT, resource),
                progress(checked, 1000),
                "",
            ))
            .await
        {
            Ok(r) => return r.into_inner().id,
            Err(s) => assert_eq!(s.code(), Code::Unavailable, "{}", s.message()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the bus did not come back");
}

/// The publisher's gRPC health, once it reports the expected state (it
/// follows the bus on a short period) or the patience runs out.
async fn grpc_health(bridge: &Bridge, serving: bool) -> ServingStatus {
    let transport = tonic::transport::Endpoint::from_shared(bridge.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(transport);
    let want = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    let mut status = ServingStatus::Unknown;
    for _ in 0..100 {
        let reply = health
            .check(HealthCheckRequest {
                service: "ssebridge.v1.Publisher".into(),
            })
            .await
            .unwrap()
            .into_inner();
        status = ServingStatus::try_from(reply.status).unwrap_or(ServingStatus::Unknown);
        if status == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    status
}

async fn ready(bridge: &Bridge) -> u16 {
    http_client()
        .get(format!("{}/readyz", bridge.http))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `/readyz`'s status once it is `want`, or the last one seen when the
/// patience ran out.
async fn ready_becomes(bridge: &Bridge, want: u16) -> u16 {
    let mut status = ready(bridge).await;
    for _ in 0..100 {
        if status == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = ready(bridge).await;
    }
    status
}

#[tokio::test]
async fn two_nodes_share_live_events_and_resume_across_nodes() {
    let backend = Backend::valkey();
    let a = Bridge::on(&backend, &[]).await;
    let b = Bridge::on(&backend, &[]).await;
    let token = subscriber_token(TENANT);
    let (x, y) = (channel("x"), channel("y"));
    let mut on_a = a.subscribe(&[&x, &y], &token, None).await;
    let mut on_b = b.subscribe(&[&x, &y], &token, None).await;
    let mut pa = a.publisher().await;

    let first = publish(&mut pa, "x", progress(1, 9)).await;
    let fa = on_a.next_event().await;
    let fb = on_b.next_event().await;
    assert_eq!(
        (
            fa.data_json()["checked"].clone(),
            fb.data_json()["checked"].clone()
        ),
        (1.into(), 1.into())
    );
    assert_eq!(fa.id, fb.id, "both nodes send the same cursor");
    assert!(!first.is_empty());

    // Disconnect from A, miss events, resume on B with A's cursor.
    let cursor = fa.id.unwrap();
    drop(on_a);
    for (i, r) in ["y", "x", "y"].iter().enumerate() {
        publish(&mut pa, r, progress(10 + i as u32, 99)).await;
    }
    let mut resumed = b.subscribe(&[&x, &y], &token, Some(&cursor)).await;
    for want in [10, 11, 12] {
        assert_eq!(resumed.next_event().await.data_json()["checked"], want);
    }
    let mut pb = b.publisher().await;
    publish(&mut pb, "y", progress(20, 99)).await;
    assert_eq!(
        resumed.next_event().await.data_json()["checked"],
        20,
        "live, no duplicate"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn idempotent_publish_across_two_nodes_delivers_once() {
    let backend = Backend::valkey();
    let a = Bridge::on(&backend, &[]).await;
    let b = Bridge::on(&backend, &[]).await;
    let mut sse = a
        .subscribe(&[&channel("i")], &subscriber_token(TENANT), None)
        .await;
    let req = || client::request(pb_channel(TENANT, "i"), progress(1, 2), "order-42");
    let first = a
        .publisher()
        .await
        .publish(req())
        .await
        .unwrap()
        .into_inner();
    let second = b
        .publisher()
        .await
        .publish(req())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.id, second.id);
    assert!(!first.duplicate && second.duplicate);
    let marker = publish(&mut b.publisher().await, "i", progress(2, 2)).await;
    assert_eq!(sse.next_event().await.id, Some(first.id));
    assert_eq!(sse.next_event().await.id, Some(marker));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn valkey_killed_with_aof_loses_nothing() {
    let backend = Backend::valkey_persistent();
    let bridge = Bridge::on(&backend, &["--keepalive-secs", "1"]).await;
    let token = subscriber_token(TENANT);
    let mut p = bridge.publisher().await;
    let mut live = bridge.subscribe(&[&channel("k")], &token, None).await;
    let e1 = publish(&mut p, "k", progress(1, 1000)).await;
    assert_eq!(live.next_event().await.id, Some(e1.clone()));
    // A second client leaves with e1 as its cursor.
    let e2 = publish(&mut p, "k", progress(2, 1000)).await;
    assert_eq!(live.next_event().await.id, Some(e2.clone()));

    backend.server().kill();
    let refused = p
        .publish(client::request(
            pb_channel(TENANT, "k"),
            progress(3, 1000),
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{}", refused.message());
    assert_eq!(ready(&bridge).await, 503);
    assert_eq!(grpc_health(&bridge, false).await, ServingStatus::NotServing);
    // The open stream stays open: keep-alives keep coming.
    let comment = live.next_frame().await.expect("stream stays open");
    assert!(comment.comment, "{comment:?}");

    backend.server().restart();
    let e4 = publish_when_back(&mut p, "k", 4).await;
    assert_eq!(
        live.next_event().await.id,
        Some(e4.clone()),
        "live stream continues"
    );
    assert_eq!(ready(&bridge).await, 200);
    assert_eq!(grpc_health(&bridge, true).await, ServingStatus::Serving);
    // History survived: a client resuming from e1 gets e2 and e4.
    let mut resumed = bridge.subscribe(&[&channel("k")], &token, Some(&e1)).await;
    assert_eq!(resumed.next_event().await.id, Some(e2));
    assert_eq!(resumed.next_event().await.id, Some(e4));
    bridge.stop().await;
}

#[tokio::test]
async fn valkey_restarted_without_persistence_resets_clients() {
    let backend = Backend::valkey();
    let bridge = Bridge::on(&backend, &[]).await;
    let token = subscriber_token(TENANT);
    let mut p = bridge.publisher().await;
    let mut live = bridge.subscribe(&[&channel("n")], &token, None).await;
    let e1 = publish(&mut p, "n", progress(1, 1000)).await;
    assert_eq!(live.next_event().await.id, Some(e1.clone()));

    backend.server().restart();
    let e2 = publish_when_back(&mut p, "n", 2).await;
    // The live stream is told its history is gone, then continues.
    let reset = live.next_event().await;
    assert_eq!(reset.event.as_deref(), Some("bridge.reset"), "{reset:?}");
    assert_eq!(reset.data_json()["channels"][0], channel("n"));
    assert_eq!(live.next_event().await.id, Some(e2.clone()));
    // A client resuming from before the restart is reset too, then gets
    // what the new history holds.
    let mut resumed = bridge.subscribe(&[&channel("n")], &token, Some(&e1)).await;
    assert_eq!(
        resumed.next_event().await.event.as_deref(),
        Some("bridge.reset")
    );
    assert_eq!(resumed.next_event().await.id, Some(e2));
    bridge.stop().await;
}

#[tokio::test]
async fn a_dropped_subscription_is_refilled_in_order() {
    let backend = Backend::valkey();
    // Node A logs in as its own user, so its reconnection can be held off
    // while node B keeps publishing.
    let server_url = backend.server().url();
    backend
        .cmd(&[
            "ACL", "SETUSER", "node-a", "on", ">s3cret", "~*", "&*", "+@all",
        ])
        .await;
    let a_url = server_url.replace("redis://", "redis://node-a:s3cret@") + "/0";
    let a = Bridge::with_valkey_url(Some(&a_url), &[]).await;
    let b = Bridge::on(&backend, &[]).await;
    let mut sse = a
        .subscribe(&[&channel("d")], &subscriber_token(TENANT), None)
        .await;
    let mut pb = b.publisher().await;
    let first = publish(&mut pb, "d", progress(0, 1000)).await;
    assert_eq!(sse.next_event().await.id, Some(first));

    backend.cmd(&["ACL", "SETUSER", "node-a", "off"]).await;
    backend.cmd(&["CLIENT", "KILL", "USER", "node-a"]).await;
    let mut ids = Vec::new();
    for i in 1..=30 {
        ids.push(publish(&mut pb, "d", progress(i, 1000)).await);
    }
    backend.cmd(&["ACL", "SETUSER", "node-a", "on"]).await;
    for id in ids {
        assert_eq!(sse.next_event().await.id, Some(id));
    }
    a.stop().await;
    b.stop().await;
}

async fn shard_subscribers(backend: &Backend, name: &str) -> i64 {
    let reply = backend.cmd(&["PUBSUB", "SHARDNUMSUB", name]).await;
    match reply {
        Value::Array(v) => match v.get(1) {
            Some(Value::Int(n)) => *n,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn listener_churn_leaves_no_subscriptions() {
    let backend = Backend::valkey();
    let bridge = Bridge::on(&backend, &[]).await;
    let token = subscriber_token(TENANT);
    let names: Vec<String> = (0..3).map(|i| channel(&format!("churn{i}"))).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for round in 0..5 {
        let mut streams = Vec::new();
        for _ in 0..4 {
            streams.push(bridge.subscribe(&refs[..=(round % 3)], &token, None).await);
        }
        let shard = format!("sseb:{{{}}}", names[0]);
        assert_eq!(
            shard_subscribers(&backend, &shard).await,
            1,
            "one subscription per node"
        );
        drop(streams);
    }
    // Unsubscribing follows the last listener asynchronously.
    for name in &names {
        let shard = format!("sseb:{{{name}}}");
        let mut n = -1;
        for _ in 0..200 {
            n = shard_subscribers(&backend, &shard).await;
            if n == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(n, 0, "{shard} still subscribed");
    }
    bridge.stop().await;
}

/// A Cluster node is refused at start with a message that says what to do,
/// rather than every publish failing later (a publish run spans slots).
#[test]
fn serve_refuses_a_valkey_cluster_node() {
    let node = crate::valkey_server::ValkeyServer::start_cluster_node();
    let err = serve_fails(&["--valkey-url", &node.url()]);
    assert!(
        err.contains("Valkey Cluster node") && err.contains("--valkey-url"),
        "{err}"
    );
}

/// Runs `serve` with `args`, expects it to stop by itself with a failure,
/// and returns what it said on stderr.
pub fn serve_fails(args: &[&str]) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sse-bridge"))
        .args([
            "serve",
            "--jwt-secret",
            SECRET,
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the bridge");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the bridge started with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    assert!(!status.success());
    err
}

/// One channel of a batch whose step fails in Valkey (its history key holds
/// another type) fails alone: the batch's other channels are published and
/// delivered, and its own items are refused as retryable.
#[tokio::test]
async fn a_failing_channel_fails_alone_in_a_batch() {
    let backend = Backend::valkey();
    let bridge = Bridge::on(&backend, &[]).await;
    let good = channel("fine");
    backend
        .cmd(&["SET", &history_key("broken"), "not a stream"])
        .await;
    let mut sse = bridge
        .subscribe(&[&good], &subscriber_token(TENANT), None)
        .await;
    let mut p = bridge.publisher().await;
    let requests: Vec<_> = (0..40u32)
        .map(|i| {
            let resource = if i % 2 == 0 { "fine" } else { "broken" };
            client::request(pb_channel(TENANT, resource), progress(i, 99), "")
        })
        .collect();
    let got = publish_all(&mut p, requests).await;
    assert_eq!(got.len(), 40);
    let mut ids = Vec::new();
    for (i, r) in got.iter().enumerate() {
        if i % 2 == 0 {
            assert!(r.error.is_none(), "{i}: {r:?}");
            ids.push(r.id.clone());
        } else {
            let e = r.error.as_ref().expect("the broken channel's item fails");
            assert_eq!(e.code, Code::Unavailable as i32, "{i}: {r:?}");
            assert!(e.message.contains("WRONGTYPE"), "{}", e.message);
        }
    }
    for id in ids {
        assert_eq!(sse.next_event().await.id, Some(id));
    }
    bridge.stop().await;
}

/// The node remembers when it last refreshed a channel's idle expiry and
/// skips refreshing on most publishes; a history key that vanished (expired
/// or deleted) must still get its expiry back on the publish that recreates
/// it, or it would never expire.
#[tokio::test]
async fn a_recreated_history_key_gets_its_expiry_back() {
    let backend = Backend::valkey();
    let bridge = Bridge::on(&backend, &["--history-ttl-secs", "60"]).await;
    let key = history_key("ttl");
    let mut p = bridge.publisher().await;
    publish(&mut p, "ttl", progress(1, 9)).await;
    let first = pttl(&backend, &key).await;
    assert!(
        first > 60_000 && first <= 120_000,
        "twice the age: {first} ms"
    );
    // Refreshed just now, so the next publish is not told to refresh; the
    // key is gone, and the publish that makes it again must set it anyway.
    backend.cmd(&["DEL", &key]).await;
    publish(&mut p, "ttl", progress(2, 9)).await;
    let again = pttl(&backend, &key).await;
    assert!(
        again > 60_000 && again <= 120_000,
        "recreated key: {again} ms"
    );
    // An existing key keeps the expiry it has until a refresh is due
    // (every eighth of the age), so most publishes skip the refresh.
    backend.cmd(&["PEXPIRE", &key, "100000"]).await;
    publish(&mut p, "ttl", progress(3, 9)).await;
    let kept = pttl(&backend, &key).await;
    assert!(kept <= 100_000, "not refreshed yet: {kept} ms");
    bridge.stop().await;
}

/// A refresh that falls due on a publish of only duplicates is done too:
/// the node counts it as done, so skipping it would let the key expire
/// early after the publishes that follow.
#[tokio::test]
async fn a_duplicate_publish_still_refreshes_a_due_expiry() {
    let backend = Backend::valkey();
    // Age 8 s: expiry 16 s, refreshed every second.
    let bridge = Bridge::on(&backend, &["--history-ttl-secs", "8"]).await;
    let key = history_key("dup-ttl");
    let mut p = bridge.publisher().await;
    let req = || client::request(pb_channel(TENANT, "dup-ttl"), progress(1, 9), "once");
    let first = p.publish(req()).await.expect("publish").into_inner();
    backend.cmd(&["PEXPIRE", &key, "10000"]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = p.publish(req()).await.expect("publish").into_inner();
    assert_eq!(again.id, first.id, "a duplicate");
    let ms = pttl(&backend, &key).await;
    assert!(ms > 10_000, "refreshed to twice the age: {ms} ms");
    bridge.stop().await;
}

/// How many calls of `command` (lower case) Valkey has run, scripts'
/// calls included.
async fn calls(backend: &Backend, command: &str) -> u64 {
    let info = match backend.cmd(&["INFO", "commandstats"]).await {
        Value::BulkString(b) => String::from_utf8(b).expect("INFO is text"),
        Value::VerbatimString { text, .. } => text,
        other => panic!("INFO replied {other:?}"),
    };
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

async fn xlen(backend: &Backend, key: &str) -> i64 {
    match backend.cmd(&["XLEN", key]).await {
        Value::Int(n) => n,
        other => panic!("XLEN replied {other:?}"),
    }
}

/// A publish that creates a channel's stream knows the stream's oldest entry
/// (its own first), so it reads no head to decide on an age trim: a
/// short-lived channel never reads one.
#[tokio::test]
async fn a_new_channel_s_first_publish_reads_no_head() {
    let backend = Backend::valkey();
    let bridge = Bridge::on(&backend, &[]).await;
    let mut p = bridge.publisher().await;
    for resource in ["fresh-a", "fresh-b", "fresh-c", "fresh-a"] {
        publish(&mut p, resource, progress(1, 9)).await;
    }
    assert_eq!(calls(&backend, "xrange").await, 0, "no head was read");
    let len = backend.cmd(&["XLEN", &history_key("fresh-a")]).await;
    assert_eq!(len, Value::Int(2));
    bridge.stop().await;
}

/// The node counts what it adds to a channel, so a publish far from the
/// length bound does not ask Valkey for the stream's length; the publish
/// that creates the stream knows it without asking.
#[tokio::test]
async fn publishes_short_of_the_length_bound_do_not_measure_it() {
    let backend = Backend::valkey();
    let bridge = Bridge::on(&backend, &["--history-len", "1000"]).await;
    let mut p = bridge.publisher().await;
    for i in 0..20 {
        publish(&mut p, "short", progress(i, 20)).await;
    }
    assert_eq!(calls(&backend, "xlen").await, 0, "no length was measured");
    assert_eq!(xlen(&backend, &history_key("short")).await, 20);
    bridge.stop().await;
}

/// A node alone on a channel measures whenever its count says the stream
/// may pass the bound: the stream holds exactly the last `--history-len`
/// events after every publish.
#[tokio::test]
async fn one_node_keeps_exactly_the_history_length() {
    let backend = Backend::valkey();
    let bridge = Bridge::on(&backend, &["--history-len", "20"]).await;
    let key = history_key("exact");
    let mut p = bridge.publisher().await;
    let mut ids = Vec::new();
    for i in 1..=30 {
        ids.push(publish(&mut p, "exact", progress(i, 30)).await);
        assert_eq!(
            xlen(&backend, &key).await,
            i64::from(i.min(20)),
            "after {i}"
        );
    }
    let head = backend.cmd(&["XRANGE", &key, "-", "+", "COUNT", "1"]).await;
    let Value::Array(head) = head else {
        panic!("XRANGE replied {head:?}")
    };
    let Some(Value::Array(entry)) = head.first() else {
        panic!("an empty stream")
    };
    assert_eq!(
        entry.first(),
        Some(&Value::BulkString(ids[10].clone().into_bytes()))
    );
    bridge.stop().await;
}

/// What other nodes add, a node does not count; each measures at least
/// every eighth of the bound it adds, and every measure trims to the bound.
/// The stream never holds fewer than the bound (what resume relies on),
/// holds at most an eighth of it more per other node, and a cursor trimmed
/// away on either node is reported as trimmed.
#[tokio::test]
async fn two_nodes_keep_at_least_the_history_length_and_little_more() {
    let backend = Backend::valkey();
    let flags = ["--history-len", "16"];
    let a = Bridge::on(&backend, &flags).await;
    let b = Bridge::on(&backend, &flags).await;
    let key = history_key("shared");
    let (mut pa, mut pb) = (a.publisher().await, b.publisher().await);
    let mut first = None;
    for i in 1..=48u32 {
        let p = if (i / 3) % 2 == 0 { &mut pa } else { &mut pb };
        let id = publish(p, "shared", progress(i, 48)).await;
        first.get_or_insert(id);
        let len = xlen(&backend, &key).await;
        assert!(len >= i64::from(i.min(16)), "after {i}: {len} < the bound");
        assert!(len <= 16 + 2, "after {i}: {len}, more than an eighth over");
    }
    let token = subscriber_token(TENANT);
    for node in [&a, &b] {
        let mut sse = node
            .subscribe(&[&channel("shared")], &token, first.as_deref())
            .await;
        let reset = sse.next_event().await;
        assert_eq!(reset.event.as_deref(), Some("bridge.reset"));
        assert_eq!(reset.data_json()["reason"], "history_trimmed");
    }
    a.stop().await;
    b.stop().await;
}

/// Batches in flight together are counted when sent, not when they run, so
/// a stream may pass the bound for a moment; the next publish after a
/// flood measures and trims to exactly the bound, and a cursor right at the
/// edge of what is kept resumes with no reset while one before it is told
/// `history_trimmed`.
#[tokio::test]
async fn after_a_flood_of_batches_the_next_publish_trims_to_the_bound() {
    let backend = Backend::valkey();
    let bridge = Bridge::on(&backend, &["--history-len", "50"]).await;
    let key = history_key("flood");
    let mut p = bridge.publisher().await;
    let requests = (0..300)
        .map(|i| client::request(pb_channel(TENANT, "flood"), progress(i, 300), ""))
        .collect();
    let ids: Vec<String> = publish_all(&mut p, requests)
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids.len(), 300);
    let len = xlen(&backend, &key).await;
    assert!(len >= 50, "never below the bound: {len}");
    let last = publish(&mut p, "flood", progress(300, 300)).await;
    assert_eq!(xlen(&backend, &key).await, 50, "trimmed to the bound");

    // Kept: ids[251..] and `last`. The cursor ids[250] is the newest
    // trimmed entry: everything after it is still there.
    let token = subscriber_token(TENANT);
    let flood = channel("flood");
    let mut edge = bridge.subscribe(&[&flood], &token, Some(&ids[250])).await;
    assert_eq!(
        edge.next_event().await.id.as_deref(),
        Some(ids[251].as_str())
    );
    let mut before = bridge.subscribe(&[&flood], &token, Some(&ids[249])).await;
    let reset = before.next_event().await;
    assert_eq!(reset.event.as_deref(), Some("bridge.reset"));
    assert_eq!(reset.data_json()["reason"], "history_trimmed");
    assert_eq!(
        before.next_event().await.id.as_deref(),
        Some(ids[251].as_str())
    );
    // The rest of what is kept follows, ending with the last publish.
    for want in ids[252..].iter().chain([&last]) {
        assert_eq!(edge.next_event().await.id.as_ref(), Some(want));
    }
    bridge.stop().await;
}

/// A subscription connection that goes silent (its route black-holed: no
/// reset, no close, no byte ever again) is found out within about twice
/// the command timeout; `/readyz` says 503 while the node has no working
/// subscription; once a new connection gets through, the channel is
/// refilled from history: the stream gets every event, in order, once.
#[tokio::test]
async fn a_silent_subscription_connection_is_found_out_and_refilled() {
    let backend = Backend::valkey();
    let server: std::net::SocketAddr = backend
        .server()
        .url()
        .trim_start_matches("redis://")
        .parse()
        .unwrap();
    let hole = crate::black_hole::BlackHole::start(server).await;
    let via_hole = format!("redis://{}", hole.addr);
    let a = Bridge::with_valkey_url(Some(&via_hole), &["--valkey-timeout-ms", "500"]).await;
    let b = Bridge::on(&backend, &[]).await;
    let mut sse = a
        .subscribe(&[&channel("quiet")], &subscriber_token(TENANT), None)
        .await;
    let mut pb = b.publisher().await;
    let first = publish(&mut pb, "quiet", progress(0, 100)).await;
    assert_eq!(sse.next_event().await.id, Some(first));
    assert_eq!(ready(&a).await, 200);

    hole.cut(true);
    let mut ids = Vec::new();
    for i in 1..=20 {
        ids.push(publish(&mut pb, "quiet", progress(i, 100)).await);
    }
    assert_eq!(
        ready_becomes(&a, 503).await,
        503,
        "not ready while the subscription is dead"
    );

    hole.cut(false);
    for id in ids {
        assert_eq!(sse.next_event().await.id, Some(id));
    }
    let last = publish(&mut pb, "quiet", progress(21, 100)).await;
    assert_eq!(
        sse.next_event().await.id,
        Some(last),
        "live again, no duplicate"
    );
    assert_eq!(ready_becomes(&a, 200).await, 200);
    a.stop().await;
    b.stop().await;
}
