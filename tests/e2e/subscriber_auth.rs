//! Subscriber authentication, request shape and tenancy, in that order, each
//! with its exact status and error code.

use serde_json::{Value, json};
use sse_bridge::token::now_secs;

use crate::harness::*;

async fn error_of(bridge: &Bridge, url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let r = bridge.get(url, headers).await;
    let status = r.status().as_u16();
    let body: Value =
        serde_json::from_str(&r.text().await.expect("body")).expect("JSON error body");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned();
    assert!(
        !body["error"]["message"].as_str().unwrap_or("").is_empty(),
        "error has a message: {body}"
    );
    (status, code)
}

#[tokio::test]
async fn missing_and_header_over_query_tokens() {
    let bridge = Bridge::start(&[]).await;
    let good = subscriber_token(TENANT);
    let url = bridge.events_url(&[&channel("x")]);
    assert_eq!(
        error_of(&bridge, &url, &[]).await,
        (401, "unauthenticated".into())
    );

    // A valid query token alone is accepted.
    let q = format!("{url}access_token={good}");
    assert_eq!(bridge.get(&q, &[]).await.status(), 200);
    // An invalid header wins over a valid query token.
    assert_eq!(
        error_of(&bridge, &q, &[("authorization", "Bearer not-a-jwt")]).await,
        (401, "unauthenticated".into())
    );
    assert_eq!(
        error_of(&bridge, &q, &[("authorization", "Basic dXNlcjpwYXNz")])
            .await
            .0,
        401
    );
    bridge.stop().await;
}

#[tokio::test]
async fn bad_hs256_tokens_are_401() {
    let bridge = Bridge::start(&[]).await;
    let url = bridge.events_url(&[&channel("x")]);
    let now = now_secs();
    let other_key =
        sse_bridge::token::mint("another-secret", claims(json!({"tenant_id": TENANT})), 600)
            .unwrap();
    let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64url(
        json!({"tenant_id": TENANT, "exp": now + 600})
            .to_string()
            .as_bytes(),
    );
    let alg_none = format!("{header}.{payload}.");
    let cases = [
        (
            "expired",
            hs256(json!({"tenant_id": TENANT, "exp": now - 1})),
        ),
        (
            "not yet valid",
            hs256(json!({"tenant_id": TENANT, "nbf": now + 300})),
        ),
        ("wrong signature", other_key),
        ("alg none", alg_none),
        ("no tenant claim", hs256(json!({"sub": "u"}))),
        ("non-UUID tenant", hs256(json!({"tenant_id": "acme"}))),
    ];
    for (what, token) in cases {
        let auth = format!("Bearer {token}");
        assert_eq!(
            error_of(&bridge, &url, &[("authorization", &auth)]).await,
            (401, "unauthenticated".into()),
            "{what}"
        );
    }
    bridge.stop().await;
}

fn base64url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn sign(private_pem: &str, alg: jsonwebtoken::Algorithm, claims: Value) -> String {
    let pem = std::fs::read(fixture(private_pem)).unwrap();
    let key = match alg {
        jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(&pem),
        jsonwebtoken::Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(&pem),
        _ => jsonwebtoken::EncodingKey::from_ed_pem(&pem),
    }
    .unwrap();
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = None;
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// Claims as Django REST SimpleJWT issues an access token.
fn simplejwt(now: u64) -> Value {
    json!({
        "token_type": "access",
        "typ": "access",
        "sub": "8c6b4f0e-5b55-4a5e-9c7c-2a1f3e4d5c6b",
        "user_id": "8c6b4f0e-5b55-4a5e-9c7c-2a1f3e4d5c6b",
        "tenant_id": TENANT,
        "jti": "0f3d7e9a1b2c4d5e",
        "iat": now,
        "nbf": now,
        "exp": now + 1800,
        "aud": "https://api.example.com",
        "iss": "https://auth.example.com",
    })
}

#[tokio::test]
async fn simplejwt_rs256_tokens_and_their_claim_checks() {
    let key = fixture("rsa_public.pem");
    let bridge = Bridge::start(&[
        "--jwt-public-key",
        &key,
        "--jwt-audience",
        "https://api.example.com",
        "--jwt-issuer",
        "https://auth.example.com",
        "--jwt-typ",
        "access",
    ])
    .await;
    let url = bridge.events_url(&[&channel("x")]);
    let now = now_secs();
    let rs = |c: Value| sign("rsa_private.pem", jsonwebtoken::Algorithm::RS256, c);
    let good = rs(simplejwt(now));
    let r = bridge
        .get(&url, &[("authorization", &format!("Bearer {good}"))])
        .await;
    assert_eq!(
        r.status(),
        200,
        "a SimpleJWT access token is accepted unchanged"
    );

    let with = |k: &str, v: Value| {
        let mut c = simplejwt(now);
        c[k] = v;
        rs(c)
    };
    let cases = [
        ("wrong aud", with("aud", json!("https://other.example.com"))),
        ("wrong iss", with("iss", json!("https://evil.example.com"))),
        ("wrong typ", with("typ", json!("refresh"))),
        ("expired", with("exp", json!(now - 5))),
        ("not yet valid", with("nbf", json!(now + 120))),
        ("HS256 with the public key as secret", {
            let pem = std::fs::read_to_string(&key).unwrap();
            sse_bridge::token::mint(&pem, claims(simplejwt(now)), 600).unwrap()
        }),
        (
            "signed by another key type",
            sign(
                "ec_private.pem",
                jsonwebtoken::Algorithm::ES256,
                simplejwt(now),
            ),
        ),
    ];
    for (what, token) in cases {
        let auth = format!("Bearer {token}");
        assert_eq!(
            error_of(&bridge, &url, &[("authorization", &auth)]).await,
            (401, "unauthenticated".into()),
            "{what}"
        );
    }
    bridge.stop().await;
}

#[tokio::test]
async fn es256_and_eddsa_public_keys() {
    for (public, private, alg) in [
        (
            "ec_public.pem",
            "ec_private.pem",
            jsonwebtoken::Algorithm::ES256,
        ),
        (
            "ed_public.pem",
            "ed_private.pem",
            jsonwebtoken::Algorithm::EdDSA,
        ),
    ] {
        let bridge = Bridge::start(&["--jwt-public-key", &fixture(public)]).await;
        let url = bridge.events_url(&[&channel("x")]);
        let token = sign(
            private,
            alg,
            json!({"tenant_id": TENANT, "exp": now_secs() + 60}),
        );
        let r = bridge
            .get(&url, &[("authorization", &format!("Bearer {token}"))])
            .await;
        assert_eq!(r.status(), 200, "{alg:?}");
        bridge.stop().await;
    }
}

#[tokio::test]
async fn request_shape_errors_are_400() {
    let bridge = Bridge::start(&[]).await;
    let auth = format!("Bearer {}", subscriber_token(TENANT));
    let h = [("authorization", auth.as_str())];
    let long = "r".repeat(129);
    let bad_channels = [
        format!("scans:{TENANT}"),
        format!("scans:{TENANT}:a:b"),
        format!("scans:{TENANT}:a%3Ab"),
        format!("Scans:{TENANT}:a"),
        "scans:not-a-uuid:a".to_owned(),
        format!("scans:{TENANT}:{long}"),
    ];
    for ch in bad_channels {
        let url = bridge.events_url(&[&ch]);
        assert_eq!(
            error_of(&bridge, &url, &h).await,
            (400, "bad_channel".into()),
            "{ch}"
        );
    }
    let eleven: Vec<String> = (0..11).map(|i| channel(&format!("c{i}"))).collect();
    let refs: Vec<&str> = eleven.iter().map(String::as_str).collect();
    assert_eq!(
        error_of(&bridge, &bridge.events_url(&refs), &h).await,
        (400, "too_many_channels".into())
    );
    assert_eq!(
        bridge
            .get(&bridge.events_url(&refs[..10]), &h)
            .await
            .status(),
        200
    );
    assert_eq!(
        error_of(&bridge, &bridge.events_url(&[]), &h).await,
        (400, "missing_channel".into())
    );
    // Bad cursors: not a stream id; a multi-channel cursor for other channels.
    let one = bridge.events_url(&[&channel("a")]);
    assert_eq!(
        error_of(&bridge, &format!("{one}last_event_id=yesterday"), &h).await,
        (400, "bad_cursor".into())
    );
    let mut h2 = h.to_vec();
    h2.push(("last-event-id", "0-"));
    assert_eq!(
        error_of(&bridge, &one, &h2).await,
        (400, "bad_cursor".into())
    );
    bridge.stop().await;
}

#[tokio::test]
async fn other_tenants_channels_are_403_and_checked_after_shape() {
    let bridge = Bridge::start(&[]).await;
    let auth = format!("Bearer {}", subscriber_token(TENANT));
    let h = [("authorization", auth.as_str())];
    let mine = channel("a");
    let theirs = format!("scans:{OTHER_TENANT}:a");
    assert_eq!(
        error_of(&bridge, &bridge.events_url(&[&theirs]), &h).await,
        (403, "forbidden_channel".into())
    );
    // One foreign channel fails the whole request.
    assert_eq!(
        error_of(&bridge, &bridge.events_url(&[&mine, &theirs]), &h).await,
        (403, "forbidden_channel".into())
    );
    // Uppercase spelling of the same tenant is the same tenant.
    let upper = format!("scans:{}:a", TENANT.to_uppercase());
    assert_eq!(
        bridge.get(&bridge.events_url(&[&upper]), &h).await.status(),
        200
    );
    // Order of checks: 401 before 400 before 403.
    assert_eq!(
        error_of(&bridge, &bridge.events_url(&[&theirs, "bad"]), &[])
            .await
            .0,
        401
    );
    assert_eq!(
        error_of(&bridge, &bridge.events_url(&[&theirs, "bad"]), &h)
            .await
            .0,
        400
    );
    bridge.stop().await;
}

#[tokio::test]
async fn a_stream_ends_with_bridge_expired_at_token_exp() {
    let bridge = Bridge::start(&[]).await;
    let token = hs256(json!({"tenant_id": TENANT, "exp": now_secs() + 2}));
    let mut sse = bridge.subscribe(&[&channel("e")], &token, None).await;
    let mut p = bridge.publisher().await;
    let id = publish(&mut p, "e", progress(1, 1)).await;
    assert_eq!(sse.next_event().await.id, Some(id));
    let expired = sse.next_event().await;
    assert_eq!(expired.event.as_deref(), Some("bridge.expired"));
    assert!(
        sse.next_frame().await.is_none(),
        "stream closes after bridge.expired"
    );
    bridge.stop().await;
}
