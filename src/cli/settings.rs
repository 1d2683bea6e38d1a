//! `serve`'s flags, checked and turned into a node's [`Settings`]. Every
//! check that needs no I/O runs before any key is loaded (a JWKS may be
//! fetched over the network).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::args::ServeArgs;
use crate::auth::{Keys, PublisherAuth, Rules, SubscriberAuth, Verifier};
use crate::bus::Retention;
use crate::bus::valkey::ValkeyConfig;
use crate::http::HttpConfig;
use crate::http::listener::ListenerConfig;
use crate::hub::FanoutConfig;
use crate::jwks::{Jwks, JwksSource};
use crate::key::Key;
use crate::server::{GrpcListener, Settings};
use crate::streams::StreamLimits;

impl ServeArgs {
    fn jwks_max_age(&self) -> Duration {
        Duration::from_secs(self.jwt_jwks_max_age_secs.max(1))
    }

    async fn subscriber_keys(&self) -> Result<Keys> {
        Ok(
            match (&self.jwt_secret, &self.jwt_public_key, &self.jwt_jwks) {
                (Some(secret), None, None) => Keys::One(Key::hs256(secret)?),
                (None, Some(path), None) => Keys::One(Key::public_pem_file(path)?),
                (None, None, Some(jwks)) => Keys::Set(Arc::new(
                    Jwks::load(JwksSource::parse(jwks), self.jwks_max_age()).await?,
                )),
                (None, None, None) => bail!(
                    "no token key: set --jwt-secret, --jwt-public-key or --jwt-jwks (SSE_BRIDGE_JWT_SECRET / SSE_BRIDGE_JWT_PUBLIC_KEY / SSE_BRIDGE_JWT_JWKS), or run `sse-bridge serve --dev`"
                ),
                _ => bail!("set only one of --jwt-secret, --jwt-public-key and --jwt-jwks"),
            },
        )
    }

    async fn publisher_keys(&self, subscriber: &Keys) -> Result<Keys> {
        Ok(
            match (
                &self.publisher_jwt_secret,
                &self.publisher_jwt_public_key,
                &self.publisher_jwt_jwks,
            ) {
                (Some(secret), None, None) => Keys::One(Key::hs256(secret)?),
                (None, Some(path), None) => Keys::One(Key::public_pem_file(path)?),
                (None, None, Some(jwks)) => Keys::Set(Arc::new(
                    Jwks::load(JwksSource::parse(jwks), self.jwks_max_age()).await?,
                )),
                (None, None, None) => subscriber.clone(),
                _ => bail!(
                    "set only one of --publisher-jwt-secret, --publisher-jwt-public-key and --publisher-jwt-jwks"
                ),
            },
        )
    }

    /// Checks the flags and builds the node's settings.
    pub async fn settings(&self) -> Result<Settings> {
        if self.max_channels == 0 {
            bail!("--max-channels must be at least 1");
        }
        if self.keepalive_secs == 0 {
            bail!("--keepalive-secs must be at least 1");
        }
        if self.idle_timeout_secs == 0 {
            bail!("--idle-timeout-secs must be at least 1");
        }
        let rules = Rules {
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
            typ: self.jwt_typ.clone(),
            refused_typ: None,
            leeway_secs: self.jwt_leeway_secs,
        };
        let shared_key = self.publisher_jwt_secret.is_none()
            && self.publisher_jwt_public_key.is_none()
            && self.publisher_jwt_jwks.is_none();
        let any_key =
            self.jwt_secret.is_some() || self.jwt_public_key.is_some() || self.jwt_jwks.is_some();
        // Without any key start-up fails below, with the message that matters.
        if shared_key && any_key && !self.dev {
            tracing::warn!(
                "publisher tokens are verified with the subscriber key: any token that key signs with `scope` and `tenants` can publish; set --publisher-jwt-secret/-public-key/-jwks, or at least --publisher-jwt-audience (docs/auth.md)"
            );
        }
        let publisher_rules = Rules {
            audience: self.publisher_jwt_audience.clone(),
            issuer: self.publisher_jwt_issuer.clone(),
            typ: None,
            // With one key for both, a subscriber token must not pass as a
            // publisher token.
            refused_typ: if shared_key {
                self.jwt_typ.clone()
            } else {
                None
            },
            leeway_secs: self.jwt_leeway_secs,
        };
        let idle_timeout = Duration::from_secs(self.idle_timeout_secs);
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::Identity::load(&crate::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            })?),
            _ => None,
        };
        let http_tls = identity.as_ref().map(crate::tls::http_config).transpose()?;
        let grpc_tls = identity
            .as_ref()
            .map(|id| crate::tls::grpc_config(id, self.grpc_client_ca.as_deref()))
            .transpose()?;
        // A rate of 0 is no limit; the burst defaults to two seconds' worth.
        let burst = self
            .publish_burst
            .unwrap_or(self.publish_rate.saturating_mul(2))
            .max(1);
        let publish_rate = NonZeroU32::new(self.publish_rate)
            .zip(NonZeroU32::new(burst))
            .map(|(per_sec, burst)| crate::rate::Rate { per_sec, burst });
        let cors_origins = self
            .cors_origins
            .iter()
            .map(|o| {
                o.parse()
                    .with_context(|| format!("bad --cors-origin `{o}`"))
            })
            .collect::<Result<Vec<_>>>()?;
        // Last: a JWKS may be fetched over the network, and a bad flag
        // should not wait for it.
        let keys = self.subscriber_keys().await?;
        let publisher_keys = self.publisher_keys(&keys).await?;
        Ok(Settings {
            http_addr: self.http_addr,
            grpc_addr: self.grpc_addr,
            subscriber_auth: SubscriberAuth::new(
                Verifier::new(keys, &rules),
                self.tenant_claim.clone(),
            ),
            publisher_auth: PublisherAuth::new(Verifier::new(publisher_keys, &publisher_rules)),
            http: HttpConfig {
                max_channels: self.max_channels,
                keepalive: Duration::from_secs(self.keepalive_secs),
                retry: Duration::from_millis(self.retry_ms),
                drain_jitter: Duration::from_millis(self.drain_jitter_ms),
                cors_origins,
                max_url_bytes: self.max_url_bytes,
                max_header_bytes: self.max_header_bytes,
                // The gRPC port is known once bound: the server fills it in.
                console: None,
            },
            retention: Retention {
                max_len: self.history_len.max(1),
                max_age: Duration::from_secs(self.history_ttl_secs.max(1)),
                idempotency_window: Duration::from_secs(self.idempotency_window_secs),
            },
            max_payload_bytes: self.max_payload_bytes,
            max_history_bytes: self.max_history_bytes,
            fanout: FanoutConfig {
                capacity: self.stream_buffer.max(1),
                recent_budget: self.recent_cache_bytes,
                page_bytes: self.catch_up_page_bytes.max(1),
            },
            valkey: self.valkey_url.as_ref().map(|url| ValkeyConfig {
                url: url.clone(),
                timeout: Duration::from_millis(self.valkey_timeout_ms.max(1)),
                durability: self.valkey_durability,
                durability_timeout: Duration::from_millis(self.valkey_durability_timeout_ms.max(1)),
            }),
            limits: StreamLimits {
                per_tenant: self.max_streams_per_tenant,
                per_subject: self.max_streams_per_subject,
            },
            publish_rate,
            listener: ListenerConfig {
                tls: http_tls,
                idle_timeout,
                max_head_bytes: self.max_url_bytes + self.max_header_bytes + 4096,
                ping_every: Duration::from_secs(self.keepalive_secs),
                max_connections: self.max_http_connections,
            },
            grpc: GrpcListener {
                tls: grpc_tls,
                idle_timeout,
                ping_every: Duration::from_secs(self.keepalive_secs),
                max_connections: self.max_grpc_connections,
            },
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            drain_delay: Duration::from_secs(self.drain_delay_secs),
            trace_tenant: self.otlp_tenant_attribute,
            console: self.console || self.dev,
        })
    }
}
