//! A token verification key and the algorithms it allows: an HS256
//! secret, or a PEM public key whose type decides the algorithm. Shared by
//! [`crate::auth`] (one configured key) and [`crate::jwks`] (a key set).

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey};

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
    /// The key itself.
    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.key
    }

    /// The algorithms a token signed with this key may name: the key's
    /// type decides, so an RSA key never accepts an HS256 token signed with
    /// its public half.
    pub(crate) fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

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
