//! The keys a run signs subscriber tokens with: the bridge's HS256 secret,
//! or (`--alg rs256`) a throwaway RSA key pair whose public half the
//! spawned bridge verifies with, the way an application's auth server and
//! a production bridge split them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::ValueEnum;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::clock::now_secs;
use crate::token;

/// The algorithm of the subscriber tokens a run presents.
#[derive(ValueEnum, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Alg {
    Hs256,
    Rs256,
}

/// Signs subscriber tokens for a run.
pub(super) enum Signer {
    Hs256 { secret: String },
    Rs256 { key: EncodingKey, public: PublicPem },
}

/// The RSA public key, in a file for the spawned bridge's
/// `--jwt-public-key`; removed when the run ends.
pub(super) struct PublicPem(pub(super) PathBuf);

impl Drop for PublicPem {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Signer {
    /// `rsa_key`: a PKCS#8 PEM private key to sign with, instead of one
    /// made for the run (making a 2048-bit key takes seconds).
    pub(super) fn new(alg: Alg, secret: &str, rsa_key: Option<&Path>) -> Result<Self> {
        Ok(match alg {
            Alg::Hs256 => Signer::Hs256 {
                secret: secret.to_owned(),
            },
            Alg::Rs256 => {
                let private = match rsa_key {
                    Some(path) => {
                        let pem = std::fs::read_to_string(path)
                            .with_context(|| format!("read --rsa-key {}", path.display()))?;
                        rsa::PrivateKey::from_pkcs8_pem(&pem).with_context(|| {
                            format!("--rsa-key {}: not a PKCS#8 RSA private key", path.display())
                        })?
                    }
                    None => rsa::PrivateKey::new(&mut getrandom::SysRng, 2048)
                        .context("make an RSA key")?,
                };
                let pem = private
                    .to_pkcs8_pem(LineEnding::LF)
                    .context("encode the RSA key")?;
                let key = EncodingKey::from_rsa_pem(pem.as_bytes())?;
                let public = private
                    .to_public_key()
                    .to_public_key_pem(LineEnding::LF)
                    .context("encode the RSA public key")?;
                let path = std::env::temp_dir()
                    .join(format!("sse-bridge-bench-{}.pem", uuid::Uuid::new_v4()));
                std::fs::write(&path, public).context("write the RSA public key")?;
                Signer::Rs256 {
                    key,
                    public: PublicPem(path),
                }
            }
        })
    }

    /// The `serve` flags that make a bridge verify this signer's tokens
    /// (publisher tokens stay HS256 with `secret`).
    pub(super) fn serve_args(&self, secret: &str) -> Vec<String> {
        match self {
            Signer::Hs256 { .. } => vec!["--jwt-secret".into(), secret.into()],
            Signer::Rs256 { public, .. } => vec![
                "--jwt-public-key".into(),
                public.0.display().to_string(),
                "--publisher-jwt-secret".into(),
                secret.into(),
            ],
        }
    }

    /// A subscriber token of `tenant` for `subject`, valid for an hour.
    pub(super) fn subscriber(&self, tenant: &str, subject: &str) -> Result<Arc<str>> {
        let claims = token::subscriber_claims("tenant_id", tenant, subject);
        Ok(match self {
            Signer::Hs256 { secret } => token::mint(secret, claims, 3600)?.into(),
            Signer::Rs256 { key, .. } => sign_rs256(key, claims)?.into(),
        })
    }
}

fn sign_rs256(key: &EncodingKey, mut claims: Map<String, Value>) -> Result<String> {
    let now = now_secs();
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + 3600));
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims,
        key,
    )?)
}
