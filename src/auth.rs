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

/// A scope the bridge grants on (token claim `scope`); other scopes a token
/// carries mean nothing here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `events:publish`: `Publish` and `PublishStream`.
    Publish,
    /// `streams:admin`: `Disconnect`.
    Admin,
}

impl Scope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Publish => "events:publish",
            Scope::Admin => "streams:admin",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scope a publisher token must carry, as the claim spells it.
pub const PUBLISH_SCOPE: &str = Scope::Publish.as_str();

/// Why a token was refused. The messages are safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token: send `Authorization: Bearer <jwt>`")]
    Missing,
    #[error("the Authorization header must be `Bearer <jwt>`")]
    Scheme,
    #[error("send one `authorization` entry, not several")]
    DuplicateHeader,
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
    #[error("token claim `{0}` must be a NumericDate (seconds since 1970 as a JSON number)")]
    ClaimFormat(&'static str),
    #[error(
        "token has the subscriber token type (typ `{0}`): publishers need tokens of their own (see docs/auth.md)"
    )]
    SubscriberType(String),
    #[error("token type (typ) must be `{0}`")]
    Type(String),
    #[error("token claim `{0}` must be a tenant UUID")]
    Tenant(String),
    #[error("token lacks the `{0}` scope")]
    Scope(Scope),
    #[error("token claim `tenants` must be an array of tenant UUIDs or [\"*\"]")]
    Tenants,
}

impl AuthError {
    /// A short stable label, for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Scheme => "scheme",
            AuthError::DuplicateHeader => "duplicate_header",
            AuthError::Malformed => "malformed",
            AuthError::Signature => "signature",
            AuthError::Algorithm => "algorithm",
            AuthError::UnknownKey => "unknown_key",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::Audience => "audience",
            AuthError::Issuer => "issuer",
            AuthError::MissingClaim(_) => "missing_claim",
            AuthError::ClaimFormat(_) => "claim_format",
            AuthError::SubscriberType(_) => "subscriber_type",
            AuthError::Type(_) => "type",
            AuthError::Tenant(_) => "tenant",
            AuthError::Scope(_) => "scope",
            AuthError::Tenants => "tenants",
        }
    }
}

/// Claim checks beyond the signature. A configured claim is required: a
/// token without it is refused like one with a wrong value.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// `aud` must be this string, or an array that contains it.
    pub audience: Option<String>,
    /// `iss` must be this string.
    pub issuer: Option<String>,
    /// Required value of the `typ` claim.
    pub typ: Option<String>,
    /// A `typ` value this verifier refuses: the subscriber token type, for
    /// publisher tokens verified with the subscriber key.
    pub refused_typ: Option<String>,
    pub leeway_secs: u64,
}

/// A NumericDate claim (RFC 7519 §2: seconds, possibly fractional).
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or(AuthError::ClaimFormat(name)),
        Some(_) => Err(AuthError::ClaimFormat(name)),
    }
}

impl Rules {
    /// Checks the verified claims; returns `exp` in whole seconds (rounded
    /// down, so a stream never outlives its token).
    fn check(&self, claims: &Map<String, Value>, now: f64) -> Result<u64, AuthError> {
        let leeway = self.leeway_secs as f64;
        let exp = numeric_date(claims, "exp")?
            .ok_or_else(|| AuthError::MissingClaim("exp".to_owned()))?;
        if exp + leeway <= now {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = numeric_date(claims, "nbf")? {
            if nbf > now + leeway {
                return Err(AuthError::NotYetValid);
            }
        }
        if let Some(want) = &self.audience {
            let accepted = match claims.get("aud") {
                None => return Err(AuthError::MissingClaim("aud".to_owned())),
                Some(Value::String(aud)) => aud == want,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(want)),
                Some(_) => false,
            };
            if !accepted {
                return Err(AuthError::Audience);
            }
        }
        if let Some(want) = &self.issuer {
            match claims.get("iss") {
                None => return Err(AuthError::MissingClaim("iss".to_owned())),
                Some(Value::String(iss)) if iss == want => {}
                Some(_) => return Err(AuthError::Issuer),
            }
        }
        let typ = claims.get("typ");
        if let Some(want) = &self.typ {
            match typ {
                None => return Err(AuthError::MissingClaim("typ".to_owned())),
                Some(Value::String(t)) if t == want => {}
                Some(_) => return Err(AuthError::Type(want.clone())),
            }
        }
        if let Some(refused) = &self.refused_typ {
            if typ.and_then(Value::as_str) == Some(refused.as_str()) {
                return Err(AuthError::SubscriberType(refused.clone()));
            }
        }
        // `as` saturates: an `exp` past u64::MAX seconds is "never".
        Ok(exp.floor().max(0.0) as u64)
    }
}

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
        validation.algorithms = key.algorithms().to_vec();
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key.decoding(), &validation)
            .map_err(|e| map_error(&e))?;
        let claims = data.claims;
        let exp = self.rules.check(&claims, crate::clock::now_secs_f64())?;
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

    const NOW: f64 = 1_800_000_000.0;

    fn check(rules: &Rules, claims: Value) -> Result<u64, AuthError> {
        let Value::Object(map) = claims else {
            panic!("claims object")
        };
        rules.check(&map, NOW)
    }

    fn strict() -> Rules {
        Rules {
            audience: Some("aud1".into()),
            issuer: Some("iss1".into()),
            typ: Some("access".into()),
            ..Rules::default()
        }
    }

    #[test]
    fn configured_claims_are_required_not_only_matched() {
        let exp = NOW + 60.0;
        let ok = json!({"exp": exp, "aud": "aud1", "iss": "iss1", "typ": "access"});
        assert_eq!(check(&strict(), ok), Ok(exp as u64));
        let missing = |name: &str| {
            let mut c = json!({"exp": exp, "aud": "aud1", "iss": "iss1", "typ": "access"});
            c.as_object_mut().unwrap().remove(name);
            check(&strict(), c)
        };
        for name in ["exp", "aud", "iss", "typ"] {
            assert_eq!(missing(name), Err(AuthError::MissingClaim(name.into())));
        }
        let with = |name: &str, v: Value| {
            let mut c = json!({"exp": exp, "aud": "aud1", "iss": "iss1", "typ": "access"});
            c[name] = v;
            check(&strict(), c)
        };
        assert!(with("aud", json!(["x", "aud1"])).is_ok());
        assert_eq!(with("aud", json!(["x"])), Err(AuthError::Audience));
        assert_eq!(with("aud", json!("aud2")), Err(AuthError::Audience));
        assert_eq!(with("aud", json!(7)), Err(AuthError::Audience));
        assert_eq!(with("iss", json!(["iss1"])), Err(AuthError::Issuer));
        assert_eq!(with("iss", json!("iss2")), Err(AuthError::Issuer));
        assert_eq!(
            with("typ", json!("refresh")),
            Err(AuthError::Type("access".into()))
        );
        // Nothing configured: the claims are not looked at.
        assert!(check(&Rules::default(), json!({"exp": exp, "aud": 1, "iss": []})).is_ok());
    }

    #[test]
    fn numeric_dates_may_be_fractional_and_saturate() {
        let rules = Rules::default();
        assert_eq!(check(&rules, json!({"exp": NOW + 0.5})), Ok(NOW as u64));
        assert_eq!(
            check(&rules, json!({"exp": NOW - 0.5})),
            Err(AuthError::Expired)
        );
        assert_eq!(check(&rules, json!({"exp": u64::MAX})), Ok(u64::MAX));
        assert_eq!(check(&rules, json!({"exp": 1e300})), Ok(u64::MAX));
        assert_eq!(check(&rules, json!({"exp": -5})), Err(AuthError::Expired));
        assert_eq!(
            check(&rules, json!({"exp": "tomorrow"})),
            Err(AuthError::ClaimFormat("exp"))
        );
        assert_eq!(
            check(&rules, json!({"exp": NOW + 60.0, "nbf": NOW + 0.5})),
            Err(AuthError::NotYetValid)
        );
        let lenient = Rules {
            leeway_secs: 5,
            ..Rules::default()
        };
        assert!(check(&lenient, json!({"exp": NOW - 4.0, "nbf": NOW + 4.0})).is_ok());
    }

    #[test]
    fn a_publisher_verifier_refuses_the_subscriber_type() {
        let rules = Rules {
            refused_typ: Some("access".into()),
            ..Rules::default()
        };
        let exp = NOW + 60.0;
        assert_eq!(
            check(&rules, json!({"exp": exp, "typ": "access"})),
            Err(AuthError::SubscriberType("access".into()))
        );
        assert!(check(&rules, json!({"exp": exp})).is_ok());
        assert!(check(&rules, json!({"exp": exp, "typ": "service"})).is_ok());
    }
}
