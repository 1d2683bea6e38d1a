//! Verification keys from a JSON Web Key Set (RFC 7517), read from a file
//! or fetched from a URL, cached, and refreshed when a token names a `kid`
//! the cache does not hold (key rotation) or the cache is older than its
//! lifetime.
//!
//! Fetches happen at most once per 10 s, so tokens with made-up `kid`s
//! cannot turn the bridge into a load generator against the identity
//! provider, and a hanging identity provider never delays a token whose
//! key the bridge already holds.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::Mutex;

use crate::key::Key;

/// Where the set comes from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

impl JwksSource {
    /// `http://` and `https://` are URLs; anything else is a file path.
    pub fn parse(s: &str) -> JwksSource {
        if s.starts_with("https://") || s.starts_with("http://") {
            JwksSource::Url(s.to_owned())
        } else {
            JwksSource::File(PathBuf::from(s))
        }
    }
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::File(p) => write!(f, "{}", p.display()),
            JwksSource::Url(u) => f.write_str(u),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read the JWKS {source_name}: {detail}")]
    Fetch { source_name: String, detail: String },
    #[error("the JWKS {0} holds no usable RSA, EC (P-256/P-384) or Ed25519 signing key")]
    Empty(String),
}

/// How often, at most, the set is fetched again (for an unknown `kid` or
/// a stale set alike).
const MIN_REFRESH: Duration = Duration::from_secs(10);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The keys of one fetch of the set.
struct Cache {
    by_kid: HashMap<String, Key>,
    /// Keys without a `kid`: usable by tokens without one.
    unnamed: Vec<Key>,
    fetched: Instant,
}

/// A cached key set.
///
/// Verification reads the current keys without waiting: a fetch never
/// holds them. At most one fetch runs at a time (the `refresh` lock); a
/// stale set keeps being served while it runs in the background, and only
/// a token whose `kid` the set lacks waits for a fetch, which at most one
/// in [`MIN_REFRESH`] may start.
pub struct Jwks {
    source: JwksSource,
    http: reqwest::Client,
    keys: RwLock<Arc<Cache>>,
    /// How long a fetched set is used before a background refresh.
    max_age: Duration,
    /// Held while fetching; holds when the last fetch started.
    refresh: Mutex<Option<Instant>>,
}
fn key_of(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Key> {
    if let Some(use_) = &jwk.common.public_key_use {
        if *use_ != jsonwebtoken::jwk::PublicKeyUse::Signature {
            return None;
        }
    }
    let algorithms = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        // Symmetric keys in a public set would let anyone who reads it
        // sign tokens.
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key::new(key, algorithms))
}

impl Jwks {
    /// Loads the set once; a source that cannot be read stops start-up.
    /// After `max_age` the set is refreshed in the background.
    pub async fn load(source: JwksSource, max_age: Duration) -> Result<Jwks, JwksError> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| JwksError::Fetch {
                source_name: source.to_string(),
                detail: e.to_string(),
            })?;
        let cache = fetch(&source, &http).await?;
        Ok(Jwks {
            source,
            http,
            keys: RwLock::new(Arc::new(cache)),
            max_age,
            refresh: Mutex::new(None),
        })
    }

    fn current(&self) -> Arc<Cache> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The key for a token's `kid`. A known `kid` never waits: a stale set
    /// is refreshed in the background. An unknown one waits for a fetch
    /// (its own, or one already running), unless one started less than
    /// [`MIN_REFRESH`] ago. `None` when no key fits.
    pub async fn key(self: &Arc<Self>, kid: Option<&str>) -> Option<Key> {
        let keys = self.current();
        if let Some(key) = lookup(&keys, kid) {
            if keys.fetched.elapsed() > self.max_age {
                let this = self.clone();
                tokio::spawn(async move {
                    // Someone else is fetching already: nothing to do.
                    if let Ok(mut last) = this.refresh.try_lock() {
                        this.refetch(&mut last).await;
                    }
                });
            }
            return Some(key);
        }
        let mut last = self.refresh.lock().await;
        // The fetch we may have waited for may have brought the key.
        if let Some(key) = lookup(&self.current(), kid) {
            return Some(key);
        }
        self.refetch(&mut last).await;
        drop(last);
        lookup(&self.current(), kid)
    }

    /// Fetches the set unless a fetch started within [`MIN_REFRESH`]; on
    /// failure the keys we have stay in use.
    async fn refetch(&self, last: &mut Option<Instant>) {
        if last.is_some_and(|at| at.elapsed() < MIN_REFRESH) {
            return;
        }
        *last = Some(Instant::now());
        match fetch(&self.source, &self.http).await {
            Ok(fresh) => {
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
            }
            Err(e) => tracing::warn!(error = %e, "JWKS refresh failed; keeping the keys we have"),
        }
    }
}

fn lookup(cache: &Cache, kid: Option<&str>) -> Option<Key> {
    match kid {
        Some(kid) => cache.by_kid.get(kid).cloned(),
        // Without a kid the choice must be unambiguous.
        None => match (cache.unnamed.as_slice(), cache.by_kid.len()) {
            ([only], 0) => Some(only.clone()),
            ([], 1) => cache.by_kid.values().next().cloned(),
            _ => None,
        },
    }
}

async fn fetch(source: &JwksSource, http: &reqwest::Client) -> Result<Cache, JwksError> {
    let failed = |detail: String| JwksError::Fetch {
        source_name: source.to_string(),
        detail,
    };
    let body = match source {
        JwksSource::File(path) => tokio::fs::read(path)
            .await
            .map_err(|e| failed(e.to_string()))?,
        JwksSource::Url(url) => {
            let response = http
                .get(url)
                .send()
                .await
                .map_err(|e| failed(e.to_string()))?;
            if !response.status().is_success() {
                return Err(failed(format!("HTTP {}", response.status())));
            }
            response
                .bytes()
                .await
                .map_err(|e| failed(e.to_string()))?
                .to_vec()
        }
    };
    let set: JwkSet = serde_json::from_slice(&body).map_err(|e| failed(e.to_string()))?;
    let mut cache = Cache {
        by_kid: HashMap::new(),
        unnamed: Vec::new(),
        fetched: Instant::now(),
    };
    for jwk in &set.keys {
        let Some(key) = key_of(jwk) else { continue };
        match &jwk.common.key_id {
            Some(kid) => {
                cache.by_kid.insert(kid.clone(), key);
            }
            None => cache.unnamed.push(key),
        }
    }
    if cache.by_kid.is_empty() && cache.unnamed.is_empty() {
        return Err(JwksError::Empty(source.to_string()));
    }
    Ok(cache)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};

    use super::*;

    /// An Ed25519 public key: any 32 bytes decode as one.
    fn okp(kid: Option<&str>, fill: u8) -> Value {
        let mut jwk = json!({
            "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([fill; 32]),
        });
        if let Some(kid) = kid {
            jwk["kid"] = json!(kid);
        }
        jwk
    }

    /// A set in a file of its own, rewritten by `write`.
    struct SetFile(PathBuf);

    impl SetFile {
        fn new(keys: &[Value]) -> SetFile {
            let path = std::env::temp_dir().join(format!("jwks-{}.json", uuid::Uuid::new_v4()));
            let file = SetFile(path);
            file.write(keys);
            file
        }

        fn write(&self, keys: &[Value]) {
            std::fs::write(&self.0, json!({ "keys": keys }).to_string()).expect("write the set");
        }

        async fn load(&self) -> Result<Arc<Jwks>, JwksError> {
            Jwks::load(JwksSource::File(self.0.clone()), Duration::from_secs(3600))
                .await
                .map(Arc::new)
        }
    }

    impl Drop for SetFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn only_public_signing_keys_are_taken() {
        let parse = |v: Value| serde_json::from_value(v).expect("a JWK");
        assert!(key_of(&parse(okp(None, 1))).is_some());
        let mut enc = okp(None, 1);
        enc["use"] = json!("enc");
        assert!(key_of(&parse(enc)).is_none(), "an encryption key");
        let secret = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(b"shared")});
        assert!(key_of(&parse(secret)).is_none(), "a symmetric key");
        let x25519 = json!({"kty": "OKP", "crv": "X25519", "x": URL_SAFE_NO_PAD.encode([1u8; 32])});
        assert!(key_of(&parse(x25519)).is_none(), "a key-agreement curve");
    }

    #[tokio::test]
    async fn a_token_without_kid_needs_an_unambiguous_set() {
        let one = SetFile::new(&[okp(Some("a"), 1)]);
        let jwks = one.load().await.expect("loads");
        assert!(jwks.key(None).await.is_some(), "the only key");
        let two = SetFile::new(&[okp(Some("a"), 1), okp(None, 2)]);
        let jwks = two.load().await.expect("loads");
        assert!(jwks.key(None).await.is_none(), "two keys: which one?");
        assert!(jwks.key(Some("a")).await.is_some());
    }

    #[tokio::test]
    async fn an_unknown_kid_fetches_again_at_most_once_per_interval() {
        let file = SetFile::new(&[okp(Some("a"), 1)]);
        let jwks = file.load().await.expect("loads");
        // Rotation: the provider publishes `b`; a token naming it fetches.
        file.write(&[okp(Some("a"), 1), okp(Some("b"), 2)]);
        assert!(jwks.key(Some("b")).await.is_some());
        // Within the interval a made-up kid does not fetch again, so a
        // key published meanwhile waits for the next interval.
        file.write(&[okp(Some("c"), 3)]);
        assert!(jwks.key(Some("made-up")).await.is_none());
        assert!(jwks.key(Some("c")).await.is_none());
        assert!(jwks.key(Some("a")).await.is_some(), "the keys we have stay");
    }

    #[tokio::test]
    async fn a_stale_set_is_served_while_it_is_refreshed_in_the_background() {
        let file = SetFile::new(&[okp(Some("a"), 1)]);
        let jwks = Jwks::load(JwksSource::File(file.0.clone()), Duration::ZERO)
            .await
            .map(Arc::new)
            .expect("loads");
        file.write(&[okp(Some("a"), 1), okp(Some("b"), 2)]);
        assert!(jwks.key(Some("a")).await.is_some(), "served stale");
        let mut refreshed = false;
        for _ in 0..500 {
            if jwks.current().by_kid.contains_key("b") {
                refreshed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refreshed, "the background fetch brought `b`");
    }

    #[tokio::test]
    async fn a_set_that_cannot_be_used_stops_start_up() {
        let missing = JwksSource::File(std::env::temp_dir().join("no-such-jwks.json"));
        let err = Jwks::load(missing, Duration::from_secs(60)).await.err();
        assert!(matches!(err, Some(JwksError::Fetch { .. })), "{err:?}");
        let secrets_only = SetFile::new(&[json!({"kty": "oct", "k": "c2VjcmV0"})]);
        let err = secrets_only.load().await.err();
        assert!(matches!(err, Some(JwksError::Empty(_))), "{err:?}");
        let garbage = SetFile::new(&[]);
        std::fs::write(&garbage.0, "not json").expect("write");
        let err = garbage.load().await.err();
        assert!(matches!(err, Some(JwksError::Fetch { .. })), "{err:?}");
    }
}
