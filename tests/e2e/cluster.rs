//! Valkey Cluster: three primaries with a replica each, formed on loopback
//! by the harness. Channels spread over every primary; slots migrate and
//! primaries die under steady publishing; subscribers that stay and
//! subscribers that resume get every acknowledged event once, in order, or
//! a `bridge.reset` when an acknowledged event was lost.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sse_bridge::client::{self, Client};
use sse_bridge::proto::ssebridge::v1 as pb;
use tonic::Code;

use crate::harness::*;
use crate::valkey_server::{Cluster, ValkeyServer};

/// An event's number: which channel (`/ 1000`) and where in that
/// channel's sequence (`% 1000`). Carried as `checked`.
fn numbered(channel: usize, seq: usize) -> sse_bridge::proto::events::v1::Event {
    progress((channel * 1000 + seq) as u32, 1_000_000)
}

fn number(frame: &Frame) -> (usize, usize) {
    let n = frame.data_json()["checked"]
        .as_u64()
        .unwrap_or_else(|| panic!("not a numbered event: {frame:?}")) as usize;
    (n / 1000, n % 1000)
}

/// Publishes with `key`, retrying while the cluster answers UNAVAILABLE
/// (a failover, a slot in flight): the same key, so never twice.
async fn publish_until_acked(
    p: &mut Client,
    resource: &str,
    ev: sse_bridge::proto::events::v1::Event,
    key: &str,
) -> String {
    for _ in 0..400 {
        match p
            .publish(client::request(
                pb_channel(TENANT, resource),
                ev.clone(),
                key,
            ))
            .await
        {
            Ok(r) => return r.into_inner().id,
            Err(s) => assert_eq!(s.code(), Code::Unavailable, "{}", s.message()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{resource}: never acknowledged");
}

/// Reads `count` numbered events and checks each channel's arrive in
/// sequence from `first[channel]`, none twice; returns the ids by number.
async fn read_in_order(
    sse: &mut Sse,
    count: usize,
    first: &mut HashMap<usize, usize>,
) -> HashMap<(usize, usize), String> {
    let mut ids = HashMap::new();
    for _ in 0..count {
        let frame = sse.next_event().await;
        assert_eq!(frame.event.as_deref(), Some("scan.progress"), "{frame:?}");
        let (channel, seq) = number(&frame);
        let next = first.entry(channel).or_insert(0);
        assert_eq!(seq, *next, "channel {channel}: in order, once");
        *next += 1;
        ids.insert((channel, seq), frame.id.clone().unwrap_or_default());
    }
    ids
}

#[tokio::test]
async fn events_over_a_hundred_channels_reach_two_nodes_once_and_in_order() {
    let cluster = Cluster::start(3, 1).await;
    let flags = ["--max-channels", "128"];
    let a = Bridge::with_valkey_url(Some(&cluster.url()), &flags).await;
    // One seed is enough: the rest is discovered.
    let b = Bridge::with_valkey_url(Some(&cluster.seeds(1)), &flags).await;
    let resources: Vec<String> = (0..120).map(|i| format!("c{i}")).collect();
    let mut owners = HashSet::new();
    for r in &resources {
        owners.insert(cluster.owner(cluster.keyslot(&channel(r)).await).await);
    }
    assert_eq!(owners.len(), 3, "the channels span every primary");
    let names: Vec<String> = resources.iter().map(|r| channel(r)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let token = subscriber_token(TENANT);
    let mut on_a = a.subscribe(&names, &token, None).await;
    let mut on_b = b.subscribe(&names, &token, None).await;

    // Batches that span every slot, over one PublishStream on A…
    let requests = (0..3)
        .flat_map(|round| {
            (0..120).map(move |i| {
                client::request(pb_channel(TENANT, &format!("c{i}")), numbered(i, round), "")
            })
        })
        .collect();
    let acked = publish_all(&mut a.publisher().await, requests).await;
    assert_eq!(acked.len(), 360);
    for r in &acked {
        assert!(r.error.is_none() && !r.id.is_empty(), "{r:?}");
    }
    // …then single publishes on B.
    let mut pb = b.publisher().await;
    for i in 0..120 {
        publish(&mut pb, &format!("c{i}"), numbered(i, 3)).await;
    }
    for sse in [&mut on_a, &mut on_b] {
        let mut next = HashMap::new();
        read_in_order(sse, 480, &mut next).await;
        assert!(next.values().all(|&n| n == 4), "{next:?}");
    }
    a.stop().await;
    b.stop().await;
}

/// A busy channel's slot migrates to another primary while events arrive at
/// a steady rate. The live subscriber (its node's subscription dropped by
/// the server, `sunsubscribe`, and placed on the new owner) and a client
/// resuming from before the migration get every event once, in order.
#[tokio::test]
async fn a_slot_migrating_under_steady_publishing_loses_nothing() {
    let cluster = Cluster::start(3, 0).await;
    let a = Bridge::with_valkey_url(Some(&cluster.url()), &[]).await;
    let b = Bridge::with_valkey_url(Some(&cluster.url()), &[]).await;
    let busy = channel("busy");
    let slot = cluster.keyslot(&busy).await;
    let from = cluster.owner(slot).await;
    let to = (from + 1) % 3;
    let token = subscriber_token(TENANT);
    let mut live = b.subscribe(&[&busy], &token, None).await;
    let mut p = a.publisher().await;
    let first = publish_until_acked(&mut p, "busy", numbered(0, 0), "k0").await;

    let (stop_tx, mut stop) = tokio::sync::oneshot::channel::<()>();
    let grpc = a.grpc.clone();
    let publisher = tokio::spawn(async move {
        let mut p = client::connect(&grpc, &publisher_token(&["*"]))
            .await
            .expect("connect");
        let mut seq = 1;
        loop {
            // Some with idempotency keys, which migrate with the slot. A
            // keyed publish meanwhile waits (`TRYAGAIN`: its keys are split
            // between the nodes); an unkeyed one goes to the target
            // (`ASK`), unheard by subscribers still on the source.
            let key = if seq % 5 == 0 {
                format!("k{seq}")
            } else {
                String::new()
            };
            publish_until_acked(&mut p, "busy", numbered(0, seq), &key).await;
            seq += 1;
            if stop.try_recv().is_ok() {
                return seq;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster
        .migrate(slot, to, || tokio::time::sleep(Duration::from_millis(200)))
        .await;
    assert_eq!(cluster.owner(slot).await, to);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(());
    let published = publisher.await.expect("the publisher ran");
    assert!(published > 20, "only {published} events published");

    let mut next = HashMap::new();
    read_in_order(&mut live, published, &mut next).await;
    let mut resumed = a.subscribe(&[&busy], &token, Some(&first)).await;
    let mut from_one = HashMap::from([(0, 1)]);
    read_in_order(&mut resumed, published - 1, &mut from_one).await;
    // Both nodes publish and deliver on the new owner.
    let last =
        publish_until_acked(&mut b.publisher().await, "busy", numbered(0, published), "").await;
    assert_eq!(live.next_event().await.id, Some(last.clone()));
    assert_eq!(resumed.next_event().await.id, Some(last));
    a.stop().await;
    b.stop().await;
}

/// Kills (SIGKILL) the primary of a busy channel while events arrive, and
/// lets its replica take over. With `replica` durability every
/// acknowledged event reaches the live subscriber and a resuming one; with
/// `none` an acknowledged event may be lost, but never silently: each is
/// delivered or the client is told `bridge.reset`.
async fn primary_killed(durability: &str) {
    let mut cluster = Cluster::start(3, 1).await;
    let flags = [
        "--valkey-durability",
        durability,
        "--valkey-timeout-ms",
        "1000",
    ];
    let bridge = Bridge::with_valkey_url(Some(&cluster.url()), &flags).await;
    let hot = channel("hot");
    let victim = cluster.owner(cluster.keyslot(&hot).await).await;
    let token = subscriber_token(TENANT);
    let mut live = bridge.subscribe(&[&hot], &token, None).await;
    let mut p = bridge.publisher().await;
    let first = publish_until_acked(&mut p, "hot", numbered(0, 0), "k0").await;
    let mut acked = vec![first.clone()];
    for seq in 1..40 {
        if seq == 15 {
            cluster.nodes[victim].kill();
            // Once its replica has taken over, the old primary comes back
            // as the new one's replica (with `replica` durability nothing
            // is acknowledged until a replica has it).
            let slot = cluster.keyslot(&hot).await;
            cluster.until_owner_is_not(slot, victim).await;
            cluster.nodes[victim].restart();
        }
        acked.push(publish_until_acked(&mut p, "hot", numbered(0, seq), &format!("k{seq}")).await);
    }
    assert_ne!(
        cluster.owner(cluster.keyslot(&hot).await).await,
        victim,
        "the replica took over"
    );

    let strict = durability == "replica";
    for sse in [&mut live] {
        account_for(sse, &acked, 0, strict).await;
    }
    let mut resumed = bridge.subscribe(&[&hot], &token, Some(&first)).await;
    account_for(&mut resumed, &acked, 1, strict).await;
    let ready = http_client()
        .get(format!("{}/readyz", bridge.http))
        .send()
        .await
        .expect("readyz")
        .status();
    assert_eq!(ready.as_u16(), 200, "ready again on the new primary");
    bridge.stop().await;
}

/// Reads until the last acknowledged event: each acknowledged event from
/// `from` on arrives once and in order, or (unless `strict`) a
/// `bridge.reset` came first and the rest arrive in order from there.
async fn account_for(sse: &mut Sse, acked: &[String], from: usize, strict: bool) {
    let mut next = from;
    let mut reset = false;
    while next < acked.len() {
        let frame = sse.next_event().await;
        if frame.event.as_deref() == Some("bridge.reset") {
            assert!(
                !strict,
                "nothing acknowledged is lost with replica durability: {frame:?}"
            );
            reset = true;
            continue;
        }
        let (_, seq) = number(&frame);
        if reset {
            assert!(
                seq >= next,
                "after the reset, no going back: {seq} < {next}"
            );
        } else {
            assert_eq!(seq, next, "in order, once, nothing skipped silently");
        }
        assert_eq!(frame.id.as_ref(), Some(&acked[seq]));
        next = seq + 1;
    }
}

#[tokio::test]
async fn a_primary_killed_loses_nothing_acknowledged_with_replica_durability() {
    primary_killed("replica").await;
}

#[tokio::test]
async fn a_primary_killed_without_durability_is_never_a_silent_gap() {
    primary_killed("none").await;
}

/// Revocation orders reach every node, whichever primary the control
/// channel lives on, and the reply counts them.
#[tokio::test]
async fn disconnect_orders_reach_every_node() {
    let cluster = Cluster::start(3, 0).await;
    let a = Bridge::with_valkey_url(Some(&cluster.url()), &[]).await;
    let b = Bridge::with_valkey_url(Some(&cluster.url()), &[]).await;
    let old = hs256(serde_json::json!({
        "tenant_id": TENANT,
        "sub": "alice",
        "iat": now_secs() - 5,
    }));
    let mut on_a = a.subscribe(&[&channel("r")], &old, None).await;
    let mut on_b = b.subscribe(&[&channel("r")], &old, None).await;
    let admin = sse_bridge::token::mint(
        SECRET,
        sse_bridge::token::publisher_claims("ops", "streams:admin", &["*".to_owned()]),
        600,
    )
    .expect("a token");
    let reply = a
        .publisher_with(&admin)
        .await
        .disconnect(pb::DisconnectRequest {
            target: Some(pb::disconnect_request::Target::Subject(pb::SubjectTarget {
                subject: "alice".into(),
                tenant_id: String::new(),
            })),
            reason: "logged out".into(),
        })
        .await
        .expect("disconnect");
    assert_eq!(reply.into_inner().nodes, 2, "both nodes got the order");
    for sse in [&mut on_a, &mut on_b] {
        assert_eq!(
            sse.next_event().await.event.as_deref(),
            Some("bridge.revoked")
        );
    }
    a.stop().await;
    b.stop().await;
}

/// A cluster that does not serve every slot is refused at start, naming
/// the slots.
#[test]
fn serve_refuses_a_cluster_that_does_not_serve_every_slot() {
    let node = ValkeyServer::start_cluster_node();
    let url = format!("redis+cluster://127.0.0.1:{}", node.port);
    let err = crate::valkey_faults::serve_fails(&["--valkey-url", &url]);
    assert!(
        err.contains("does not serve every slot (slots 0-16383"),
        "{err}"
    );
}

/// The chaos soak (not in CI: `scripts/soak`, `SOAK_SECS` long, 600 by
/// default). Steady publishing over 1,000 channels to two bridge nodes on
/// a 3+3 cluster; meanwhile a primary is killed (and comes back as a
/// replica), a busy slot migrates, a bridge node restarts, and subscribers
/// churn, resuming on the other node. At the end every acknowledged event
/// is accounted for: delivered to every stream that covers its channel, or
/// covered by a `bridge.reset` that stream got. Prints the figures and the
/// process's RSS over time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 10-minute soak: scripts/soak"]
async fn cluster_soak() {
    crate::soak::run().await;
}
