//! TLS from PEM files: the HTTP listener's rustls config (HTTP/2 offered by
//! ALPN, so browsers are not held to six streams per origin) and the gRPC
//! listener's, with optional client certificates for publishers (mTLS).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(String),
    #[error("{0} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey(String),
    #[error("the certificate and key are not usable together: {0}")]
    Config(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.display().to_string()));
    }
    Ok(chain)
}

/// The PEM contents of a certificate chain and key, checked to parse.
pub struct Identity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    pub fn load(files: &TlsFiles) -> Result<Identity, TlsError> {
        let cert_pem = read(&files.cert)?;
        let key_pem = read(&files.key)?;
        let chain = certificates(&cert_pem, &files.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|_| TlsError::NoKey(files.key.display().to_string()))?;
        Ok(Identity {
            cert_pem,
            key_pem,
            chain,
            key,
        })
    }
}

/// The HTTP listener's config: HTTP/2 and HTTP/1.1 by ALPN.
pub fn http_config(identity: &Identity) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The gRPC listener's config; with `client_ca`, publishers must present a
/// certificate signed by it (in addition to their token).
pub fn grpc_config(
    identity: &Identity,
    client_ca: Option<&Path>,
) -> Result<tonic::transport::ServerTlsConfig, TlsError> {
    let mut config = tonic::transport::ServerTlsConfig::new().identity(
        tonic::transport::Identity::from_pem(&identity.cert_pem, &identity.key_pem),
    );
    if let Some(path) = client_ca {
        let pem = read(path)?;
        certificates(&pem, path)?;
        config = config
            .client_ca_root(tonic::transport::Certificate::from_pem(pem))
            .client_auth_optional(false);
    }
    Ok(config)
}
