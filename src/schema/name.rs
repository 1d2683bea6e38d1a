//! Event names: `<resource>.<verb>`, two lowercase words. An [`EventName`]
//! exists only once checked, so what relies on its shape holds by
//! construction: the SSE `event:` line and the Valkey pub/sub record
//! (`<id>\n<event>\n<json>`) both need a name with no line break.
//!
//! Like `rules.rs` and `catalogue.rs`, this file is also compiled into
//! `build.rs`, which checks the catalogue's names before the crate builds.

use std::fmt;
use std::sync::Arc;

/// Event names with this prefix are the bridge's own control events.
pub const RESERVED_PREFIX: &str = "bridge.";

/// Why an event name is not a valid `<resource>.<verb>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Shape,
    Reserved,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Shape => f.write_str(
                "event names must be `<resource>.<verb>` matching ^[a-z][a-z0-9_]*\\.[a-z][a-z0-9_]*$",
            ),
            NameError::Reserved => write!(
                f,
                "the `{RESERVED_PREFIX}` prefix is reserved for the bridge's control events"
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// A checked event name. Cheap to clone: every event of a type shares the
/// catalogue's one allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventName(Arc<str>);

impl EventName {
    /// A name a producer's event may carry: the reserved prefix refused.
    /// The catalogue issues these when it loads.
    pub(crate) fn published(name: &str) -> Result<Self, NameError> {
        check(name, false)?;
        Ok(Self(name.into()))
    }

    /// A name read back from the bus, which carries only what the
    /// catalogue issued; checked again because the bus is outside the
    /// process.
    pub(crate) fn stored(name: &str) -> Result<Self, NameError> {
        check(name, true)?;
        Ok(Self(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both share one allocation (for the bus's name cache).
    pub fn same(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl std::ops::Deref for EventName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_word(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// Checks `name` against `^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$`, with the
/// reserved prefix allowed only when `allow_reserved`.
pub fn check(name: &str, allow_reserved: bool) -> Result<(), NameError> {
    let Some((resource, verb)) = name.split_once('.') else {
        return Err(NameError::Shape);
    };
    if !is_word(resource) || !is_word(verb) {
        return Err(NameError::Shape);
    }
    if !allow_reserved && name.starts_with(RESERVED_PREFIX) {
        return Err(NameError::Reserved);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_two_lowercase_words_make_a_name() {
        for good in ["scan.progress", "a.b", "message_2.delta_x"] {
            assert_eq!(
                EventName::published(good).map(|n| n.to_string()),
                Ok(good.to_owned())
            );
        }
        for bad in [
            "",
            "scan",
            "scan.",
            ".progress",
            "Scan.progress",
            "scan.progress.x",
            "scan.pro gress",
            "scan.progress\n",
            "scan\n.progress",
            "1scan.progress",
            "scan.-x",
            "scan.prögress",
        ] {
            assert_eq!(EventName::published(bad), Err(NameError::Shape), "{bad:?}");
            assert_eq!(EventName::stored(bad), Err(NameError::Shape), "{bad:?}");
        }
    }

    #[test]
    fn the_reserved_prefix_is_only_for_stored_control_names() {
        assert_eq!(
            EventName::published("bridge.reset"),
            Err(NameError::Reserved)
        );
        assert!(EventName::stored("bridge.reset").is_ok());
    }
}
