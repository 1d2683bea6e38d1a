//! `Disconnect`: matching streams on every node get `bridge.revoked` and
//! close; tokens issued before the order cannot reopen them.

use serde_json::json;
use sse_bridge::proto::ssebridge::v1 as pb;
use sse_bridge::token;
use tonic::Code;

use crate::harness::*;

/// A subscriber token issued a few seconds ago (so an order given now is
/// strictly after it).
fn old_token(subject: &str) -> String {
    hs256(json!({
        "tenant_id": TENANT,
        "sub": subject,
        "iat": crate::harness::now_secs() - 5,
    }))
}

fn admin_token(scope: &str, tenants: &[&str]) -> String {
    let tenants: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
    token::mint(SECRET, token::publisher_claims("ops", scope, &tenants), 600).unwrap()
}

fn subject(subject: &str, tenant: &str) -> pb::DisconnectRequest {
    pb::DisconnectRequest {
        target: Some(pb::disconnect_request::Target::Subject(pb::SubjectTarget {
            subject: subject.to_owned(),
            tenant_id: tenant.to_owned(),
        })),
        reason: "logged out".to_owned(),
    }
}

async fn expect_revoked(sse: &mut Sse, reason: &str) {
    let f = sse.next_event().await;
    assert_eq!(f.event.as_deref(), Some("bridge.revoked"), "{f:?}");
    assert_eq!(f.data_json(), json!({"reason": reason}));
    assert_eq!(f.id, None);
    assert!(
        sse.next_frame().await.is_none(),
        "the stream closes after it"
    );
}

#[tokio::test]
async fn disconnect_by_subject_closes_its_streams_on_every_node() {
    let backend = Backend::valkey();
    let a = Bridge::on(&backend, &[]).await;
    let b = Bridge::on(&backend, &[]).await;
    let ch = channel("revoke");
    let mut alice_a = a.subscribe(&[&ch], &old_token("alice"), None).await;
    let mut alice_b = b.subscribe(&[&ch], &old_token("alice"), None).await;
    let mut bob_b = b.subscribe(&[&ch], &old_token("bob"), None).await;

    let mut admin = a
        .publisher_with(&admin_token("streams:admin", &["*"]))
        .await;
    let reply = admin.disconnect(subject("alice", "")).await.unwrap();
    assert_eq!(reply.into_inner().nodes, 2, "both nodes got the order");
    expect_revoked(&mut alice_a, "logged out").await;
    expect_revoked(&mut alice_b, "logged out").await;

    // Others are untouched.
    let mut publisher = a.publisher().await;
    let id = publish(&mut publisher, "revoke", progress(1, 2)).await;
    assert_eq!(bob_b.next_event().await.id, Some(id));

    // The old token cannot reopen, on either node; a fresh one can.
    for node in [&a, &b] {
        let auth = format!("Bearer {}", old_token("alice"));
        let refused = node
            .get(&node.events_url(&[&ch]), &[("authorization", &auth)])
            .await;
        assert_eq!(refused.status(), 401);
        let body: serde_json::Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "token_revoked", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("logged out"),
            "{body}"
        );
    }
    let fresh = token::mint(
        SECRET,
        token::subscriber_claims("tenant_id", TENANT, "alice"),
        600,
    )
    .unwrap();
    a.subscribe(&[&ch], &fresh, None).await;
    a.stop().await;
    b.stop().await;
}

/// A stream with nothing to write for a second sleeps in its channel's
/// slot, with no task of its own (see `asleep.rs`): an order reaches it as
/// it reaches a stream awake, and the stream beside it stays.
#[tokio::test]
async fn a_revocation_reaches_a_stream_asleep() {
    let bridge = Bridge::start(&[]).await;
    let ch = channel("revoke-asleep");
    let mut alice = bridge.subscribe(&[&ch], &old_token("alice"), None).await;
    let mut bob = bridge.subscribe(&[&ch], &old_token("bob"), None).await;
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let mut admin = bridge
        .publisher_with(&admin_token("streams:admin", &["*"]))
        .await;
    admin.disconnect(subject("alice", "")).await.unwrap();
    expect_revoked(&mut alice, "logged out").await;
    let mut publisher = bridge.publisher().await;
    let id = publish(&mut publisher, "revoke-asleep", progress(1, 1)).await;
    assert_eq!(bob.next_event().await.id, Some(id));
    bridge.stop().await;
}

crate::on_both_buses! {
    async fn disconnect_by_tenant_and_by_channel(backend: Backend) {
        let bridge = Bridge::on(&backend, &[]).await;
        let mut admin = bridge
            .publisher_with(&admin_token("streams:admin", &[TENANT]))
            .await;
        let (one, two) = (channel("one"), channel("two"));
        let mut on_one = bridge.subscribe(&[&one], &old_token("u"), None).await;
        let mut on_both = bridge.subscribe(&[&one, &two], &old_token("u"), None).await;
        let mut on_two = bridge.subscribe(&[&two], &old_token("u"), None).await;

        let by_channel = pb::DisconnectRequest {
            target: Some(pb::disconnect_request::Target::Channel(pb_channel(TENANT, "one"))),
            reason: String::new(),
        };
        admin.disconnect(by_channel).await.unwrap();
        expect_revoked(&mut on_one, "revoked").await;
        expect_revoked(&mut on_both, "revoked").await;
        let mut publisher = bridge.publisher().await;
        let id = publish(&mut publisher, "two", progress(1, 2)).await;
        assert_eq!(on_two.next_event().await.id, Some(id), "other channels stay open");

        let by_tenant = pb::DisconnectRequest {
            target: Some(pb::disconnect_request::Target::TenantId(TENANT.to_owned())),
            reason: "tenant suspended".to_owned(),
        };
        admin.disconnect(by_tenant).await.unwrap();
        expect_revoked(&mut on_two, "tenant suspended").await;
        bridge.stop().await;
    }
}

#[tokio::test]
async fn disconnect_errors_have_exact_codes() {
    let bridge = Bridge::start(&[]).await;
    let mut publisher_only = bridge.publisher().await;
    let err = publisher_only
        .disconnect(subject("alice", TENANT))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("streams:admin"), "{}", err.message());

    let mut scoped = bridge
        .publisher_with(&admin_token("streams:admin", &[TENANT]))
        .await;
    let other = pb::DisconnectRequest {
        target: Some(pb::disconnect_request::Target::TenantId(
            OTHER_TENANT.to_owned(),
        )),
        reason: String::new(),
    };
    assert_eq!(
        scoped.disconnect(other).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let everywhere = scoped.disconnect(subject("alice", "")).await.unwrap_err();
    assert_eq!(everywhere.code(), Code::PermissionDenied);
    assert!(
        everywhere.message().contains("[\"*\"]"),
        "{}",
        everywhere.message()
    );
    scoped.disconnect(subject("alice", TENANT)).await.unwrap();

    let invalid = [
        (pb::DisconnectRequest::default(), "target"),
        (
            pb::DisconnectRequest {
                target: Some(pb::disconnect_request::Target::TenantId("nope".into())),
                reason: String::new(),
            },
            "tenant_id",
        ),
        (
            pb::DisconnectRequest {
                reason: "a\nb".into(),
                ..subject("alice", TENANT)
            },
            "reason",
        ),
        (subject("", TENANT), "subject.subject"),
        (
            pb::DisconnectRequest {
                target: Some(pb::disconnect_request::Target::Channel(pb_channel(
                    TENANT, "a:b",
                ))),
                reason: String::new(),
            },
            "channel",
        ),
    ];
    for (request, field) in invalid {
        let err = scoped.disconnect(request).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{field}: {}",
            err.message()
        );
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    }

    let mut nobody = sse_bridge::proto::ssebridge::v1::publisher_client::PublisherClient::connect(
        bridge.grpc.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        nobody
            .disconnect(subject("alice", TENANT))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    bridge.stop().await;
}
