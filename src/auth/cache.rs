//! Tokens already verified, so a token presented again (a browser's
//! reconnect, a user's second tab) skips its signature check: ~1 µs for
//! HS256 but ~125 µs for RS256 with the pure-Rust RSA this build uses
//! (`bench connect --alg rs256`).
//!
//! Keyed by the SHA-256 of the whole token, so only the very same bytes
//! hit. A hit still runs every claim rule against the current time
//! ([`super::Rules::check`]): expiry, `nbf`, audience, issuer and type are
//! never cached, only the signature's verdict. That verdict is trusted for
//! at most [`TRUST`], so a key withdrawn from a JWKS stops vouching for its
//! tokens within that time, as a refreshed set would have.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Most tokens remembered (a few hundred bytes each).
const CAPACITY: usize = 16_384;

/// Longest a signature's verdict is reused.
pub(super) const TRUST: Duration = Duration::from_secs(60);

type Key = [u8; 32];

struct Entry {
    claims: Map<String, Value>,
    until: Instant,
}

/// Verified tokens' claims by digest.
#[derive(Default)]
pub(super) struct Verified {
    entries: Mutex<HashMap<Key, Entry, foldhash::fast::RandomState>>,
}

impl Verified {
    pub(super) fn key(token: &str) -> Key {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The claims of a token whose signature was verified less than
    /// [`TRUST`] ago.
    pub(super) fn get(&self, key: &Key) -> Option<Map<String, Value>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(key)?;
        (Instant::now() < entry.until).then(|| entry.claims.clone())
    }

    pub(super) fn insert(&self, key: Key, claims: Map<String, Value>) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| now < e.until);
            if entries.len() >= CAPACITY {
                // Full of live entries: a flood of distinct tokens. They
                // are verified as before; the cache only ever saves work.
                return;
            }
        }
        entries.insert(
            key,
            Entry {
                claims,
                until: now + TRUST,
            },
        );
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
