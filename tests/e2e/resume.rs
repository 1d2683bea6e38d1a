//! Resume after reconnect: no gap, no duplicate, across several channels;
//! `bridge.reset` when history cannot cover the gap.

use serde_json::json;

use crate::harness::*;

fn big(n: u32) -> sse_bridge::proto::events::v1::Event {
    // 15 KB each: a few hundred fill the loopback socket buffers, so the
    // server stops draining the listener and it falls behind.
    event(
        "message.delta",
        json!({"content": format!("{n:08}{}", "x".repeat(15_000))}),
    )
}

fn seq(f: &Frame) -> u32 {
    f.data_json()["content"].as_str().unwrap()[..8]
        .parse()
        .unwrap()
}

crate::on_both_buses! {
async fn two_channel_resume_gets_exactly_the_missed_events_then_live(backend: Backend) {
    let bridge = Bridge::on(&backend, &[]).await;
    let token = subscriber_token(TENANT);
    let (a, b) = (channel("a"), channel("b"));
    let mut p = bridge.publisher().await;

    let mut sse = bridge.subscribe(&[&a, &b], &token, None).await;
    publish(&mut p, "a", progress(1, 9)).await;
    publish(&mut p, "b", progress(2, 9)).await;
    sse.next_event().await;
    let last = sse.next_event().await;
    let cursor = last.id.clone().expect("id");
    assert!(
        cursor
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    drop(sse);

    // Missed while disconnected, interleaved across the channels.
    let mut missed = Vec::new();
    for (i, r) in ["a", "b", "a", "b", "b"].iter().enumerate() {
        let id = publish(&mut p, r, progress(10 + i as u32, 99)).await;
        missed.push((id, 10 + i as u64));
    }

    // Reconnect with the channels in the other order: the cursor still fits.
    let mut again = bridge.subscribe(&[&b, &a], &token, Some(&cursor)).await;
    let mut got = Vec::new();
    for _ in &missed {
        let f = again.next_event().await;
        got.push(f.data_json()["checked"].as_u64().expect("a number"));
    }
    // Exactly the missed events, each channel's in publish order. Across
    // channels the replay goes by id, the publish time to the millisecond:
    // two channels' events of one millisecond may come in either order.
    let of = |ours: &[u64], seen: &[u64]| -> Vec<u64> {
        seen.iter().copied().filter(|c| ours.contains(c)).collect()
    };
    assert_eq!(of(&[10, 12], &got), [10, 12], "channel a: {got:?}");
    assert_eq!(of(&[11, 13, 14], &got), [11, 13, 14], "channel b: {got:?}");
    assert_eq!(got.len(), missed.len());
    let live = publish(&mut p, "a", progress(50, 99)).await;
    let f = again.next_event().await;
    assert_eq!(
        f.data_json()["checked"],
        json!(50),
        "live after replay, no duplicate ({live})"
    );

    // The same cursor via ?last_event_id= resumes the same way.
    let url = format!("{}last_event_id={cursor}", bridge.events_url(&[&a, &b]));
    let r = bridge
        .get(&url, &[("authorization", &format!("Bearer {token}"))])
        .await;
    let mut q = Sse::new(r);
    assert_eq!(q.next_event().await.data_json()["checked"], json!(10));
    bridge.stop().await;
}

async fn single_channel_resume_uses_the_publish_id(backend: Backend) {
    let bridge = Bridge::on(&backend, &[]).await;
    let token = subscriber_token(TENANT);
    let mut p = bridge.publisher().await;
    let first = publish(&mut p, "one", progress(1, 5)).await;
    let second = publish(&mut p, "one", progress(2, 5)).await;
    let mut sse = bridge
        .subscribe(&[&channel("one")], &token, Some(&first))
        .await;
    let f = sse.next_event().await;
    assert_eq!(f.id, Some(second));
    bridge.stop().await;
}

async fn resume_past_retained_history_gets_bridge_reset_then_live(backend: Backend) {
    let bridge = Bridge::on(&backend, &["--history-len", "3"]).await;
    let token = subscriber_token(TENANT);
    let (a, b) = (channel("a"), channel("b"));
    let mut p = bridge.publisher().await;
    let mut sse = bridge.subscribe(&[&a, &b], &token, None).await;
    publish(&mut p, "a", progress(1, 99)).await;
    let cursor = sse.next_event().await.id.unwrap();
    drop(sse);
    // Channel a loses events beyond its 3 retained; b keeps its one.
    for i in 0..5 {
        publish(&mut p, "a", progress(10 + i, 99)).await;
    }
    publish(&mut p, "b", progress(20, 99)).await;

    let mut again = bridge.subscribe(&[&a, &b], &token, Some(&cursor)).await;
    let reset = again.next_event().await;
    assert_eq!(reset.event.as_deref(), Some("bridge.reset"));
    assert!(
        reset.id.is_some(),
        "reset carries the cursor it continues from"
    );
    let data = reset.data_json();
    assert_eq!(data["channels"], json!([a]));
    assert!(data["reason"].as_str().is_some_and(|r| !r.is_empty()));
    // What history still holds is replayed in publish order (a's last 3,
    // then b's one); a's lost range (checked 10 and 11) is not.
    let mut checked = Vec::new();
    for _ in 0..4 {
        checked.push(again.next_event().await.data_json()["checked"].clone());
    }
    assert_eq!(checked, vec![json!(12), json!(13), json!(14), json!(20)]);
    publish(&mut p, "a", progress(30, 99)).await;
    assert_eq!(again.next_event().await.data_json()["checked"], json!(30));

    // Resuming from the reset's own id replays what is still retained; the
    // publish of 30 has since trimmed 12, which is reported again.
    let mut from_reset = bridge
        .subscribe(&[&a, &b], &token, reset.id.as_deref())
        .await;
    assert_eq!(
        from_reset.next_event().await.event.as_deref(),
        Some("bridge.reset")
    );
    let mut checked = Vec::new();
    for _ in 0..4 {
        checked.push(from_reset.next_event().await.data_json()["checked"].clone());
    }
    assert_eq!(checked, vec![json!(13), json!(14), json!(20), json!(30)]);
    bridge.stop().await;
}

async fn a_cursor_from_the_future_is_reset_not_trusted(backend: Backend) {
    let bridge = Bridge::on(&backend, &[]).await;
    let token = subscriber_token(TENANT);
    let mut sse = bridge
        .subscribe(&[&channel("f")], &token, Some("99999999999999-0"))
        .await;
    let reset = sse.next_event().await;
    assert_eq!(reset.event.as_deref(), Some("bridge.reset"));
    let mut p = bridge.publisher().await;
    let id = publish(&mut p, "f", progress(1, 1)).await;
    assert_eq!(sse.next_event().await.id, Some(id));
    bridge.stop().await;
}

async fn a_slow_reader_is_caught_up_from_history_without_loss(backend: Backend) {
    let bridge = Bridge::on(&backend, &["--stream-buffer", "4", "--history-len", "2000"]).await;
    let token = subscriber_token(TENANT);
    let mut sse = bridge.subscribe(&[&conversation("slow")], &token, None).await;
    let mut p = bridge.publisher().await;
    // The reader reads nothing until every event is published.
    for i in 0..1000 {
        publish_to(&mut p, pb_conversation(TENANT, "slow"), big(i)).await;
    }
    for i in 0..1000 {
        let f = sse.next_event().await;
        assert_eq!(f.event.as_deref(), Some("message.delta"));
        assert_eq!(seq(&f), i);
    }
    bridge.stop().await;
}

async fn a_slow_reader_beyond_history_is_told_bridge_reset(backend: Backend) {
    let bridge = Bridge::on(&backend, &["--stream-buffer", "4", "--history-len", "50"]).await;
    let token = subscriber_token(TENANT);
    let mut sse = bridge.subscribe(&[&conversation("slow")], &token, None).await;
    let mut p = bridge.publisher().await;
    for i in 0..1000 {
        publish_to(&mut p, pb_conversation(TENANT, "slow"), big(i)).await;
    }
    let end = event("message.end", json!({"message_id": TENANT}));
    let last = publish_to(&mut p, pb_conversation(TENANT, "slow"), end).await;
    // Every gap in the sequence is announced by a reset just before it.
    let mut expected = 0;
    let mut resets = 0;
    let mut reset_pending = false;
    loop {
        let f = sse.next_event().await;
        match f.event.as_deref() {
            Some("bridge.reset") => {
                resets += 1;
                reset_pending = true;
            }
            Some("message.delta") => {
                let n = seq(&f);
                assert!(n >= expected, "no duplicates or reordering");
                assert!(
                    n == expected || reset_pending,
                    "gap {expected}..{n} without bridge.reset"
                );
                reset_pending = false;
                expected = n + 1;
            }
            _ => {
                assert_eq!(f.id, Some(last));
                break;
            }
        }
    }
    assert!(resets >= 1, "the reader fell behind the history");
    bridge.stop().await;
}

async fn events_older_than_the_history_age_are_reset(backend: Backend) {
    let bridge = Bridge::on(&backend, &["--history-ttl-secs", "1"]).await;
    let token = subscriber_token(TENANT);
    let mut p = bridge.publisher().await;
    let e0 = publish(&mut p, "aged", progress(0, 9)).await;
    publish(&mut p, "aged", progress(1, 9)).await;
    // Longer than the age bound: the next publish trims both.
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let e2 = publish(&mut p, "aged", progress(2, 9)).await;
    let mut sse = bridge.subscribe(&[&channel("aged")], &token, Some(&e0)).await;
    let reset = sse.next_event().await;
    assert_eq!(reset.event.as_deref(), Some("bridge.reset"));
    // Valkey may also have expired the idle stream key by then.
    let reason = reset.data_json()["reason"].clone();
    assert!(reason == "history_trimmed" || reason == "history_lost", "{reason}");
    assert_eq!(sse.next_event().await.id, Some(e2));
    bridge.stop().await;
}
}
