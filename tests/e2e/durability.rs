//! `--valkey-durability`: a publish is acknowledged only once Valkey
//! confirms the promised durability; an unconfirmed one is UNAVAILABLE and
//! a retry with the same idempotency key publishes it once.

use std::time::Duration;

use redis::Value;
use sse_bridge::client;
use tonic::Code;

use crate::harness::*;
use crate::valkey_server::{self, ValkeyServer};

async fn info(url: &str, section: &str) -> String {
    match valkey_server::cmd(url, &["INFO", section]).await {
        Value::BulkString(b) => String::from_utf8(b).expect("INFO is text"),
        Value::VerbatimString { text, .. } => text,
        other => panic!("INFO replied {other:?}"),
    }
}

/// Makes `replica` replicate `primary` and waits until its link is up
/// (the first sync done: only then does `WAIT` count it).
async fn replicate(primary: &str, replica: &ValkeyServer) {
    let port = primary.rsplit(':').next().expect("a port");
    valkey_server::cmd(&replica.url(), &["REPLICAOF", "127.0.0.1", port]).await;
    for _ in 0..200 {
        if info(&replica.url(), "replication")
            .await
            .lines()
            .any(|l| l.trim() == "master_link_status:up")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the replica did not sync");
}

fn keyed(
    resource: &str,
    checked: u32,
    key: &str,
) -> sse_bridge::proto::ssebridge::v1::PublishRequest {
    client::request(pb_channel(TENANT, resource), progress(checked, 100), key)
}

#[tokio::test]
async fn aof_durability_waits_for_the_fsync() {
    let backend = Backend::valkey_persistent();
    let bridge = Bridge::on(&backend, &["--valkey-durability", "aof"]).await;
    let mut sse = bridge
        .subscribe(&[&channel("aof")], &subscriber_token(TENANT), None)
        .await;
    let mut p = bridge.publisher().await;
    let id = publish(&mut p, "aof", progress(1, 2)).await;
    assert_eq!(sse.next_event().await.id, Some(id));
    let url = backend.server().url();
    let calls = info(&url, "commandstats").await;
    assert!(
        calls.contains("cmdstat_waitaof:calls="),
        "no WAITAOF ran: {calls}"
    );
    bridge.stop().await;
}

#[tokio::test]
async fn replica_durability_acknowledges_only_what_a_replica_has() {
    let backend = Backend::valkey();
    let primary = backend.server().url();
    let mut replica = ValkeyServer::start(false);
    replicate(&primary, &replica).await;
    let bridge = Bridge::on(
        &backend,
        &[
            "--valkey-durability",
            "replica",
            "--valkey-durability-timeout-ms",
            "300",
        ],
    )
    .await;
    let mut sse = bridge
        .subscribe(&[&channel("rep")], &subscriber_token(TENANT), None)
        .await;
    let mut p = bridge.publisher().await;
    let first = p.publish(keyed("rep", 1, "k1")).await.expect("confirmed");
    let first = first.into_inner().id;
    assert_eq!(sse.next_event().await.id, Some(first));

    // No replica: stored on the primary, maybe delivered, not acknowledged.
    replica.kill();
    let refused = p
        .publish(keyed("rep", 2, "k2"))
        .await
        .expect_err("no replica confirms it");
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains("no replica confirmed it")
            && refused.message().contains("same idempotency_key"),
        "{}",
        refused.message()
    );
    let stored = sse.next_event().await;
    assert_eq!(stored.data_json()["checked"], 2);

    // Back: the retry with the same key is confirmed, as the same event.
    replica.restart();
    replicate(&primary, &replica).await;
    let retried = p.publish(keyed("rep", 2, "k2")).await.expect("confirmed");
    assert_eq!(Some(retried.into_inner().id), stored.id, "the same event");
    let last = p.publish(keyed("rep", 3, "k3")).await.expect("confirmed");
    assert_eq!(
        sse.next_event().await.id,
        Some(last.into_inner().id),
        "the retry was not delivered again"
    );
    bridge.stop().await;
}

#[test]
fn aof_durability_refuses_a_server_without_the_aof() {
    let server = ValkeyServer::start(false);
    let err = crate::valkey_faults::serve_fails(&[
        "--valkey-url",
        &server.url(),
        "--valkey-durability",
        "aof",
    ]);
    assert!(
        err.contains("appendonly yes") && err.contains("--valkey-durability aof"),
        "{err}"
    );
}

fn addr(url: &str) -> std::net::SocketAddr {
    url.trim_start_matches("redis://")
        .parse()
        .expect("an address")
}

/// A failover to a replica that missed the newest acknowledged events (the
/// default durability promises nothing more): a client whose cursor is one
/// of the lost events is reset, live or resuming, even once newer events
/// follow on the new primary. Never a silent gap.
#[tokio::test]
async fn a_cursor_lost_in_a_failover_is_reset_never_a_silent_gap() {
    let primary = ValkeyServer::start(false);
    let replica = ValkeyServer::start(false);
    replicate(&primary.url(), &replica).await;
    let hole = crate::black_hole::BlackHole::start(addr(&primary.url())).await;
    let via = format!("redis://{}", hole.addr);
    let bridge = Bridge::with_valkey_url(Some(&via), &[]).await;
    let token = subscriber_token(TENANT);
    let mut live = bridge.subscribe(&[&channel("f")], &token, None).await;
    let mut p = bridge.publisher().await;
    let e1 = publish(&mut p, "f", progress(1, 9)).await;
    assert_eq!(live.next_event().await.id, Some(e1.clone()));
    // The replica has e1, then stops following: what comes next it misses.
    let key = format!("sseb:{{{}}}:h", channel("f"));
    for _ in 0..200 {
        if valkey_server::cmd(&replica.url(), &["XLEN", &key]).await == Value::Int(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    valkey_server::cmd(&replica.url(), &["REPLICAOF", "NO", "ONE"]).await;
    let _e2 = publish(&mut p, "f", progress(2, 9)).await;
    let e3 = publish(&mut p, "f", progress(3, 9)).await;
    assert_eq!(live.next_event().await.data_json()["checked"], 2);
    assert_eq!(live.next_event().await.id, Some(e3.clone()));

    hole.fail_over(addr(&replica.url()));
    let mut published = None;
    for _ in 0..200 {
        match p
            .publish(client::request(pb_channel(TENANT, "f"), progress(4, 9), ""))
            .await
        {
            Ok(r) => {
                published = Some(r.into_inner().id);
                break;
            }
            Err(s) => assert_eq!(s.code(), Code::Unavailable, "{}", s.message()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e4 = published.expect("the bridge publishes on the new primary");
    assert!(e4 > e3, "newer ids follow: only the history tells the gap");

    // The live stream is told, then goes on.
    let reset = live.next_event().await;
    assert_eq!(reset.event.as_deref(), Some("bridge.reset"), "{reset:?}");
    assert_eq!(reset.data_json()["channels"][0], channel("f"));
    // A client resuming from a lost event is told too.
    let mut resumed = bridge.subscribe(&[&channel("f")], &token, Some(&e3)).await;
    let reset = resumed.next_event().await;
    assert_eq!(reset.event.as_deref(), Some("bridge.reset"), "{reset:?}");
    assert_eq!(reset.data_json()["reason"], "unknown_position");
    bridge.stop().await;
}

#[tokio::test]
async fn serve_refuses_a_replica() {
    let primary = ValkeyServer::start(false);
    let replica = ValkeyServer::start(false);
    replicate(&primary.url(), &replica).await;
    let url = replica.url();
    let err = tokio::task::spawn_blocking(move || {
        crate::valkey_faults::serve_fails(&["--valkey-url", &url])
    })
    .await
    .expect("joined");
    let port = primary.url().rsplit(':').next().map(str::to_owned);
    assert!(
        err.contains("is a replica (replica of 127.0.0.1:")
            && err.contains(&format!(":{})", port.unwrap_or_default()))
            && err.contains("point --valkey-url at the primary"),
        "{err}"
    );
}

/// One primary, one replica, three sentinels; the bridge is given the
/// sentinels only. The primary is killed (SIGKILL): the sentinels promote
/// the replica, the bridge follows it, and with the replica caught up
/// before the kill nothing acknowledged is lost: the live stream and a
/// resuming one get every event in order, once, and publishing goes on.
#[tokio::test]
async fn behind_sentinel_the_bridge_follows_a_failover() {
    let mut primary = ValkeyServer::start(false);
    let replica = ValkeyServer::start(false);
    replicate(&primary.url(), &replica).await;
    let sentinels: Vec<ValkeyServer> = (0..3)
        .map(|_| ValkeyServer::start_sentinel(primary.port))
        .collect();
    let url = format!(
        "redis+sentinel://{}/mymaster",
        sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    );
    let bridge = Bridge::with_valkey_url(Some(&url), &["--valkey-timeout-ms", "500"]).await;
    let token = subscriber_token(TENANT);
    let mut live = bridge.subscribe(&[&channel("s")], &token, None).await;
    let mut p = bridge.publisher().await;
    let mut ids = Vec::new();
    for i in 1..=5 {
        ids.push(publish(&mut p, "s", progress(i, 9)).await);
    }
    for id in &ids {
        assert_eq!(live.next_event().await.id.as_ref(), Some(id));
    }
    // The replica has all five before the primary dies.
    let key = format!("sseb:{{{}}}:h", channel("s"));
    for _ in 0..200 {
        if valkey_server::cmd(&replica.url(), &["XLEN", &key]).await == Value::Int(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    primary.kill();

    // Publishing comes back on the promoted replica; the same key until
    // then, so a retry never publishes twice.
    let mut after = None;
    for _ in 0..400 {
        match p.publish(keyed("s", 6, "six")).await {
            Ok(r) => {
                after = Some(r.into_inner().id);
                break;
            }
            Err(s) => assert_eq!(s.code(), Code::Unavailable, "{}", s.message()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let six = after.expect("the bridge publishes on the new primary");
    assert_eq!(
        live.next_event().await.id,
        Some(six.clone()),
        "live, nothing lost"
    );
    let mut resumed = bridge
        .subscribe(&[&channel("s")], &token, Some(&ids[1]))
        .await;
    for id in ids[2..].iter().chain([&six]) {
        assert_eq!(resumed.next_event().await.id.as_ref(), Some(id));
    }
    let ready = http_client()
        .get(format!("{}/readyz", bridge.http))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(ready.as_u16(), 200);
    bridge.stop().await;
    drop(sentinels);
}
