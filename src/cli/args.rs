//! The flags of every command. Each flag of `serve` also reads an
//! `SSE_BRIDGE_<FLAG>` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::bus::valkey::Durability;

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
    /// TOML configuration file: one key per flag (`-` → `_`), optionally
    /// grouped in tables (`[valkey] url = …` is `valkey_url`). A flag or an
    /// environment variable wins over the file (`sse-bridge config default`
    /// prints every key).
    #[arg(long, env = "SSE_BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Development mode: embedded bus, a random secret unless one is given,
    /// and ready-to-paste tokens and commands printed at start.
    #[arg(long)]
    pub dev: bool,
    /// Serve the developer console at /console (always on with --dev): the
    /// catalogue, a live tail and a publish form. For development: the page
    /// holds no secret; tokens are pasted in and kept in memory.
    #[arg(long, env = "SSE_BRIDGE_CONSOLE")]
    pub console: bool,
    /// Address of the HTTP (SSE) listener.
    #[arg(long, env = "SSE_BRIDGE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Address of the gRPC (publish) listener.
    #[arg(long, env = "SSE_BRIDGE_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// Valkey URL for several nodes: one server (`redis://` or `rediss://`,
    /// with optional `user:password@` and `/<db>`), Valkey Cluster seeds
    /// (`redis+cluster://h1:p1,h2:p2`) or Sentinel
    /// (`redis+sentinel://s1:p1,s2:p2/<master-name>`); without it the
    /// embedded bus is used (docs/scaling.md).
    #[arg(long, env = "SSE_BRIDGE_VALKEY_URL", hide_env_values = true)]
    pub valkey_url: Option<String>,
    /// A file holding the Valkey URL (it may carry a password), so it is
    /// neither in argv nor in the environment.
    #[arg(
        long,
        env = "SSE_BRIDGE_VALKEY_URL_FILE",
        conflicts_with = "valkey_url"
    )]
    pub valkey_url_file: Option<PathBuf>,
    /// Bound on each Valkey command, in milliseconds; past
    /// it publishes fail with UNAVAILABLE and /readyz reports not ready.
    #[arg(long, env = "SSE_BRIDGE_VALKEY_TIMEOUT_MS", default_value_t = 1000)]
    pub valkey_timeout_ms: u64,
    /// When a publish is acknowledged: `none` once the Valkey primary has
    /// it in memory; `aof` once it is fsynced to the primary's append-only
    /// file; `replica` once a replica has it (docs/scaling.md).
    #[arg(long, env = "SSE_BRIDGE_VALKEY_DURABILITY", value_enum, default_value_t = Durability::None)]
    pub valkey_durability: Durability,
    /// How long a publish waits for that confirmation, in milliseconds;
    /// past it the publish fails with UNAVAILABLE (retry with the same
    /// idempotency key).
    #[arg(
        long,
        env = "SSE_BRIDGE_VALKEY_DURABILITY_TIMEOUT_MS",
        default_value_t = 1000
    )]
    pub valkey_durability_timeout_ms: u64,
    /// HS256 secret for subscriber (and, by default, publisher) tokens.
    #[arg(long, env = "SSE_BRIDGE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// A file holding --jwt-secret (surrounding whitespace is ignored).
    #[arg(
        long,
        env = "SSE_BRIDGE_JWT_SECRET_FILE",
        conflicts_with = "jwt_secret"
    )]
    pub jwt_secret_file: Option<PathBuf>,
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
    /// A file holding --publisher-jwt-secret.
    #[arg(
        long,
        env = "SSE_BRIDGE_PUBLISHER_JWT_SECRET_FILE",
        conflicts_with = "publisher_jwt_secret"
    )]
    pub publisher_jwt_secret_file: Option<PathBuf>,
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
    /// Seconds a node keeps serving after SIGTERM with /readyz at 503, so
    /// load balancers take it out before its streams end.
    #[arg(long, env = "SSE_BRIDGE_DRAIN_DELAY_SECS", default_value_t = 0)]
    pub drain_delay_secs: u64,
    /// Then each stream ends with a `retry:` hint drawn from up to this many
    /// milliseconds, so its clients do not all reconnect in the same second.
    #[arg(long, env = "SSE_BRIDGE_DRAIN_JITTER_MS", default_value_t = 1000)]
    pub drain_jitter_ms: u64,
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
    /// Export traces over OTLP/gRPC to this collector, such as
    /// `http://127.0.0.1:4317`: spans for each publish, its bus step and
    /// each node's fan-out. Off when unset, and then free.
    #[arg(long, env = "SSE_BRIDGE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// The fraction of new traces exported (0 to 1). A producer's sampled
    /// `traceparent` is always followed.
    #[arg(long, env = "SSE_BRIDGE_OTLP_SAMPLE_RATIO", default_value_t = 1.0)]
    pub otlp_sample_ratio: f64,
    /// Put the tenant id on publish spans (`sse_bridge.tenant`). Off by
    /// default: a shared tracing backend may not be a place for tenant ids.
    #[arg(long, env = "SSE_BRIDGE_OTLP_TENANT_ATTRIBUTE")]
    pub otlp_tenant_attribute: bool,
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
    #[command(subcommand)]
    pub action: Option<SchemaAction>,
}

#[derive(clap::Subcommand, Debug)]
pub enum SchemaAction {
    /// Print the catalogue's compatibility snapshot (what
    /// `proto/catalogue.json` holds).
    Snapshot,
    /// Compare the catalogue with a snapshot; exit 1 on a breaking change.
    Diff {
        /// The baseline snapshot, e.g. proto/catalogue.json.
        #[arg(long)]
        against: PathBuf,
    },
}
