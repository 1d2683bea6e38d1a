//! Why a token was refused: messages safe to show the caller, and a short
//! stable label each for logs and metrics.

use super::scope::Scope;

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
    #[error(
        "token is missing the required claim `{0}`, and it carries `scope` or `tenants`: this looks like a publisher token; streams take a subscriber token (see docs/auth.md)"
    )]
    PublisherToken(String),
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
            AuthError::MissingClaim(_) | AuthError::PublisherToken(_) => "missing_claim",
            AuthError::ClaimFormat(_) => "claim_format",
            AuthError::SubscriberType(_) => "subscriber_type",
            AuthError::Type(_) => "type",
            AuthError::Tenant(_) => "tenant",
            AuthError::Scope(_) => "scope",
            AuthError::Tenants => "tenants",
        }
    }
}
