//! A parsed channel name: `<prefix>:<tenant_id>:<resource_id>`.
//!
//! A `Channel` can only be built by parsing, so holding one proves the name
//! is well formed and its tenant is a normalised UUID. Names are rejected,
//! never repaired: the only normalisation is the tenant UUID's case.

use std::fmt;
use std::sync::Arc;

use uuid::Uuid;

const MAX_PREFIX: usize = 63;
const MAX_RESOURCE: usize = 128;
/// Longest name: prefix, `:`, a hyphenated UUID, `:`, resource.
const MAX_NAME: usize = MAX_PREFIX + 1 + 36 + 1 + MAX_RESOURCE;

/// Why a channel name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error(
        "channel must have exactly three `:`-separated parts `<prefix>:<tenant_id>:<resource_id>`, got {0}"
    )]
    Segments(usize),
    #[error("channel prefix must match ^[a-z][a-z0-9-]{{0,62}}$")]
    Prefix,
    #[error(
        "channel tenant_id must be a hyphenated UUID such as 0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80"
    )]
    Tenant,
    #[error("channel resource_id must match ^[A-Za-z0-9._~-]{{1,128}}$")]
    Resource,
}

/// A channel: where events are published and what browsers subscribe to.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Channel {
    /// The canonical string form; ordering and hashing use it.
    name: Arc<str>,
    tenant: Uuid,
    prefix_len: usize,
}

// By name alone: the name determines the other fields, so equal channels
// still hash alike, and the UUID is not hashed a second time.
impl std::hash::Hash for Channel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// A map keyed by channel, as the publish and delivery paths keep them:
/// looked up once or more per event, so hashed with foldhash rather than
/// SipHash (keys are parsed, bounded names from authenticated callers, and
/// the hasher is seeded per process).
pub type ChannelMap<V> = std::collections::HashMap<Channel, V, foldhash::fast::RandomState>;

/// The channels of one stream: sorted and without duplicates, however the
/// request listed them. A cursor lists one position per channel in this
/// order, so two requests for the same channels in another order resume
/// alike.
///
/// Shared, not copied: a stream's subscription and its place in the node's
/// registry hold the same set (one allocation per stream fewer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelSet(Arc<[Channel]>);

impl ChannelSet {
    pub fn new(mut channels: Vec<Channel>) -> ChannelSet {
        channels.sort();
        channels.dedup();
        ChannelSet(channels.into())
    }
}

impl<'a> IntoIterator for &'a ChannelSet {
    type Item = &'a Channel;
    type IntoIter = std::slice::Iter<'a, Channel>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl std::ops::Deref for ChannelSet {
    type Target = [Channel];

    fn deref(&self) -> &[Channel] {
        &self.0
    }
}

fn valid_prefix(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_PREFIX
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn valid_resource(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_RESOURCE
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'~' | b'-'))
}

/// Parses a hyphenated UUID in any case; other UUID spellings are rejected.
pub fn parse_tenant(s: &str) -> Result<Uuid, ChannelError> {
    let b = s.as_bytes();
    let hyphens_ok = b.len() == 36 && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-');
    if !hyphens_ok {
        return Err(ChannelError::Tenant);
    }
    Uuid::try_parse(s).map_err(|_| ChannelError::Tenant)
}

impl Channel {
    /// Builds a channel from its three parts (the gRPC form).
    pub fn from_parts(prefix: &str, tenant: &str, resource: &str) -> Result<Channel, ChannelError> {
        if !valid_prefix(prefix) {
            return Err(ChannelError::Prefix);
        }
        let tenant = parse_tenant(tenant)?;
        if !valid_resource(resource) {
            return Err(ChannelError::Resource);
        }
        // Assembled on the stack and allocated once, straight into the
        // shared name: every publish parses its channel, and `format!` plus
        // the copy into an `Arc` were most of this function's cost.
        let mut buf = [0u8; MAX_NAME];
        let mut len = 0;
        let mut uuid = Uuid::encode_buffer();
        let tenant_text = tenant.hyphenated().encode_lower(&mut uuid);
        for part in [prefix, ":", tenant_text, ":", resource] {
            buf[len..len + part.len()].copy_from_slice(part.as_bytes());
            len += part.len();
        }
        let name = std::str::from_utf8(&buf[..len]).map_err(|_| ChannelError::Resource)?;
        Ok(Channel {
            name: name.into(),
            tenant,
            prefix_len: prefix.len(),
        })
    }

    /// Parses the string form used by the SSE API.
    pub fn parse(s: &str) -> Result<Channel, ChannelError> {
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            [prefix, tenant, resource] => Channel::from_parts(prefix, tenant, resource),
            _ => Err(ChannelError::Segments(parts.len())),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.name[..self.prefix_len]
    }

    pub fn tenant(&self) -> Uuid {
        self.tenant
    }

    pub fn resource(&self) -> &str {
        // prefix, ':', 36-char UUID, ':'
        &self.name[self.prefix_len + 38..]
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Channel({})", self.name)
    }
}

impl std::str::FromStr for Channel {
    type Err = ChannelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::parse(s)
    }
}

#[cfg(test)]
mod tests {
    /// The catalogue checks its declared prefixes with its own copy of the
    /// rule (it is compiled into build.rs alone): both must agree.
    #[test]
    fn the_catalogue_s_prefix_rule_is_this_one() {
        let long = "a".repeat(63);
        let too_long = "a".repeat(64);
        for s in [
            "scans", "a", "a-1", "z9", "", "1a", "-a", "A", "a_b", "a:b", "é", &long, &too_long,
        ] {
            assert_eq!(
                super::valid_prefix(s),
                crate::schema::catalogue::is_prefix(s),
                "{s:?}"
            );
        }
    }

    use super::*;
    use proptest::prelude::*;

    const T: &str = "0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80";

    #[test]
    fn parses_and_exposes_parts() {
        let c = Channel::parse(&format!("scans:{T}:abc-1")).unwrap();
        assert_eq!(c.prefix(), "scans");
        assert_eq!(c.tenant().to_string(), T);
        assert_eq!(c.resource(), "abc-1");
        assert_eq!(c.to_string(), format!("scans:{T}:abc-1"));
    }

    #[test]
    fn uppercase_tenant_is_normalised() {
        let c = Channel::parse(&format!("scans:{}:r", T.to_uppercase())).unwrap();
        assert_eq!(c.as_str(), format!("scans:{T}:r"));
    }

    #[test]
    fn rejects_each_broken_part() {
        let cases = [
            (format!("scans:{T}"), ChannelError::Segments(2)),
            (format!("scans:{T}:a:b"), ChannelError::Segments(4)),
            (format!("Scans:{T}:a"), ChannelError::Prefix),
            (format!("1scans:{T}:a"), ChannelError::Prefix),
            (format!(":{T}:a"), ChannelError::Prefix),
            (format!("{}:{T}:a", "a".repeat(64)), ChannelError::Prefix),
            ("scans:not-a-uuid:a".to_owned(), ChannelError::Tenant),
            (
                format!("scans:{}:a", T.replace('-', "")),
                ChannelError::Tenant,
            ),
            (format!("scans:{{{T}}}:a"), ChannelError::Tenant),
            (format!("scans:{T}:"), ChannelError::Resource),
            (format!("scans:{T}:a b"), ChannelError::Resource),
            (format!("scans:{T}:a/b"), ChannelError::Resource),
            (
                format!("scans:{T}:{}", "r".repeat(129)),
                ChannelError::Resource,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Channel::parse(&input), Err(want), "{input}");
        }
        assert!(Channel::parse(&format!("{}:{T}:{}", "a".repeat(63), "r".repeat(128))).is_ok());
    }

    #[test]
    fn parts_cannot_inject_separators() {
        assert_eq!(
            Channel::from_parts("scans", T, "a:b"),
            Err(ChannelError::Resource)
        );
        assert_eq!(
            Channel::from_parts("sc:ans", T, "a"),
            Err(ChannelError::Prefix)
        );
        assert_eq!(
            Channel::from_parts("scans", &format!("{T}:x"), "a"),
            Err(ChannelError::Tenant)
        );
    }

    proptest! {
        #[test]
        fn round_trips(prefix in "[a-z][a-z0-9-]{0,62}", tenant in any::<u128>(), resource in "[A-Za-z0-9._~-]{1,128}") {
            let tenant = Uuid::from_u128(tenant);
            let c = Channel::from_parts(&prefix, &tenant.to_string().to_uppercase(), &resource).unwrap();
            let again = Channel::parse(c.as_str()).unwrap();
            prop_assert_eq!(&again, &c);
            prop_assert_eq!(again.prefix(), prefix.as_str());
            prop_assert_eq!(again.resource(), resource.as_str());
            prop_assert_eq!(again.tenant(), tenant);
        }

        #[test]
        fn a_separator_inside_any_part_is_rejected(
            prefix in "[a-z][a-z0-9-]{0,20}",
            resource in "[A-Za-z0-9._~-]{1,20}",
            cut in 0usize..20,
        ) {
            let cut = cut.min(resource.len());
            let injected = format!("{}:{}", &resource[..cut], &resource[cut..]);
            prop_assert!(Channel::from_parts(&prefix, T, &injected).is_err());
            let full = format!("{prefix}:{T}:{injected}");
            prop_assert!(Channel::parse(&full).is_err());
        }

        #[test]
        fn non_uuid_tenants_are_rejected(tenant in "[^:]{0,40}") {
            prop_assume!(Uuid::try_parse(&tenant).is_err());
            let full = format!("scans:{tenant}:r");
            prop_assert!(Channel::parse(&full).is_err());
        }

        #[test]
        fn arbitrary_input_never_panics(s in ".{0,300}") {
            let _ = Channel::parse(&s);
        }
    }
}
