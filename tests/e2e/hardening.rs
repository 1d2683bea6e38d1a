//! The holes an outside attack found (issue 15), each through the public
//! interface: absent claims, duplicate credentials, a hanging JWKS server,
//! an `exp` at the end of time, and hostile gRPC bytes.

use crate::harness::now_secs;
use serde_json::{Value, json};
use sse_bridge::proto::ssebridge::v1::publisher_client::PublisherClient;
use tonic::Code;

use crate::harness::*;
use crate::subscriber_auth::{
    JwksServer, claims_now, ed_jwk, error_of, fixture, sign, sign_kid, status_with,
};

/// The body of a JSON error answer.
async fn error_body(bridge: &Bridge, url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let r = bridge.get(url, headers).await;
    let status = r.status().as_u16();
    let body = serde_json::from_str(&r.text().await.expect("body")).expect("JSON error");
    (status, body)
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().expect("object").remove(name);
    claims
}

#[tokio::test]
async fn configured_aud_iss_and_typ_are_required_in_header_and_query() {
    let strict = [
        "--jwt-audience",
        "aud1",
        "--jwt-issuer",
        "iss1",
        "--jwt-typ",
        "access",
    ];
    let bridge = Bridge::start(&strict).await;
    let url = bridge.events_url(&[&channel("claims")]);
    let full = json!({"tenant_id": TENANT, "aud": "aud1", "iss": "iss1", "typ": "access"});
    let good = hs256(full.clone());
    assert_eq!(
        bridge
            .get(&url, &[("authorization", &format!("Bearer {good}"))])
            .await
            .status(),
        200
    );
    let aud_array =
        hs256(json!({"tenant_id": TENANT, "aud": ["x", "aud1"], "iss": "iss1", "typ": "access"}));
    assert_eq!(
        bridge
            .get(&format!("{url}access_token={aud_array}"), &[])
            .await
            .status(),
        200,
        "aud may be an array that contains the audience"
    );
    for claim in ["aud", "iss", "typ"] {
        let token = hs256(without(full.clone(), claim));
        for (how, target, headers) in [
            (
                "header",
                url.clone(),
                vec![("authorization".to_owned(), format!("Bearer {token}"))],
            ),
            ("query", format!("{url}access_token={token}"), vec![]),
        ] {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let (status, body) = error_body(&bridge, &target, &h).await;
            assert_eq!(status, 401, "no `{claim}` in the {how}: {body}");
            assert_eq!(body["error"]["code"], "unauthenticated");
            let message = body["error"]["message"].as_str().unwrap_or("");
            assert!(
                message.contains(&format!("`{claim}`")),
                "names the claim: {message}"
            );
        }
    }
    let iss_array =
        hs256(json!({"tenant_id": TENANT, "aud": "aud1", "iss": ["iss1"], "typ": "access"}));
    assert_eq!(
        error_of(
            &bridge,
            &url,
            &[("authorization", &format!("Bearer {iss_array}"))]
        )
        .await,
        (401, "unauthenticated".into()),
        "iss must be a string"
    );
    bridge.stop().await;

    // The same with RS256 and a public key.
    let mut rsa = vec!["--jwt-public-key".to_owned(), fixture("rsa_public.pem")];
    rsa.extend(strict.iter().map(|s| s.to_string()));
    let rsa: Vec<&str> = rsa.iter().map(String::as_str).collect();
    let bridge = Bridge::start(&rsa).await;
    let url = bridge.events_url(&[&channel("claims")]);
    let exp = json!(now_secs() + 600);
    let mut full = full;
    full["exp"] = exp;
    let rs = |c: Value| sign("rsa_private.pem", jsonwebtoken::Algorithm::RS256, c);
    assert_eq!(
        bridge
            .get(
                &url,
                &[("authorization", &format!("Bearer {}", rs(full.clone())))]
            )
            .await
            .status(),
        200
    );
    for claim in ["aud", "iss", "typ"] {
        let token = rs(without(full.clone(), claim));
        let (status, body) = error_body(&bridge, &format!("{url}access_token={token}"), &[]).await;
        assert_eq!(status, 401, "RS256 without `{claim}`: {body}");
    }
    bridge.stop().await;
}

#[tokio::test]
async fn fractional_and_far_numeric_dates() {
    let bridge = Bridge::start(&[]).await;
    let url = bridge.events_url(&[&channel("dates")]);
    let fractional = hs256(json!({"tenant_id": TENANT, "exp": now_secs() as f64 + 600.5}));
    assert_eq!(
        bridge
            .get(&url, &[("authorization", &format!("Bearer {fractional}"))])
            .await
            .status(),
        200,
        "RFC 7519 allows a fractional NumericDate"
    );
    let text = hs256(json!({"tenant_id": TENANT, "exp": "tomorrow"}));
    let (status, body) = error_body(
        &bridge,
        &url,
        &[("authorization", &format!("Bearer {text}"))],
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("exp"),
        "{body}"
    );

    // An `exp` at the end of time: the stream opens and delivers (before,
    // its timer overflowed and the stream task panicked).
    for exp in [json!(u64::MAX), json!(u64::MAX - 1), json!(1e300)] {
        let token = hs256(json!({"tenant_id": TENANT, "exp": exp}));
        let mut sse = bridge.subscribe(&[&channel("dates")], &token, None).await;
        let mut publisher = bridge.publisher().await;
        let id = publish(&mut publisher, "dates", progress(1, 2)).await;
        assert_eq!(
            sse.next_event().await.id.as_deref(),
            Some(id.as_str()),
            "exp {exp}"
        );
    }
    bridge.stop().await;
}

#[tokio::test]
async fn several_authorization_headers_are_refused() {
    let bridge = Bridge::start(&[]).await;
    let good = subscriber_token(TENANT);
    let url = bridge.events_url(&[&channel("dup")]);
    let bearer = format!("Bearer {good}");
    for (what, first, second) in [
        ("two valid", bearer.as_str(), bearer.as_str()),
        ("an empty one then a valid one", "", bearer.as_str()),
        ("a valid one then a bad one", bearer.as_str(), "Bearer x"),
    ] {
        let (status, body) = error_body(
            &bridge,
            &format!("{url}access_token={good}"),
            &[("authorization", first), ("authorization", second)],
        )
        .await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"]["code"], "duplicate_authorization", "{what}");
    }
    // One empty header still falls back to the query token.
    let r = bridge
        .get(
            &format!("{url}access_token={good}"),
            &[("authorization", "")],
        )
        .await;
    assert_eq!(r.status(), 200);

    // gRPC: two `authorization` entries are UNAUTHENTICATED.
    let token = publisher_token(&["*"]);
    let mut raw = PublisherClient::connect(bridge.grpc.clone())
        .await
        .expect("connect");
    let mut request = tonic::Request::new(sse_bridge::client::request(
        pb_channel(TENANT, "dup"),
        progress(1, 2),
        "",
    ));
    for _ in 0..2 {
        request
            .metadata_mut()
            .append("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let status = raw.publish(request).await.expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("authorization"), "{status:?}");
    bridge.stop().await;
}

/// Publishes once with `token`; the status code of the answer.
async fn publish_code(bridge: &Bridge, token: &str) -> (Code, String) {
    let mut client = bridge.publisher_with(token).await;
    match client
        .publish(sse_bridge::client::request(
            pb_channel(TENANT, "pub-claims"),
            progress(1, 2),
            "",
        ))
        .await
    {
        Ok(_) => (Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_owned()),
    }
}

fn publisher_claims(extra: Value) -> Value {
    let mut c = json!({"sub": "svc", "scope": "events:publish", "tenants": ["*"]});
    for (k, v) in extra.as_object().expect("object") {
        c[k] = v.clone();
    }
    c
}

#[tokio::test]
async fn publisher_tokens_have_their_own_required_claims() {
    let bridge = Bridge::start(&[
        "--jwt-typ",
        "access",
        "--publisher-jwt-audience",
        "bridge-publish",
        "--publisher-jwt-issuer",
        "https://auth.example.com",
    ])
    .await;
    let good = json!({"aud": "bridge-publish", "iss": "https://auth.example.com"});
    assert_eq!(
        publish_code(&bridge, &hs256(publisher_claims(good.clone())))
            .await
            .0,
        Code::Ok
    );
    for claim in ["aud", "iss"] {
        let (code, message) = publish_code(
            &bridge,
            &hs256(publisher_claims(without(good.clone(), claim))),
        )
        .await;
        assert_eq!(code, Code::Unauthenticated, "no `{claim}`: {message}");
        assert!(message.contains(&format!("`{claim}`")), "{message}");
    }
    let mut wrong = good.clone();
    wrong["aud"] = json!("browser");
    assert_eq!(
        publish_code(&bridge, &hs256(publisher_claims(wrong)))
            .await
            .0,
        Code::Unauthenticated
    );
    // The publisher key is the subscriber key here: a token of the
    // subscriber type cannot publish, whatever else it carries.
    let mut subscriber_typed = good;
    subscriber_typed["typ"] = json!("access");
    let (code, message) = publish_code(&bridge, &hs256(publisher_claims(subscriber_typed))).await;
    assert_eq!(code, Code::Unauthenticated, "{message}");
    assert!(message.contains("typ"), "{message}");
    // A scope separated by another kind of space is no scope at all.
    let nbsp = json!({"scope": "read\u{a0}events:publish", "aud": "bridge-publish", "iss": "https://auth.example.com"});
    assert_eq!(
        publish_code(&bridge, &hs256(publisher_claims(nbsp)))
            .await
            .0,
        Code::PermissionDenied
    );
    bridge.stop().await;
}

#[tokio::test]
async fn a_hanging_jwks_server_never_delays_known_keys() {
    use jsonwebtoken::Algorithm::EdDSA;
    let server = JwksServer::start(json!({"keys": [ed_jwk("a")]})).await;
    let bridge = Bridge::start(&["--jwt-jwks", &server.url]).await;
    let known = sign_kid("ed_private.pem", EdDSA, Some("a"), claims_now());
    assert_eq!(status_with(&bridge, &known).await.0, 200);

    // The identity provider hangs; a token with an unknown kid starts a
    // fetch that will not come back before the fetch timeout.
    server.hang.store(true, std::sync::atomic::Ordering::SeqCst);
    let unknown = sign_kid("ed_private.pem", EdDSA, Some("new"), claims_now());
    let http = bridge.http.clone();
    let stalled = tokio::spawn(async move {
        let probe = Bridge {
            running: None,
            http,
            grpc: String::new(),
        };
        status_with(&probe, &unknown).await
    });
    while server.fetches() < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Meanwhile tokens with a known kid are answered at once: before, each
    // waited for the hanging fetch.
    for _ in 0..3 {
        assert_eq!(status_with(&bridge, &known).await.0, 200);
    }
    assert!(
        !stalled.is_finished(),
        "the known-kid requests were answered while the fetch still hung"
    );
    // The unknown kid is refused once its fetch gives up; further unknown
    // kids do not start more fetches.
    assert_eq!(stalled.await.expect("task").0, 401);
    let another = sign_kid("ed_private.pem", EdDSA, Some("other"), claims_now());
    assert_eq!(status_with(&bridge, &another).await.0, 401);
    assert_eq!(server.fetches(), 2, "refetches stay rate limited");
    bridge.stop().await;
}

/// Sends bytes as they are, so a test can put anything on the wire.
#[derive(Clone, Copy, Default)]
struct Raw;

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Calls `method` of the publisher with `bodies` as the request messages,
/// unary for `Publish`, streaming for `PublishStream`; the call's status.
async fn raw_call(bridge: &Bridge, method: &'static str, bodies: Vec<Vec<u8>>) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(bridge.grpc.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static(method);
    let token: tonic::metadata::MetadataValue<_> = format!("Bearer {}", publisher_token(&["*"]))
        .parse()
        .unwrap();
    if method.ends_with("/Publish") {
        let mut request = tonic::Request::new(bodies.into_iter().next().expect("one body"));
        request.metadata_mut().insert("authorization", token);
        return grpc.unary(request, path, Raw).await.expect_err("refused");
    }
    let mut request = tonic::Request::new(futures::stream::iter(bodies));
    request.metadata_mut().insert("authorization", token);
    let mut answers = match grpc.streaming(request, path, Raw).await {
        Ok(r) => r.into_inner(),
        Err(status) => return status,
    };
    loop {
        match answers.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without an error"),
            Err(status) => return status,
        }
    }
}

#[tokio::test]
async fn oversized_and_undecodable_requests_get_the_contract_codes() {
    let bridge = Bridge::start(&[]).await;
    let publish = "/ssebridge.v1.Publisher/Publish";
    let stream = "/ssebridge.v1.Publisher/PublishStream";
    // A varint that never ends is no PublishRequest.
    let garbage = vec![0xff, 0xff, 0xff];
    for method in [publish, stream] {
        let status = raw_call(&bridge, method, vec![garbage.clone()]).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{method}: {status:?}");
        assert!(status.message().contains("protobuf"), "{status:?}");
    }
    // 2 MB in one request message, far over the transport's limit.
    let huge = prost::Message::encode_to_vec(&sse_bridge::client::request(
        pb_channel(TENANT, "huge"),
        progress(1, 2),
        &"k".repeat(2 << 20),
    ));
    for method in [publish, stream] {
        let status = raw_call(&bridge, method, vec![huge.clone()]).await;
        assert_eq!(
            status.code(),
            Code::ResourceExhausted,
            "{method}: {status:?}"
        );
    }
    // The generated client gets the same.
    let mut publisher = bridge.publisher().await;
    let status = publisher
        .publish(sse_bridge::client::request(
            pb_channel(TENANT, "huge"),
            progress(1, 2),
            &"k".repeat(2 << 20),
        ))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // And the bridge still serves.
    assert_eq!(
        publish_code(&bridge, &publisher_token(&["*"])).await.0,
        Code::Ok
    );
    bridge.stop().await;
}

#[tokio::test]
async fn a_stale_key_set_is_served_while_one_refresh_runs() {
    use jsonwebtoken::Algorithm::EdDSA;
    let server = JwksServer::start(json!({"keys": [ed_jwk("a")]})).await;
    let bridge = Bridge::start(&["--jwt-jwks", &server.url, "--jwt-jwks-max-age-secs", "1"]).await;
    let known = sign_kid("ed_private.pem", EdDSA, Some("a"), claims_now());
    assert_eq!(status_with(&bridge, &known).await.0, 200);
    // The set goes stale while the identity provider hangs.
    server.hang.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // Each of these finds the set stale: they are answered from it, and
    // together start one background refresh, not one each. Tokens of their
    // own: one the node verified before would not consult the set at all.
    for i in 0..5 {
        let mut claims = claims_now();
        claims["jti"] = json!(format!("stale-{i}"));
        let token = sign_kid("ed_private.pem", EdDSA, Some("a"), claims);
        assert_eq!(status_with(&bridge, &token).await.0, 200);
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.fetches() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no background refresh"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(server.fetches(), 2, "one refresh at a time");
    bridge.stop().await;
}

/// A request line HTTP does not allow (a placeholder left in the URL, sent
/// raw as some clients do) gets a 400 with the JSON error body, not hyper's
/// empty one.
#[tokio::test]
async fn a_malformed_request_line_gets_the_json_error_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bridge = Bridge::start(&[]).await;
    let addr = bridge.http.trim_start_matches("http://").to_owned();
    for target in ["/v1/events?channel=<tenant>", "/healthz?x=\"y\""] {
        let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
        socket
            .write_all(format!("GET {target} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(PATIENCE, socket.read_to_string(&mut answer))
            .await
            .expect("answered and closed")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(json["error"]["code"], "bad_request", "{answer}");
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("percent-encoded")),
            "{answer}"
        );
    }
    bridge.stop().await;
}
