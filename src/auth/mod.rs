//! Token verification for subscribers (SSE) and publishers (gRPC).
//!
//! Tokens are JWTs validated offline: signature with the configured key,
//! `exp` (required) and `nbf`, and the configured `aud`, `iss` and `typ`.
//! Keys are parsed once at start-up.
//!
//! jsonwebtoken checks only the signature and algorithm here; the claims are
//! checked by [`Rules`] itself, because jsonwebtoken checks `aud` and `iss`
//! only when a token carries them (a configured audience must also refuse a
//! token *without* one), accepts an `iss` array, and refuses a fractional
//! `exp` that RFC 7519 allows.

use std::collections::HashSet;

use std::sync::Arc;

use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::channel::parse_tenant;
use crate::jwks::Jwks;
use crate::key::Key;

mod cache;
mod claims;
mod error;
mod scope;

pub use claims::Rules;
pub use error::AuthError;
pub use scope::Scope;

/// The scope a publisher token must carry, as the claim spells it.
pub const PUBLISH_SCOPE: &str = Scope::Publish.as_str();

fn map_error(e: &jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::Algorithm,
        _ => AuthError::Malformed,
    }
}

/// Where a verifier's keys come from.
#[derive(Clone)]
pub enum Keys {
    /// One key (HS256 secret or PEM public key); the token's `kid`, if
    /// any, is not consulted.
    One(Key),
    /// A JSON Web Key Set: the token's `kid` picks the key.
    Set(Arc<Jwks>),
}

/// Verifies tokens against the configured keys and one set of claim rules.
#[derive(Clone)]
pub struct Verifier {
    keys: Keys,
    validation: Validation,
    rules: Rules,
    /// Shared by the clones: one cache per configured verifier.
    verified: Arc<cache::Verified>,
}

/// The verified claims of a token and its expiry.
#[derive(Debug, Clone)]
pub struct Claims {
    pub claims: Map<String, Value>,
    /// Unix seconds.
    pub exp: u64,
}

impl Verifier {
    pub fn new(keys: Keys, rules: &Rules) -> Verifier {
        // Signature and algorithm only (the algorithms are set per key at
        // verification); `Rules::check` does every claim.
        let mut validation = Validation {
            validate_exp: false,
            validate_nbf: false,
            validate_aud: false,
            ..Validation::default()
        };
        validation.set_required_spec_claims::<&str>(&[]);
        Verifier {
            keys,
            validation,
            rules: rules.clone(),
            verified: Arc::default(),
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.is_empty() || token.len() > 16 * 1024 {
            return Err(AuthError::Malformed);
        }
        // Seen before: the signature holds, the claims are checked anew.
        let digest = cache::Verified::key(token);
        if let Some(claims) = self.verified.get(&digest) {
            let exp = self.rules.check(&claims, crate::clock::now_secs_f64())?;
            return Ok(Claims { claims, exp });
        }
        let key = match &self.keys {
            Keys::One(key) => key.clone(),
            Keys::Set(set) => {
                let header =
                    jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
                set.key(header.kid.as_deref())
                    .await
                    .ok_or(AuthError::UnknownKey)?
            }
        };
        // The key decides the algorithms: an RSA key never accepts an
        // HS256 token signed with its public half.
        let mut validation = self.validation.clone();
        validation.algorithms = key.algorithms().to_vec();
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key.decoding(), &validation)
            .map_err(|e| map_error(&e))?;
        let claims = data.claims;
        let exp = self.rules.check(&claims, crate::clock::now_secs_f64())?;
        // Only a token that passed every check is remembered.
        self.verified.insert(digest, claims.clone());
        Ok(Claims { claims, exp })
    }
}

/// A verified subscriber.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub tenant: Uuid,
    pub subject: Option<String>,
    /// Unix seconds at which the stream must end.
    pub exp: u64,
    /// The `iat` claim: revocation orders refuse tokens issued before them.
    pub issued_at: Option<u64>,
}

/// Verifies subscriber tokens and reads their tenant.
#[derive(Clone)]
pub struct SubscriberAuth {
    verifier: Verifier,
    tenant_claim: String,
}

impl SubscriberAuth {
    pub fn new(verifier: Verifier, tenant_claim: String) -> SubscriberAuth {
        SubscriberAuth {
            verifier,
            tenant_claim,
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Subscriber, AuthError> {
        let Claims { claims, exp } = self.verifier.verify(token).await?;
        let tenant = match claims.get(&self.tenant_claim) {
            None if claims.contains_key("scope") || claims.contains_key("tenants") => {
                return Err(AuthError::PublisherToken(self.tenant_claim.clone()));
            }
            None => return Err(AuthError::MissingClaim(self.tenant_claim.clone())),
            Some(Value::String(s)) => {
                parse_tenant(s).map_err(|_| AuthError::Tenant(self.tenant_claim.clone()))?
            }
            Some(_) => return Err(AuthError::Tenant(self.tenant_claim.clone())),
        };
        Ok(Subscriber {
            tenant,
            subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            exp,
            issued_at: claims.get("iat").and_then(Value::as_u64),
        })
    }
}

/// Tenants a publisher may publish to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenants {
    All,
    Only(HashSet<Uuid>),
}

impl Tenants {
    pub fn allows(&self, tenant: Uuid) -> bool {
        match self {
            Tenants::All => true,
            Tenants::Only(set) => set.contains(&tenant),
        }
    }
}

/// A verified publisher.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub subject: Option<String>,
    pub tenants: Tenants,
    /// Unix seconds after which the token no longer authorises anything,
    /// including a `PublishStream` opened before.
    pub exp: u64,
}

/// Verifies publisher tokens: scope and tenants claims.
#[derive(Clone)]
pub struct PublisherAuth {
    verifier: Verifier,
}

impl PublisherAuth {
    pub fn new(verifier: Verifier) -> PublisherAuth {
        PublisherAuth { verifier }
    }

    /// Verifies a token and requires `scope`.
    pub async fn verify(&self, token: &str, scope: Scope) -> Result<Publisher, AuthError> {
        let Claims { claims, exp } = self.verifier.verify(token).await?;
        // RFC 6749 §3.3: scopes are separated by U+0020 only; any other
        // space is part of a scope name, which then matches nothing.
        let granted = claims
            .get("scope")
            .and_then(Value::as_str)
            .is_some_and(|s| s.split(' ').any(|granted| granted == scope.as_str()));
        if !granted {
            return Err(AuthError::Scope(scope));
        }
        let tenants = match claims.get("tenants") {
            Some(Value::Array(items)) => {
                if items.len() == 1 && items[0].as_str() == Some("*") {
                    Tenants::All
                } else {
                    let mut set = HashSet::with_capacity(items.len());
                    for item in items {
                        let t = item
                            .as_str()
                            .and_then(|s| parse_tenant(s).ok())
                            .ok_or(AuthError::Tenants)?;
                        set.insert(t);
                    }
                    Tenants::Only(set)
                }
            }
            _ => return Err(AuthError::Tenants),
        };
        Ok(Publisher {
            subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            tenants,
            exp,
        })
    }
}

/// Extracts the token of an `Authorization` header value.
pub fn bearer(header: &str) -> Result<&str, AuthError> {
    let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Scheme)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Scheme);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Scheme);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verifier(rules: Rules) -> Verifier {
        let key = Key::hs256("cache-test-secret").unwrap();
        Verifier::new(Keys::One(key), &rules)
    }

    fn token(exp: u64) -> String {
        let mut claims = Map::new();
        claims.insert(
            "tenant_id".into(),
            json!("0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80"),
        );
        claims.insert("exp".into(), json!(exp));
        crate::token::mint("cache-test-secret", claims, 0).unwrap()
    }

    /// A token presented again skips only its signature check: its expiry
    /// is read against the clock at every presentation.
    #[tokio::test]
    async fn a_remembered_token_is_still_refused_once_it_expires() {
        let v = verifier(Rules::default());
        let t = token(crate::clock::now_secs() + 1);
        assert!(v.verify(&t).await.is_ok());
        assert_eq!(v.verified.len(), 1, "remembered");
        assert!(v.verify(&t).await.is_ok(), "served from the cache");
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        assert!(matches!(v.verify(&t).await, Err(AuthError::Expired)));
    }

    /// The claim rules are applied on a hit too, and only a token that
    /// passed them is remembered.
    #[tokio::test]
    async fn refused_tokens_are_not_remembered_and_a_hit_is_not_a_pass() {
        let strict = verifier(Rules {
            audience: Some("bridge".into()),
            ..Rules::default()
        });
        let t = token(crate::clock::now_secs() + 600);
        assert!(matches!(
            strict.verify(&t).await,
            Err(AuthError::MissingClaim(c)) if c == "aud"
        ));
        assert_eq!(strict.verified.len(), 0);
        // The same bytes with one signature character changed are another
        // token: never a hit, refused on its signature.
        let lenient = verifier(Rules::default());
        assert!(lenient.verify(&t).await.is_ok());
        let mut forged = t.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(lenient.verify(&forged).await.is_err());
    }
}
