//! The scopes the bridge grants on.

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
