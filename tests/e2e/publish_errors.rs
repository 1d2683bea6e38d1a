//! Every rejection of the publish API with its exact gRPC status, and the
//! field path in `google.rpc.BadRequest`.

use serde_json::json;
use sse_bridge::client;
use sse_bridge::proto::events::v1::Event;
use sse_bridge::proto::events::v1::event::Payload;
use sse_bridge::proto::ssebridge::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

use crate::harness::*;

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

async fn status_of(bridge: &Bridge, token: &str, req: pb::PublishRequest) -> tonic::Status {
    let mut p = bridge.publisher_with(token).await;
    p.publish(req).await.expect_err("publish must fail")
}

#[tokio::test]
async fn malformed_channels_are_invalid_argument_with_the_field() {
    let bridge = Bridge::start(&[]).await;
    let token = publisher_token(&["*"]);
    let long = "r".repeat(129);
    let cases = [
        (client::channel("Scans", TENANT, "a"), "channel.prefix"),
        (
            client::channel("scans", "tenant-1", "a"),
            "channel.tenant_id",
        ),
        (
            client::channel("scans", TENANT, "a:b"),
            "channel.resource_id",
        ),
        (client::channel("sc:ans", TENANT, "a"), "channel.prefix"),
        (
            client::channel("scans", TENANT, &long),
            "channel.resource_id",
        ),
        (client::channel("scans", TENANT, ""), "channel.resource_id"),
    ];
    for (ch, field) in cases {
        let s = status_of(
            &bridge,
            &token,
            client::request(ch.clone(), progress(1, 2), ""),
        )
        .await;
        assert_eq!(s.code(), Code::InvalidArgument, "{ch:?}");
        assert_eq!(violations(&s), vec![field.to_owned()], "{ch:?}");
    }
    let no_channel = pb::PublishRequest {
        channel: None,
        event: Some(progress(1, 2)),
        idempotency_key: String::new(),
    };
    assert_eq!(
        status_of(&bridge, &token, no_channel).await.code(),
        Code::InvalidArgument
    );
    bridge.stop().await;
}

#[tokio::test]
async fn schema_and_field_rule_violations() {
    let bridge = Bridge::start(&[]).await;
    let token = publisher_token(&["*"]);
    let ch = || pb_channel(TENANT, "r");
    let empty = status_of(
        &bridge,
        &token,
        client::request(ch(), Event { payload: None }, ""),
    )
    .await;
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert_eq!(violations(&empty), vec!["event.payload".to_owned()]);
    // The server reads the event as bytes: an absent one stays apart from
    // an empty one.
    let absent = pb::PublishRequest {
        channel: Some(ch()),
        event: None,
        idempotency_key: String::new(),
    };
    let absent = status_of(&bridge, &token, absent).await;
    assert_eq!(absent.code(), Code::InvalidArgument);
    assert_eq!(violations(&absent), vec!["event".to_owned()]);

    let cases = [
        (progress(11, 10), vec!["event.scan_progress.checked"]),
        (
            event(
                "scan.progress",
                json!({"scan_id": "not-a-uuid", "checked": 1, "total": 2}),
            ),
            vec!["event.scan_progress.scan_id"],
        ),
        (
            event(
                "scan.error",
                json!({"scan_id": TENANT, "code": "", "detail": ""}),
            ),
            vec!["event.scan_error.code", "event.scan_error.detail"],
        ),
        // Whitespace is not a value.
        (
            event(
                "scan.error",
                json!({"scan_id": TENANT, "code": "   ", "detail": "\t\n"}),
            ),
            vec!["event.scan_error.code", "event.scan_error.detail"],
        ),
        (
            event(
                "message.error",
                json!({"code": "x".repeat(65), "detail": "d"}),
            ),
            vec!["event.message_error.code"],
        ),
        (
            event("message.end", json!({})),
            vec!["event.message_end.message_id"],
        ),
        (
            event(
                "tool_call.start",
                json!({"tool_call_id": TENANT, "tool_name": ""}),
            ),
            vec!["event.tool_call_start.tool_name"],
        ),
    ];
    // A UUID reaches browsers in one form only: the other spellings the
    // uuid crate parses are refused, naming the canonical one.
    let canonical = TENANT;
    let spellings = [
        format!("{{{canonical}}}"),
        format!("urn:uuid:{canonical}"),
        canonical.replace('-', ""),
        canonical.to_uppercase(),
    ];
    for spelling in &spellings {
        let ev = event(
            "scan.progress",
            json!({"scan_id": spelling, "checked": 1, "total": 2}),
        );
        let s = status_of(&bridge, &token, client::request(ch(), ev, "")).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{spelling}");
        assert_eq!(
            violations(&s),
            vec!["event.scan_progress.scan_id".to_owned()]
        );
        let description = s
            .get_details_bad_request()
            .map(|b| b.field_violations[0].description.clone())
            .unwrap_or_default();
        assert!(description.contains(canonical), "{description}");
    }
    for (ev, fields) in cases {
        // Each event to a prefix it declares: only its payload is wrong.
        let to = match &ev.payload {
            Some(
                Payload::MessageDelta(_)
                | Payload::MessageEnd(_)
                | Payload::MessageError(_)
                | Payload::ToolCallStart(_)
                | Payload::ToolCallEnd(_),
            ) => pb_conversation(TENANT, "r"),
            _ => ch(),
        };
        let s = status_of(&bridge, &token, client::request(to, ev, "")).await;
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(violations(&s), fields, "{}", s.message());
        for f in &fields {
            assert!(
                s.message().contains(f),
                "message names {f}: {}",
                s.message()
            );
        }
    }
    bridge.stop().await;
}

#[tokio::test]
async fn payload_over_the_limit_is_resource_exhausted_before_rules() {
    let bridge = Bridge::start(&["--max-payload-bytes", "1024"]).await;
    let token = publisher_token(&["*"]);
    // Also breaks a field rule: size is checked first.
    let big = event(
        "message.error",
        json!({"code": "", "detail": "d".repeat(2000)}),
    );
    let s = status_of(
        &bridge,
        &token,
        client::request(pb_conversation(TENANT, "r"), big, ""),
    )
    .await;
    assert_eq!(s.code(), Code::ResourceExhausted, "{}", s.message());
    let fits = event("message.delta", json!({"content": "d".repeat(900)}));
    let mut p = bridge.publisher().await;
    assert!(
        p.publish(client::request(pb_conversation(TENANT, "r"), fits, ""))
            .await
            .is_ok()
    );
    bridge.stop().await;
}

#[tokio::test]
async fn publisher_tokens_scope_and_tenants() {
    let bridge = Bridge::start(&[]).await;
    let req = |tenant: &str| client::request(pb_channel(tenant, "r"), progress(1, 2), "");

    // No token at all.
    let transport = tonic::transport::Endpoint::from_shared(bridge.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut anonymous =
        sse_bridge::proto::ssebridge::v1::publisher_client::PublisherClient::new(transport);
    assert_eq!(
        anonymous.publish(req(TENANT)).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    assert_eq!(
        status_of(&bridge, "garbage", req(TENANT)).await.code(),
        Code::Unauthenticated
    );
    let expired = hs256(json!({"scope": "events:publish", "tenants": ["*"], "exp": 1}));
    assert_eq!(
        status_of(&bridge, &expired, req(TENANT)).await.code(),
        Code::Unauthenticated
    );

    // Missing or insufficient scope.
    let no_scope = hs256(json!({"tenants": ["*"]}));
    assert_eq!(
        status_of(&bridge, &no_scope, req(TENANT)).await.code(),
        Code::PermissionDenied
    );
    let other_scope = hs256(json!({"scope": "events:read streams:admin", "tenants": ["*"]}));
    assert_eq!(
        status_of(&bridge, &other_scope, req(TENANT)).await.code(),
        Code::PermissionDenied
    );
    // A subscriber token cannot publish.
    assert_eq!(
        status_of(&bridge, &subscriber_token(TENANT), req(TENANT))
            .await
            .code(),
        Code::PermissionDenied
    );

    // Tenant list: allowed tenant works, another is denied.
    let only_mine = publisher_token(&[TENANT]);
    let mut p = bridge.publisher_with(&only_mine).await;
    assert!(p.publish(req(TENANT)).await.is_ok());
    assert!(p.publish(req(&TENANT.to_uppercase())).await.is_ok());
    let denied = p.publish(req(OTHER_TENANT)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    // Scope among several space-separated scopes works.
    let multi = hs256(json!({"scope": "streams:admin events:publish", "tenants": [TENANT]}));
    assert!(
        bridge
            .publisher_with(&multi)
            .await
            .publish(req(TENANT))
            .await
            .is_ok()
    );
    bridge.stop().await;
}

#[tokio::test]
async fn a_publish_stream_ends_when_its_token_expires() {
    let bridge = Bridge::start(&[]).await;
    let exp = crate::harness::now_secs() + 2;
    let token = hs256(json!({"scope": "events:publish", "tenants": ["*"], "exp": exp}));
    let mut p = bridge.publisher_with(&token).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut responses = p
        .publish_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let req = || client::request(pb_channel(TENANT, "x"), progress(1, 2), "");
    tx.send(req()).await.unwrap();
    let first = responses.message().await.unwrap().unwrap();
    assert!(first.error.is_none());
    // Past the token's exp (whole seconds), the next item ends the stream.
    while crate::harness::now_secs() < exp {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tx.send(req()).await.unwrap();
    let ended = responses.message().await.unwrap_err();
    assert_eq!(ended.code(), Code::Unauthenticated, "{}", ended.message());
    bridge.stop().await;
}

/// An enum number the enum does not define is refused, naming the field
/// and the allowed names: browsers would otherwise get a number where the
/// generated types promise a name.
#[tokio::test]
async fn an_enum_number_outside_the_enum_is_invalid_argument() {
    use sse_bridge::proto::events::v1::{ScanEnd, event::Payload};
    let bridge = Bridge::start(&[]).await;
    let token = publisher_token(&["*"]);
    let end = |state: i32| Event {
        payload: Some(Payload::ScanEnd(ScanEnd {
            scan_id: TENANT.to_owned(),
            state,
            findings: 1,
            duration_ms: 2,
        })),
    };
    let s = status_of(
        &bridge,
        &token,
        client::request(pb_channel(TENANT, "e"), end(42), ""),
    )
    .await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(violations(&s), ["event.scan_end.state"]);
    assert!(
        s.message().contains("SCAN_STATE_COMPLETED") && s.message().contains("got 42"),
        "{}",
        s.message()
    );
    let mut sse = bridge
        .subscribe(&[&channel("e")], &subscriber_token(TENANT), None)
        .await;
    let mut p = bridge.publisher_with(&token).await;
    publish(&mut p, "e", end(2)).await;
    assert_eq!(
        sse.next_event().await.data_json()["state"],
        "SCAN_STATE_FAILED",
        "a defined value is sent by name"
    );
    bridge.stop().await;
}

/// Typed channels: an event goes only to the prefixes it declares. Any other
/// prefix, one no event declares included, is INVALID_ARGUMENT with a
/// violation on `channel.prefix` naming the allowed ones; an event declared
/// for two prefixes goes to both.
#[tokio::test]
async fn an_event_to_a_prefix_it_does_not_declare_is_invalid_argument() {
    let bridge = Bridge::start(&[]).await;
    let token = publisher_token(&["*"]);
    let delta = || event("message.delta", json!({"content": "hi"}));
    for prefix in ["scans", "scan", "findings"] {
        let s = status_of(
            &bridge,
            &token,
            client::request(client::channel(prefix, TENANT, "r"), delta(), ""),
        )
        .await;
        assert_eq!(s.code(), Code::InvalidArgument, "{prefix}: {}", s.message());
        assert_eq!(violations(&s), ["channel.prefix"], "{}", s.message());
        assert!(
            s.message().contains("`conversations`")
                && s.message().contains(&format!("got `{prefix}`")),
            "{}",
            s.message()
        );
    }
    let mut p = bridge.publisher().await;
    p.publish(client::request(pb_conversation(TENANT, "r"), delta(), ""))
        .await
        .expect("message.delta goes to conversations");
    let finding = || {
        event(
            "finding.created",
            json!({"finding_id": TENANT, "title": "t", "severity": "SEVERITY_LOW"}),
        )
    };
    for prefix in ["findings", "scans"] {
        p.publish(client::request(
            client::channel(prefix, TENANT, "f"),
            finding(),
            "",
        ))
        .await
        .unwrap_or_else(|e| panic!("finding.created to {prefix}: {e}"));
    }
    bridge.stop().await;
}
