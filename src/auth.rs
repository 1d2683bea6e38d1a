//! Token verification for subscribers (SSE) and publishers (gRPC).
//!
//! Tokens are JWTs validated offline: signature with the configured key,
//! `exp` (required) and `nbf`, and the configured `aud`, `iss` and `typ`.
//! Keys are parsed once at start-up.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::channel::parse_tenant;
use crate::jwks::Jwks;

/// The scope a publisher token must carry.
pub const PUBLISH_SCOPE: &str = "events:publish";
/// The scope a token must carry to close streams (`Disconnect`).
pub const ADMIN_SCOPE: &str = "streams:admin";

/// Why a token was refused. The messages are safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token: send `Authorization: Bearer <jwt>`")]
    Missing,
    #[error("the Authorization header must be `Bearer <jwt>`")]
    Scheme,
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token signature is invalid")]
    Signature,
    #[error("token algorithm is not accepted by this bridge")]
    Algorithm,
    #[error("token `kid` names no key of the bridge's key set")]
    UnknownKey,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    #[error("token audience (aud) is not accepted")]
    Audience,
    #[error("token issuer (iss) is not accepted")]
    Issuer,
    #[error("token is missing the required claim `{0}`")]
    MissingClaim(String),
    #[error("token type (typ) must be `{0}`")]
    Type(String),
    #[error("token claim `{0}` must be a tenant UUID")]
    Tenant(String),
    #[error("token lacks the `{0}` scope")]
    Scope(&'static str),
    #[error("token claim `tenants` must be an array of tenant UUIDs or [\"*\"]")]
    Tenants,
}

impl AuthError {
    /// A short stable label, for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Scheme => "scheme",
            AuthError::Malformed => "malformed",
            AuthError::Signature => "signature",
            AuthError::Algorithm => "algorithm",
            AuthError::UnknownKey => "unknown_key",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::Audience => "audience",
            AuthError::Issuer => "issuer",
            AuthError::MissingClaim(_) => "missing_claim",
            AuthError::Type(_) => "type",
            AuthError::Tenant(_) => "tenant",
            AuthError::Scope(_) => "scope",
            AuthError::Tenants => "tenants",
        }
    }
}

/// A key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not an RSA, EC (P-256/P-384) or Ed25519 public key in PEM form")]
    Pem(String),
    #[error("the HS256 secret must not be empty")]
    EmptySecret,
}

/// A verification key and the algorithms it allows.
#[derive(Clone)]
pub struct Key {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

impl Key {
    pub fn new(key: DecodingKey, algorithms: Vec<Algorithm>) -> Key {
        Key { key, algorithms }
    }

    pub fn hs256(secret: &str) -> Result<Key, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        let key = DecodingKey::from_secret(secret.as_bytes()).map_err(|_| KeyError::EmptySecret)?;
        Ok(Key {
            key,
            algorithms: vec![Algorithm::HS256],
        })
    }

    /// Reads a public key PEM; the algorithm follows from the key type.
    pub fn public_pem_file(path: &Path) -> Result<Key, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Key::public_pem(&pem).ok_or_else(|| KeyError::Pem(path.display().to_string()))
    }

    pub fn public_pem(pem: &[u8]) -> Option<Key> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Some(Key {
                key,
                algorithms: vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
            });
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            return Some(Key {
                key,
                algorithms: vec![Algorithm::ES256, Algorithm::ES384],
            });
        }
        if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            return Some(Key {
                key,
                algorithms: vec![Algorithm::EdDSA],
            });
        }
        None
    }
}

/// Claim checks beyond the signature.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub audience: Option<String>,
    pub issuer: Option<String>,
    /// Required value of the `typ` claim.
    pub typ: Option<String>,
    pub leeway_secs: u64,
}

fn map_error(e: &jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::Algorithm,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
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
    typ: Option<String>,
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
        // The algorithms are set per key at verification.
        let mut validation = Validation {
            leeway: rules.leeway_secs,
            validate_exp: true,
            validate_nbf: true,
            ..Validation::default()
        };
        validation.set_required_spec_claims(&["exp"]);
        match &rules.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &rules.issuer {
            validation.set_issuer(&[iss]);
        }
        Verifier {
            keys,
            validation,
            typ: rules.typ.clone(),
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.is_empty() || token.len() > 16 * 1024 {
            return Err(AuthError::Malformed);
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
        validation.algorithms = key.algorithms.clone();
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| map_error(&e))?;
        let claims = data.claims;
        if let Some(want) = &self.typ {
            if claims.get("typ").and_then(Value::as_str) != Some(want.as_str()) {
                return Err(AuthError::Type(want.clone()));
            }
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| AuthError::MissingClaim("exp".to_owned()))?;
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
    pub scopes: HashSet<String>,
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
    pub async fn verify(&self, token: &str, scope: &'static str) -> Result<Publisher, AuthError> {
        let Claims { claims, exp } = self.verifier.verify(token).await?;
        let scopes: HashSet<String> = claims
            .get("scope")
            .and_then(Value::as_str)
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        if !scopes.contains(scope) {
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
            scopes,
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
