//! Minting HS256 tokens, for `sse-bridge token`, `serve --dev` and tests.
//! Production subscriber tokens usually come from the application's own
//! auth server; the bridge only needs to verify them.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Map, Value, json};

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("the signing secret must not be empty")]
    EmptySecret,
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

use crate::clock::now_secs;

/// Signs `claims` with HS256, adding `iat` and `exp = now + ttl_secs` unless
/// present.
pub fn mint(
    secret: &str,
    mut claims: Map<String, Value>,
    ttl_secs: u64,
) -> Result<String, MintError> {
    if secret.is_empty() {
        return Err(MintError::EmptySecret);
    }
    let key = EncodingKey::from_secret(secret.as_bytes()).map_err(|_| MintError::EmptySecret)?;
    let now = now_secs();
    claims.entry("iat").or_insert(json!(now));
    claims.entry("exp").or_insert(json!(now + ttl_secs));
    encode(&Header::default(), &claims, &key).map_err(|e| MintError::Sign(e.to_string()))
}

/// Claims of a subscriber token for `tenant` under `tenant_claim`.
pub fn subscriber_claims(tenant_claim: &str, tenant: &str, subject: &str) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert(tenant_claim.to_owned(), json!(tenant));
    c.insert("sub".to_owned(), json!(subject));
    c
}

/// Claims of a publisher token: `scope` and `tenants` (`["*"]` for all).
pub fn publisher_claims(subject: &str, scope: &str, tenants: &[String]) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("sub".to_owned(), json!(subject));
    c.insert("scope".to_owned(), json!(scope));
    c.insert("tenants".to_owned(), json!(tenants));
    c
}
