//! Subscriber authentication, request shape and tenancy, in that order, each
//! with its exact status and error code.

use crate::harness::now_secs;
use serde_json::{Value, json};

use crate::harness::*;

pub(crate) async fn error_of(
    bridge: &Bridge,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
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

pub(crate) fn base64url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub(crate) fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn sign(private_pem: &str, alg: jsonwebtoken::Algorithm, claims: Value) -> String {
    sign_kid(private_pem, alg, None, claims)
}

pub(crate) fn sign_kid(
    private_pem: &str,
    alg: jsonwebtoken::Algorithm,
    kid: Option<&str>,
    claims: Value,
) -> String {
    let pem = std::fs::read(fixture(private_pem)).unwrap();
    let key = match alg {
        jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(&pem),
        jsonwebtoken::Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(&pem),
        _ => jsonwebtoken::EncodingKey::from_ed_pem(&pem),
    }
    .unwrap();
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_owned);
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

/// The DER body of a PEM public key; its tail is the raw key for Ed25519
/// (32 bytes) and the uncompressed point for P-256 (65 bytes).
fn spki_der(public_pem: &str) -> Vec<u8> {
    use base64::Engine;
    let text = std::fs::read_to_string(fixture(public_pem)).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

pub(crate) fn ed_jwk(kid: &str) -> Value {
    let der = spki_der("ed_public.pem");
    json!({"kty": "OKP", "crv": "Ed25519", "x": base64url(&der[der.len() - 32..]), "kid": kid, "use": "sig", "alg": "EdDSA"})
}

pub(crate) fn ec_jwk(kid: &str) -> Value {
    let der = spki_der("ec_public.pem");
    let point = &der[der.len() - 64..];
    json!({"kty": "EC", "crv": "P-256", "x": base64url(&point[..32]), "y": base64url(&point[32..]), "kid": kid, "use": "sig"})
}

/// A JWKS endpoint on a real loopback HTTP server; counts its fetches.
pub(crate) struct JwksServer {
    pub url: String,
    pub keys: std::sync::Arc<std::sync::Mutex<Value>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// While set, requests are accepted and never answered.
    pub hang: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(keys: Value) -> JwksServer {
        use std::sync::atomic::Ordering;
        let keys = std::sync::Arc::new(std::sync::Mutex::new(keys));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hang = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (k, f, h) = (keys.clone(), fetches.clone(), hang.clone());
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (k, f, h) = (k.clone(), f.clone(), h.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    if h.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    axum::Json(k.lock().unwrap().clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        JwksServer {
            url,
            keys,
            fetches,
            hang,
            task,
        }
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn claims_now() -> Value {
    json!({"tenant_id": TENANT, "sub": "u", "exp": now_secs() + 600})
}

pub(crate) async fn status_with(bridge: &Bridge, token: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    let r = bridge
        .get(
            &bridge.events_url(&[&channel("jwks")]),
            &[("authorization", &auth)],
        )
        .await;
    let status = r.status().as_u16();
    // A 200 is an endless stream: its body is not read.
    let body = if status == 200 {
        String::new()
    } else {
        r.text().await.unwrap_or_default()
    };
    (status, body)
}

#[tokio::test]
async fn jwks_from_a_url_picks_keys_by_kid_and_refreshes_on_rotation() {
    use jsonwebtoken::Algorithm::{ES256, EdDSA};
    let server = JwksServer::start(json!({"keys": [ed_jwk("a")]})).await;
    let bridge = Bridge::start(&["--jwt-jwks", &server.url]).await;
    assert_eq!(server.fetches(), 1, "loaded at start");

    let a = sign_kid("ed_private.pem", EdDSA, Some("a"), claims_now());
    assert_eq!(status_with(&bridge, &a).await.0, 200);
    // Without a kid the only key is unambiguous.
    let unnamed = sign_kid("ed_private.pem", EdDSA, None, claims_now());
    assert_eq!(status_with(&bridge, &unnamed).await.0, 200);
    // A token claiming key a but signed by another key fails its signature.
    let forged = sign_kid("ec_private.pem", ES256, Some("a"), claims_now());
    assert_eq!(status_with(&bridge, &forged).await.0, 401);

    // The provider rotates in key b; a token with kid b triggers a refresh.
    *server.keys.lock().unwrap() = json!({"keys": [ed_jwk("a"), ec_jwk("b")]});
    let b = sign_kid("ec_private.pem", ES256, Some("b"), claims_now());
    assert_eq!(status_with(&bridge, &b).await.0, 200);
    assert_eq!(server.fetches(), 2);

    // Unknown kids are refused, and do not hammer the provider.
    for _ in 0..5 {
        let c = sign_kid("ec_private.pem", ES256, Some("c"), claims_now());
        let (status, body) = status_with(&bridge, &c).await;
        assert_eq!(status, 401);
        assert!(body.contains("kid"), "{body}");
    }
    assert_eq!(server.fetches(), 2, "refreshes are rate limited");
    bridge.stop().await;
}

#[tokio::test]
async fn jwks_from_a_file_and_a_bad_source_stops_start_up() {
    let path = std::env::temp_dir().join(format!("jwks-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, json!({"keys": [ed_jwk("a")]}).to_string()).unwrap();
    let path_str = path.display().to_string();
    let bridge = Bridge::start(&["--jwt-jwks", &path_str]).await;
    let a = sign_kid(
        "ed_private.pem",
        jsonwebtoken::Algorithm::EdDSA,
        Some("a"),
        claims_now(),
    );
    assert_eq!(status_with(&bridge, &a).await.0, 200);
    bridge.stop().await;
    let _ = std::fs::remove_file(&path);

    let cli = <sse_bridge::cli::Cli as clap::Parser>::try_parse_from([
        "sse-bridge",
        "serve",
        "--jwt-jwks",
        "/nonexistent/jwks.json",
    ])
    .unwrap();
    let sse_bridge::cli::Command::Serve(serve) = cli.command else {
        unreachable!()
    };
    let err = serve
        .settings()
        .await
        .err()
        .expect("a missing JWKS is an error");
    assert!(err.to_string().contains("/nonexistent/jwks.json"), "{err}");
}

/// A publisher token on the SSE endpoint is called what it looks like; a
/// token that lacks the tenant claim and has no publisher claims either gets
/// the plain message.
#[tokio::test]
async fn a_publisher_token_on_the_stream_is_named_as_one() {
    let bridge = Bridge::start(&[]).await;
    let (status, body) = status_with(&bridge, &publisher_token(&["*"])).await;
    assert_eq!(status, 401);
    assert!(body.contains("looks like a publisher token"), "{body}");
    let bare = hs256(json!({"sub": "u", "exp": now_secs() + 60}));
    let (status, body) = status_with(&bridge, &bare).await;
    assert_eq!(status, 401);
    assert!(
        body.contains("missing the required claim `tenant_id`")
            && !body.contains("publisher token"),
        "{body}"
    );
    bridge.stop().await;
}

/// Typed channels: subscribing to a prefix that no event declares is a 400
/// `unknown_prefix` listing the declared prefixes, with a did-you-mean for a
/// near miss, checked after the channel's shape and before tenancy.
#[tokio::test]
async fn a_prefix_no_event_declares_is_400_unknown_prefix() {
    let bridge = Bridge::start(&[]).await;
    let token = subscriber_token(TENANT);
    let auth = format!("Bearer {token}");
    let get = |channels: Vec<String>| {
        let url = bridge.events_url(&channels.iter().map(String::as_str).collect::<Vec<_>>());
        let auth = auth.clone();
        let bridge = &bridge;
        async move {
            let r = bridge.get(&url, &[("authorization", &auth)]).await;
            let status = r.status().as_u16();
            let body: Value = serde_json::from_str(&r.text().await.unwrap()).expect("JSON");
            (status, body)
        }
    };
    let (status, body) = get(vec![format!("scan:{TENANT}:s1")]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "unknown_prefix", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`conversations`, `findings` and `scans`")
            && message.contains("did you mean `scans`?"),
        "{message}"
    );
    let (status, body) = get(vec![channel("ok"), format!("zzz:{TENANT}:s1")]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("unknown_prefix"))
    );
    assert!(
        !body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean"),
        "{body}"
    );
    // Shape first (a bad prefix is bad_channel), tenancy after.
    let (status, body) = get(vec![format!("Scans:{TENANT}:s1")]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_channel"))
    );
    let (status, body) = get(vec![format!("zzz:{OTHER_TENANT}:s1")]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("unknown_prefix"))
    );
    let (status, body) = get(vec![format!("conversations:{OTHER_TENANT}:c")]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden_channel"))
    );
    bridge.stop().await;
}
