//! A revocation: an order to close the streams of a tenant, a subject or a
//! channel on every node, and to refuse the tokens issued before it.
//!
//! Orders travel between nodes as one line of JSON, so a value that comes
//! back from the bus is parsed again like any other input.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::channel::{Channel, parse_tenant};

/// Whose streams an order closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every stream of the tenant.
    Tenant(Uuid),
    /// Every stream opened with a token of this `sub`; within one tenant
    /// when `tenant` is set.
    Subject {
        subject: String,
        tenant: Option<Uuid>,
    },
    /// Every stream that includes the channel.
    Channel(Channel),
}

/// An order to close matching streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub target: Target,
    /// Shown to the closed streams in `bridge.revoked`.
    pub reason: Reason,
    /// Unix seconds. Tokens issued before this cannot reopen a matching
    /// stream.
    pub at: u64,
}

/// Longest accepted reason, in bytes.
pub const MAX_REASON: usize = 256;
/// Longest accepted subject, in bytes.
pub const MAX_SUBJECT: usize = 256;

/// An order that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    #[error("not a revocation order: {0}")]
    Malformed(String),
    #[error("subject must be 1 to {MAX_SUBJECT} bytes")]
    Subject,
    #[error("reason must be at most {MAX_REASON} bytes without control characters")]
    Reason,
}

/// The wire form between nodes.
#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    reason: String,
    at: u64,
}

/// Checks a subject taken from a request.
pub fn check_subject(subject: &str) -> Result<(), RevocationError> {
    if subject.is_empty() || subject.len() > MAX_SUBJECT {
        return Err(RevocationError::Subject);
    }
    Ok(())
}

/// Why streams were closed: echoed into SSE data, so it is checked when it
/// is made (at most [`MAX_REASON`] bytes, no control characters) and can be
/// made no other way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    pub fn parse(reason: &str) -> Result<Reason, RevocationError> {
        if reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
            return Err(RevocationError::Reason);
        }
        Ok(Reason(reason.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Revocation {
    /// Whether a stream of `tenant`, `subject` and `channels` is covered.
    pub fn matches(&self, tenant: Uuid, subject: Option<&str>, channels: &[Channel]) -> bool {
        match &self.target {
            Target::Tenant(t) => *t == tenant,
            Target::Subject {
                subject: s,
                tenant: t,
            } => subject == Some(s.as_str()) && t.is_none_or(|t| t == tenant),
            Target::Channel(c) => channels.contains(c),
        }
    }

    pub fn encode(&self) -> String {
        let mut wire = Wire {
            tenant: None,
            subject: None,
            channel: None,
            reason: self.reason.as_str().to_owned(),
            at: self.at,
        };
        match &self.target {
            Target::Tenant(t) => wire.tenant = Some(t.to_string()),
            Target::Subject { subject, tenant } => {
                wire.subject = Some(subject.clone());
                wire.tenant = tenant.map(|t| t.to_string());
            }
            Target::Channel(c) => wire.channel = Some(c.to_string()),
        }
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    pub fn decode(input: &[u8]) -> Result<Revocation, RevocationError> {
        let bad = |e: &dyn std::fmt::Display| RevocationError::Malformed(e.to_string());
        let wire: Wire = serde_json::from_slice(input).map_err(|e| bad(&e))?;
        let tenant = wire
            .tenant
            .as_deref()
            .map(parse_tenant)
            .transpose()
            .map_err(|e| bad(&e))?;
        let target = match (wire.subject, wire.channel) {
            (Some(subject), None) => {
                check_subject(&subject)?;
                Target::Subject { subject, tenant }
            }
            (None, Some(channel)) if tenant.is_none() => {
                Target::Channel(Channel::parse(&channel).map_err(|e| bad(&e))?)
            }
            (None, None) => Target::Tenant(tenant.ok_or_else(|| bad(&"no target"))?),
            _ => return Err(bad(&"more than one target")),
        };
        Ok(Revocation {
            target,
            reason: Reason::parse(&wire.reason)?,
            at: wire.at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80";

    #[test]
    fn orders_round_trip_and_match_their_streams() {
        let tenant = parse_tenant(T).unwrap();
        let channel = Channel::parse(&format!("scans:{T}:s1")).unwrap();
        let other = Channel::parse(&format!("scans:{T}:s2")).unwrap();
        let orders = [
            Target::Tenant(tenant),
            Target::Subject {
                subject: "u1".into(),
                tenant: Some(tenant),
            },
            Target::Subject {
                subject: "u1".into(),
                tenant: None,
            },
            Target::Channel(channel.clone()),
        ];
        for target in orders {
            let r = Revocation {
                target,
                reason: Reason::parse("logout").unwrap(),
                at: 7,
            };
            assert_eq!(Revocation::decode(r.encode().as_bytes()), Ok(r.clone()));
            assert!(r.matches(tenant, Some("u1"), std::slice::from_ref(&channel)));
        }
        let by_channel = Revocation {
            target: Target::Channel(channel),
            reason: Reason::parse("").unwrap(),
            at: 1,
        };
        assert!(!by_channel.matches(tenant, Some("u1"), &[other]));
        let by_subject = Revocation {
            target: Target::Subject {
                subject: "u1".into(),
                tenant: None,
            },
            reason: Reason::parse("").unwrap(),
            at: 1,
        };
        assert!(!by_subject.matches(tenant, Some("u2"), &[]));
        assert!(!by_subject.matches(tenant, None, &[]));
    }

    #[test]
    fn malformed_orders_are_refused() {
        for input in [
            "",
            "{}",
            r#"{"reason":"","at":1}"#,
            r#"{"tenant":"nope","reason":"","at":1}"#,
            r#"{"channel":"a:b","reason":"","at":1}"#,
            r#"{"subject":"","reason":"","at":1}"#,
            r#"{"subject":"u","channel":"x","reason":"","at":1}"#,
            "{\"tenant\":\"0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80\",\"reason\":\"a\\nb\",\"at\":1}",
        ] {
            assert!(Revocation::decode(input.as_bytes()).is_err(), "{input}");
        }
    }
}
