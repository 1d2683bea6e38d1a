//! The token path from the network: an `Authorization` header value and a
//! token go through the bearer parser and full verification without a
//! panic, and nothing unsigned is accepted. Input that is a JSON object is
//! also signed as claims and verified, so every claim check (absent, wrong
//! and extreme `aud`, `iss`, `typ`, `exp`, `nbf` values) runs on it.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sse_bridge::fuzzing::auth::{Key, Keys, Rules, SubscriberAuth, Verifier, bearer};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

fn auth() -> &'static SubscriberAuth {
    static AUTH: OnceLock<SubscriberAuth> = OnceLock::new();
    AUTH.get_or_init(|| {
        let key = Key::hs256("fuzz-secret").expect("key");
        let rules = Rules {
            audience: Some("aud".into()),
            issuer: None,
            typ: Some("access".into()),
            refused_typ: None,
            leeway_secs: 0,
        };
        SubscriberAuth::new(Verifier::new(Keys::One(key), &rules), "tenant_id".into())
    })
}

fuzz_target!(|input: &str| {
    let token = bearer(input).unwrap_or(input);
    let verdict = runtime().block_on(auth().verify(token));
    // Random input cannot carry a valid HS256 signature of our secret.
    assert!(verdict.is_err(), "accepted {input:?}");
    if let Ok(serde_json::Value::Object(claims)) = serde_json::from_str(input) {
        if let Ok(signed) = sse_bridge::token::mint("fuzz-secret", claims, 60) {
            // Accepted or refused, but never a panic.
            let _ = runtime().block_on(auth().verify(&signed));
        }
    }
});
