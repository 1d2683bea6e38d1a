//! The `sse-bridge` command line: `serve`, `token`, `publish`, `tail` and
//! `schema`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;

use std::sync::Arc;

use crate::auth::{Key, Keys, PublisherAuth, Rules, SubscriberAuth, Verifier};
use crate::bus::Retention;
use crate::bus::valkey::ValkeyConfig;
use crate::http::HttpConfig;
use crate::http::listener::ListenerConfig;
use crate::hub::FanoutConfig;
use crate::jwks::{Jwks, JwksSource};
use crate::schema::Schema;
use crate::server::{self, GrpcListener, Settings};
use crate::streams::StreamLimits;
use crate::{client, token};

#[derive(Parser, Debug)]
#[command(
    name = "sse-bridge",
    version,
    about = "Typed events from gRPC producers to browsers over Server-Sent Events"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a bridge node (gRPC publish API + SSE endpoint).
    Serve(Box<ServeArgs>),
    /// Mint an HS256 token for a subscriber or a publisher.
    Token(TokenArgs),
    /// Publish one event from JSON through the gRPC API.
    Publish(PublishArgs),
    /// Close streams on every node: a tenant's, a user's or a channel's
    /// (gRPC `Disconnect`; needs a `streams:admin` token).
    Disconnect(DisconnectArgs),
    /// Print the events of one or more channels as they arrive.
    Tail(TailArgs),
    /// List the event catalogue: names, fields, rules and an example each.
    Schema(SchemaArgs),
    /// Generate client code from the catalogue.
    Codegen(CodegenArgs),
    /// Load-test a bridge through its real APIs (see docs/benchmarks.md).
    Bench(Box<crate::bench::BenchArgs>),
}

#[derive(Args, Debug)]
pub struct CodegenArgs {
    /// What to generate.
    #[arg(value_enum)]
    pub target: CodegenTarget,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum CodegenTarget {
    /// TypeScript declarations of every event payload and the
    /// name → payload map (proto field names, as sent on the wire).
    Typescript,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Development mode: embedded bus, a random secret unless one is given,
    /// and ready-to-paste tokens and commands printed at start.
    #[arg(long)]
    pub dev: bool,
    /// Address of the HTTP (SSE) listener.
    #[arg(long, env = "SSE_BRIDGE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Address of the gRPC (publish) listener.
    #[arg(long, env = "SSE_BRIDGE_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// Valkey URL for several nodes (`redis://` or `rediss://`, with
    /// optional `user:password@` and `/<db>`); without it the embedded bus
    /// is used.
    #[arg(long, env = "SSE_BRIDGE_VALKEY_URL")]
    pub valkey_url: Option<String>,
    /// Bound on each Valkey command, in milliseconds; past
    /// it publishes fail with UNAVAILABLE and /readyz reports not ready.
    #[arg(long, env = "SSE_BRIDGE_VALKEY_TIMEOUT_MS", default_value_t = 1000)]
    pub valkey_timeout_ms: u64,
    /// HS256 secret for subscriber (and, by default, publisher) tokens.
    #[arg(long, env = "SSE_BRIDGE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key (RS256, ES256 or EdDSA, picked from the key) for
    /// subscriber tokens.
    #[arg(long, env = "SSE_BRIDGE_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// JSON Web Key Set for subscriber tokens: a file path or an http(s)
    /// URL. The token's `kid` picks the key; an unknown `kid` refreshes the
    /// set (at most every 10 s), and it is re-read every 5 minutes.
    #[arg(long, env = "SSE_BRIDGE_JWT_JWKS")]
    pub jwt_jwks: Option<String>,
    /// Seconds a fetched JSON Web Key Set is used before it is refreshed in
    /// the background (the stale set keeps being served meanwhile).
    #[arg(long, env = "SSE_BRIDGE_JWT_JWKS_MAX_AGE_SECS", default_value_t = 300)]
    pub jwt_jwks_max_age_secs: u64,
    /// Required `aud` of subscriber tokens: a string, or an array that
    /// contains it. When set, a token without `aud` is refused; when unset,
    /// `aud` is not checked.
    #[arg(long, env = "SSE_BRIDGE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Required `iss` (a string) of subscriber tokens. When set, a token
    /// without `iss` is refused; when unset, `iss` is not checked.
    #[arg(long, env = "SSE_BRIDGE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `typ` claim of subscriber tokens, e.g. `access`. Publisher
    /// tokens verified with the same key must not carry it.
    #[arg(long, env = "SSE_BRIDGE_JWT_TYP")]
    pub jwt_typ: Option<String>,
    /// Clock leeway for `exp`/`nbf`, in seconds.
    #[arg(long, env = "SSE_BRIDGE_JWT_LEEWAY_SECS", default_value_t = 0)]
    pub jwt_leeway_secs: u64,
    /// Claim of subscriber tokens that holds the tenant UUID.
    #[arg(long, env = "SSE_BRIDGE_TENANT_CLAIM", default_value = "tenant_id")]
    pub tenant_claim: String,
    /// HS256 secret for publisher tokens, when not the subscriber secret.
    #[arg(long, env = "SSE_BRIDGE_PUBLISHER_JWT_SECRET", hide_env_values = true)]
    pub publisher_jwt_secret: Option<String>,
    /// PEM public key for publisher tokens.
    #[arg(long, env = "SSE_BRIDGE_PUBLISHER_JWT_PUBLIC_KEY")]
    pub publisher_jwt_public_key: Option<PathBuf>,
    /// JSON Web Key Set (file or URL) for publisher tokens.
    #[arg(long, env = "SSE_BRIDGE_PUBLISHER_JWT_JWKS")]
    pub publisher_jwt_jwks: Option<String>,
    /// Required `aud` of publisher tokens (string, or array containing it);
    /// a token without `aud` is refused. Recommended when publishers share
    /// the subscriber key.
    #[arg(long, env = "SSE_BRIDGE_PUBLISHER_JWT_AUDIENCE")]
    pub publisher_jwt_audience: Option<String>,
    /// Required `iss` (a string) of publisher tokens; a token without `iss`
    /// is refused.
    #[arg(long, env = "SSE_BRIDGE_PUBLISHER_JWT_ISSUER")]
    pub publisher_jwt_issuer: Option<String>,
    /// Origin allowed to open streams from a browser (repeatable).
    #[arg(
        long = "cors-origin",
        env = "SSE_BRIDGE_CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Seconds between keep-alive comments on idle streams.
    #[arg(long, env = "SSE_BRIDGE_KEEPALIVE_SECS", default_value_t = 15)]
    pub keepalive_secs: u64,
    /// Reconnect delay sent to clients in `retry:`, in milliseconds.
    #[arg(long, env = "SSE_BRIDGE_RETRY_MS", default_value_t = 2000)]
    pub retry_ms: u64,
    /// Channels one stream may subscribe to.
    #[arg(long, env = "SSE_BRIDGE_MAX_CHANNELS", default_value_t = 10)]
    pub max_channels: usize,
    /// Events kept per channel for resume.
    #[arg(long, env = "SSE_BRIDGE_HISTORY_LEN", default_value_t = 1000)]
    pub history_len: usize,
    /// Seconds an event is kept for resume.
    #[arg(long, env = "SSE_BRIDGE_HISTORY_TTL_SECS", default_value_t = 3600)]
    pub history_ttl_secs: u64,
    /// Seconds an idempotency key is remembered per channel.
    #[arg(
        long,
        env = "SSE_BRIDGE_IDEMPOTENCY_WINDOW_SECS",
        default_value_t = 300
    )]
    pub idempotency_window_secs: u64,
    /// Largest accepted encoded event, in bytes.
    #[arg(long, env = "SSE_BRIDGE_MAX_PAYLOAD_BYTES", default_value_t = 64 * 1024)]
    pub max_payload_bytes: usize,
    /// Events a stream may fall behind before it is caught up from history.
    #[arg(long, env = "SSE_BRIDGE_STREAM_BUFFER", default_value_t = 256)]
    pub stream_buffer: usize,
    /// Bytes of history a resuming or lagging stream is sent at a time; the
    /// next page is read only once the client has taken this one, so a
    /// client that does not read costs at most one page.
    #[arg(long, env = "SSE_BRIDGE_CATCH_UP_PAGE_BYTES", default_value_t = 256 * 1024)]
    pub catch_up_page_bytes: usize,
    /// Bytes of recently delivered frames the node caches over all channels
    /// (lagging streams catch up from it without a history read; past the
    /// bound the oldest frames go, and catch-up reads history instead).
    #[arg(long, env = "SSE_BRIDGE_RECENT_CACHE_BYTES", default_value_t = 64 << 20)]
    pub recent_cache_bytes: usize,
    /// Embedded bus: bytes of history (event names and payloads) the node
    /// keeps over all channels. Past it the oldest events of any channel go
    /// first; a client resuming into them gets `bridge.reset`. (With Valkey,
    /// bound its memory with `maxmemory`: docs/operations.md.)
    #[arg(long, env = "SSE_BRIDGE_MAX_HISTORY_BYTES", default_value_t = 256 << 20)]
    pub max_history_bytes: usize,
    /// Open streams per tenant on this node (0: no limit); more get 429.
    #[arg(
        long,
        env = "SSE_BRIDGE_MAX_STREAMS_PER_TENANT",
        default_value_t = 10_000
    )]
    pub max_streams_per_tenant: usize,
    /// Open streams per token subject (`sub`) on this node (0: no limit);
    /// more get 429.
    #[arg(
        long,
        env = "SSE_BRIDGE_MAX_STREAMS_PER_SUBJECT",
        default_value_t = 100
    )]
    pub max_streams_per_subject: usize,
    /// Events per second each publisher (token `sub`) may publish on this
    /// node (0: no limit); more get RESOURCE_EXHAUSTED.
    #[arg(long, env = "SSE_BRIDGE_PUBLISH_RATE", default_value_t = 10_000)]
    pub publish_rate: u32,
    /// Events a publisher may send at once above the rate (default: two
    /// seconds' worth).
    #[arg(long, env = "SSE_BRIDGE_PUBLISH_BURST")]
    pub publish_burst: Option<u32>,
    /// Longest accepted request URL (path and query), in bytes; longer gets
    /// 414.
    #[arg(long, env = "SSE_BRIDGE_MAX_URL_BYTES", default_value_t = 8 * 1024)]
    pub max_url_bytes: usize,
    /// Largest accepted request headers (names and values), in bytes;
    /// larger gets 431.
    #[arg(long, env = "SSE_BRIDGE_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Seconds a connection may take to send its request head, keep no
    /// request open (HTTP/1 keep-alive, HTTP/2 and gRPC alike), or leave our
    /// writes unaccepted (peer gone, or not reading), before it is closed.
    /// Also the HTTP/2 keep-alive timeout of both listeners.
    #[arg(long, env = "SSE_BRIDGE_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// Connections the HTTP listener holds open at once (0: no cap); more
    /// are closed at accept. Keep it below the process's open-files limit.
    #[arg(
        long,
        env = "SSE_BRIDGE_MAX_HTTP_CONNECTIONS",
        default_value_t = 16_384
    )]
    pub max_http_connections: usize,
    /// Connections the gRPC listener holds open at once (0: no cap); more
    /// are closed at accept.
    #[arg(long, env = "SSE_BRIDGE_MAX_GRPC_CONNECTIONS", default_value_t = 1024)]
    pub max_grpc_connections: usize,
    /// Seconds shutdown waits for open connections and in-flight publishes
    /// before it exits anyway.
    #[arg(long, env = "SSE_BRIDGE_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// PEM certificate chain: serve HTTPS (HTTP/2 by ALPN) and gRPC over TLS.
    #[arg(long, env = "SSE_BRIDGE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SSE_BRIDGE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): publishers must present a client certificate
    /// signed by one (mTLS on the gRPC listener; needs --tls-cert).
    #[arg(long, env = "SSE_BRIDGE_GRPC_CLIENT_CA", requires = "tls_cert")]
    pub grpc_client_ca: Option<PathBuf>,
    /// Log format: `plain` text or `json` lines (one object per event).
    #[arg(long, env = "SSE_BRIDGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// HS256 secret to sign with.
    #[arg(long, env = "SSE_BRIDGE_JWT_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Mint a publisher token (scope `events:publish`) instead of a
    /// subscriber token.
    #[arg(long)]
    pub publisher: bool,
    /// Publisher: the space-separated `scope` claim, e.g.
    /// `"events:publish streams:admin"` to also allow `Disconnect`.
    #[arg(long, default_value = crate::auth::PUBLISH_SCOPE, requires = "publisher")]
    pub scope: String,
    /// Subscriber: the tenant UUID.
    #[arg(long, required_unless_present = "publisher")]
    pub tenant: Option<String>,
    /// Publisher: tenants it may publish to (comma-separated UUIDs, or `*`).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub tenants: Vec<String>,
    /// The `sub` claim.
    #[arg(long, default_value = "dev")]
    pub sub: String,
    /// Claim that holds the tenant (subscriber tokens).
    #[arg(long, default_value = "tenant_id")]
    pub tenant_claim: String,
    /// `typ` claim to add, e.g. `access`.
    #[arg(long)]
    pub typ: Option<String>,
    /// `aud` claim to add.
    #[arg(long)]
    pub aud: Option<String>,
    /// `iss` claim to add.
    #[arg(long)]
    pub iss: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 1800)]
    pub ttl: u64,
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// gRPC address of a bridge.
    #[arg(
        long,
        env = "SSE_BRIDGE_GRPC_TARGET",
        default_value = "http://127.0.0.1:50051"
    )]
    pub target: String,
    /// Publisher token.
    #[arg(long, env = "SSE_BRIDGE_PUBLISHER_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Channel `<prefix>:<tenant_id>:<resource_id>`.
    #[arg(long)]
    pub channel: String,
    /// Event name, e.g. `scan.progress` (`sse-bridge schema` lists them).
    #[arg(long)]
    pub event: String,
    /// The payload as JSON (proto or JSON field names).
    #[arg(long)]
    pub data: String,
    /// Idempotency key: publishing again with it within the window returns
    /// the first id.
    #[arg(long, default_value = "")]
    pub idempotency_key: String,
}

#[derive(Args, Debug)]
#[command(group(
    clap::ArgGroup::new("whose")
        .required(true)
        .args(["tenant", "subject", "channel"])
))]
pub struct DisconnectArgs {
    /// gRPC address of a bridge (any node: the order reaches every node).
    #[arg(
        long,
        env = "SSE_BRIDGE_GRPC_TARGET",
        default_value = "http://127.0.0.1:50051"
    )]
    pub target: String,
    /// Admin token: scope `streams:admin`, with `tenants` covering the target
    /// (`sse-bridge token --publisher --scope streams:admin --tenants …`).
    #[arg(long, env = "SSE_BRIDGE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Every stream of this tenant (UUID).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Every stream opened with a token of this `sub`.
    #[arg(long)]
    pub subject: Option<String>,
    /// With --subject: only in this tenant; without it, in every tenant
    /// (which needs `tenants: ["*"]`).
    #[arg(long, requires = "subject")]
    pub subject_tenant: Option<String>,
    /// Every stream that includes this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// Sent to the closed streams in `bridge.revoked`.
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Args, Debug)]
pub struct TailArgs {
    /// HTTP base URL of a bridge.
    #[arg(long, env = "SSE_BRIDGE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Subscriber token.
    #[arg(long, env = "SSE_BRIDGE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Channel to follow (repeatable).
    #[arg(long = "channel", required = true)]
    pub channels: Vec<String>,
    /// Resume after this cursor.
    #[arg(long)]
    pub last_event_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct SchemaArgs {
    /// Print the catalogue as JSON.
    #[arg(long)]
    pub json: bool,
}

fn random_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

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
        let keys = self.subscriber_keys().await?;
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
        if shared_key && !self.dev {
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
        let publisher_keys = self.publisher_keys(&keys).await?;
        if self.idle_timeout_secs == 0 {
            bail!("--idle-timeout-secs must be at least 1");
        }
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
        let publish_rate = (self.publish_rate > 0).then(|| crate::rate::Rate {
            per_sec: f64::from(self.publish_rate),
            burst: f64::from(
                self.publish_burst
                    .unwrap_or(self.publish_rate.saturating_mul(2))
                    .max(1),
            ),
        });
        let cors_origins = self
            .cors_origins
            .iter()
            .map(|o| {
                o.parse()
                    .with_context(|| format!("bad --cors-origin `{o}`"))
            })
            .collect::<Result<Vec<_>>>()?;
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
                cors_origins,
                max_url_bytes: self.max_url_bytes,
                max_header_bytes: self.max_header_bytes,
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
        })
    }
}

fn print_dev_banner(
    args: &ServeArgs,
    secret: &str,
    http: SocketAddr,
    grpc: SocketAddr,
) -> Result<()> {
    let tenant = uuid::Uuid::new_v4().to_string();
    let day = 24 * 3600;
    let sub = token::mint(
        secret,
        token::subscriber_claims(&args.tenant_claim, &tenant, "dev-user"),
        day,
    )?;
    let publ = token::mint(
        secret,
        token::publisher_claims(
            "dev-publisher",
            crate::auth::PUBLISH_SCOPE,
            &["*".to_owned()],
        ),
        day,
    )?;
    let channel = format!("scans:{tenant}:scan-1");
    println!(
        r#"
sse-bridge dev server (embedded bus)
  SSE   http://{http}/v1/events
  gRPC  http://{grpc}
  JWT secret (HS256): {secret}

Subscriber token (tenant {tenant}, 24 h):
  {sub}
Publisher token (all tenants, 24 h):
  {publ}

Follow a channel (another terminal):
  sse-bridge tail --url http://{http} --token {sub} --channel {channel}
or with curl:
  curl -N -H 'Authorization: Bearer {sub}' 'http://{http}/v1/events?channel={channel}'

Publish an event:
  sse-bridge publish --target http://{grpc} --token {publ} --channel {channel} --event scan.progress --data '{{"scan_id":"{tenant}","checked":3,"total":10}}'
"#
    );
    Ok(())
}

async fn serve(mut args: ServeArgs) -> Result<()> {
    let mut dev_secret = None;
    if args.dev {
        if args.valkey_url.is_some() {
            bail!("--dev uses the embedded bus; omit --valkey-url");
        }
        if args.jwt_secret.is_none() && args.jwt_public_key.is_none() {
            args.jwt_secret = Some(random_secret());
        }
        dev_secret = args.jwt_secret.clone();
    }
    let settings = args.settings().await?;
    let running = server::start(settings).await?;
    if let Some(secret) = dev_secret {
        print_dev_banner(&args, &secret, running.http_addr, running.grpc_addr)?;
    }
    running.run_until_signal().await;
    Ok(())
}

fn mint_token(args: TokenArgs) -> Result<()> {
    let mut claims = if args.publisher {
        token::publisher_claims(&args.sub, &args.scope, &args.tenants)
    } else {
        let tenant = args.tenant.clone().unwrap_or_default();
        crate::channel::parse_tenant(&tenant)
            .map_err(|_| anyhow::anyhow!("--tenant must be a hyphenated UUID"))?;
        token::subscriber_claims(&args.tenant_claim, &tenant, &args.sub)
    };
    for (name, value) in [("typ", &args.typ), ("aud", &args.aud), ("iss", &args.iss)] {
        if let Some(v) = value {
            claims.insert(name.to_owned(), serde_json::json!(v));
        }
    }
    println!("{}", token::mint(&args.secret, claims, args.ttl)?);
    Ok(())
}

async fn publish(args: PublishArgs) -> Result<()> {
    let channel = crate::channel::Channel::parse(&args.channel)?;
    let event = Schema::embedded().event_from_json(&args.event, &args.data)?;
    let mut client = client::connect(&args.target, &args.token).await?;
    let request = client::request(
        client::channel(
            channel.prefix(),
            &channel.tenant().to_string(),
            channel.resource(),
        ),
        event,
        &args.idempotency_key,
    );
    match client.publish(request).await {
        Ok(response) => {
            let r = response.into_inner();
            if r.duplicate {
                println!(
                    "{} (duplicate: already published with this idempotency key)",
                    r.id
                );
            } else {
                println!("{}", r.id);
            }
            Ok(())
        }
        Err(status) => bail!(refusal(&status)),
    }
}

/// A gRPC refusal as a person reads it: code, message, and any field
/// violations the message left out.
fn refusal(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    let mut message = format!("{:?}: {}", status.code(), status.message());
    // The bridge's message already names each violation; the structured
    // details add only what it left out.
    if let Some(bad) = status.get_details_bad_request() {
        for v in bad.field_violations {
            let line = format!("{}: {}", v.field, v.description);
            if !status.message().contains(&line) {
                message.push_str(&format!("\n  {line}"));
            }
        }
    }
    message
}

async fn disconnect(args: DisconnectArgs) -> Result<()> {
    use crate::proto::ssebridge::v1 as pb;
    use pb::disconnect_request::Target;
    let target = match (args.tenant, args.subject, args.channel) {
        (Some(tenant), None, None) => Target::TenantId(tenant),
        (None, Some(subject), None) => Target::Subject(pb::SubjectTarget {
            subject,
            tenant_id: args.subject_tenant.unwrap_or_default(),
        }),
        (None, None, Some(raw)) => {
            let channel = crate::channel::Channel::parse(&raw)?;
            Target::Channel(client::channel(
                channel.prefix(),
                &channel.tenant().to_string(),
                channel.resource(),
            ))
        }
        _ => bail!("give one of --tenant, --subject or --channel"),
    };
    let mut client = client::connect(&args.target, &args.token).await?;
    let request = pb::DisconnectRequest {
        target: Some(target),
        reason: args.reason,
    };
    match client.disconnect(request).await {
        Ok(response) => {
            let nodes = response.into_inner().nodes;
            println!(
                "order sent to {nodes} node{}",
                if nodes == 1 { "" } else { "s" }
            );
            Ok(())
        }
        Err(status) => bail!(refusal(&status)),
    }
}

async fn tail(args: TailArgs) -> Result<()> {
    let mut url = reqwest::Url::parse(&args.url)
        .with_context(|| format!("bad --url `{}`", args.url))?
        .join("/v1/events")?;
    {
        let mut q = url.query_pairs_mut();
        for c in &args.channels {
            q.append_pair("channel", c);
        }
        if let Some(id) = &args.last_event_id {
            q.append_pair("last_event_id", id);
        }
    }
    let http = reqwest::Client::builder().no_proxy().build()?;
    let response = http
        .get(url)
        .bearer_auth(&args.token)
        .send()
        .await
        .context("cannot reach the bridge")?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        bail!("{status}: {body}");
    }
    use eventsource_stream::Eventsource;
    let mut events = response.bytes_stream().eventsource();
    while let Some(event) = events.next().await {
        let event = event.context("stream broke")?;
        println!(
            "id: {}\nevent: {}\ndata: {}\n",
            event.id, event.event, event.data
        );
    }
    Ok(())
}

fn schema(args: SchemaArgs) -> Result<()> {
    let described = Schema::embedded().describe();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&described)?);
        return Ok(());
    }
    let empty = Vec::new();
    for event in described["events"].as_array().unwrap_or(&empty) {
        println!(
            "{}  ({})",
            event["name"].as_str().unwrap_or(""),
            event["message"].as_str().unwrap_or("")
        );
        for f in event["fields"].as_array().unwrap_or(&empty) {
            let rules: Vec<&str> = f["rules"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter_map(|r| r.as_str())
                .collect();
            let rules = if rules.is_empty() {
                String::new()
            } else {
                format!("  [{}]", rules.join(", "))
            };
            println!(
                "  {} {}{}",
                f["type"].as_str().unwrap_or(""),
                f["name"].as_str().unwrap_or(""),
                rules
            );
        }
        println!("  example: {}\n", event["example"]);
    }
    Ok(())
}

fn codegen(args: CodegenArgs) -> Result<()> {
    let text = match args.target {
        CodegenTarget::Typescript => crate::schema::typescript::generate(Schema::embedded()),
    };
    match args.out {
        Some(path) => std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Token(args) => mint_token(args),
        Command::Publish(args) => publish(args).await,
        Command::Disconnect(args) => disconnect(args).await,
        Command::Tail(args) => tail(args).await,
        Command::Schema(args) => schema(args),
        Command::Codegen(args) => codegen(args),
        Command::Bench(args) => crate::bench::run(*args).await,
    }
}
