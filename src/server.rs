//! Wires a node together: bus, hub, the gRPC and HTTP listeners, and
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use crate::auth::{PublisherAuth, SubscriberAuth};
use crate::bus::valkey::{ValkeyBus, ValkeyConfig};
use crate::bus::{Bus, Retention, memory::MemoryBus};
use crate::connections::{Activity, Gate, IdleIo, TrackLayer, tune};
use crate::grpc::PublisherApi;
use crate::http::listener::ListenerConfig;
use crate::http::{self, HttpConfig};
use crate::hub::{Fanout, FanoutConfig, Hub};
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::publish::PublishService;
use crate::rate::Rate;
use crate::schema::Schema;
use crate::streams::{StreamLimits, Streams};

/// Why a node could not reach its Valkey at start.
pub use crate::bus::valkey::ConnectError as ValkeyError;
/// When a publish on Valkey is acknowledged (`--valkey-durability`).
pub use crate::bus::valkey::Durability as ValkeyDurability;

/// How often the gRPC health status is matched to the bus.
const HEALTH_EVERY: Duration = Duration::from_millis(500);

/// Everything a node needs to start. Built from the `serve` flags
/// ([`crate::cli::ServeArgs::settings`]): one way to configure a node, with
/// the flags' names, checks and defaults.
#[derive(Clone)]
pub struct Settings {
    pub(crate) http_addr: SocketAddr,
    pub(crate) grpc_addr: SocketAddr,
    pub(crate) subscriber_auth: SubscriberAuth,
    pub(crate) publisher_auth: PublisherAuth,
    pub(crate) http: HttpConfig,
    pub(crate) retention: Retention,
    pub(crate) max_payload_bytes: usize,
    /// Bound on the embedded bus's history over all channels, in bytes.
    pub(crate) max_history_bytes: usize,
    /// Listener buffers, the recent-frame cache and catch-up pages.
    pub(crate) fanout: FanoutConfig,
    /// `None`: the embedded bus.
    pub(crate) valkey: Option<ValkeyConfig>,
    pub(crate) limits: StreamLimits,
    /// Per-publisher rate; `None` for no limit.
    pub(crate) publish_rate: Option<Rate>,
    pub(crate) listener: ListenerConfig,
    pub(crate) grpc: GrpcListener,
    /// How long shutdown waits for open connections and in-flight calls.
    pub(crate) shutdown_grace: Duration,
    /// How long a node keeps serving after SIGTERM, not ready.
    pub(crate) drain_delay: Duration,
    /// Whether publish spans carry the tenant id.
    pub(crate) trace_tenant: bool,
    /// Whether `/console` is served.
    pub(crate) console: bool,
}

/// Connection bounds of the gRPC listener.
#[derive(Clone)]
pub struct GrpcListener {
    /// TLS (and client certificates, for mTLS).
    pub(crate) tls: Option<tonic::transport::ServerTlsConfig>,
    /// A connection with no call open this long is closed; also the HTTP/2
    /// keep-alive timeout.
    pub(crate) idle_timeout: Duration,
    /// HTTP/2 PING interval, to find dead peers.
    pub(crate) ping_every: Duration,
    /// Connections open at once; more are closed at accept (0: no cap).
    pub(crate) max_connections: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the reflection service: {0}")]
    Reflection(String),
    #[error("cannot set up gRPC TLS: {0}")]
    GrpcTls(String),
    #[error(transparent)]
    Valkey(#[from] ValkeyError),
}

/// A started node.
pub struct Running {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    draining: watch::Sender<bool>,
    /// Open streams are told to reconnect through their tickets.
    streams: Arc<Streams>,
    grace: Duration,
    drain_delay: Duration,
    http: JoinHandle<()>,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Connections the kernel may hold for a listener before it accepts them.
/// `TcpListener::bind` asks for 128: a fleet of browsers coming back at once
/// overflows that, and each SYN the kernel drops costs its client a second
/// (the SYN retransmission timeout) — measured in `bench connect`
/// (performance-log.md, change 38). The kernel caps this at
/// `net.core.somaxconn` (4096 by default since Linux 5.4).
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    let listen = || {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        // As `TcpListener::bind` does: a restarted node rebinds its port
        // while the old connections linger in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().map_err(|source| StartError::Bind { addr, source })
}

/// Binds both listeners and serves until [`Running::shutdown`].
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let http_listener = bind(settings.http_addr).await?;
    let grpc_listener = bind(settings.grpc_addr).await?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: settings.http_addr,
            source,
        })?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: settings.grpc_addr,
            source,
        })?;

    // Before anything records, so nothing is lost to the no-op recorder.
    let metrics = crate::metrics::handle();
    let fanout = Fanout::new(settings.fanout);
    // The node's open streams: their limits, and the revocation orders
    // that close them.
    let streams = Streams::new(settings.limits);
    let bus: Arc<dyn Bus> = match &settings.valkey {
        None => Arc::new(MemoryBus::new(
            settings.retention,
            settings.max_history_bytes,
            fanout.clone(),
            streams.clone(),
        )),
        Some(config) => Arc::new(
            ValkeyBus::connect(config, settings.retention, fanout.clone(), streams.clone()).await?,
        ),
    };
    let hub = Hub::new(bus.clone(), fanout);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (draining, draining_rx) = watch::channel(false);

    let mut http_config = settings.http.clone();
    http_config.console = settings.console.then_some(grpc_addr.port());
    let router = http::router(
        hub.clone(),
        streams.clone(),
        settings.subscriber_auth.clone(),
        http_config,
        draining_rx.clone(),
        metrics,
    );
    let http = tokio::spawn(http::listener::serve(
        http_listener,
        router,
        settings.listener.clone(),
        shutdown_rx.clone(),
        settings.shutdown_grace,
    ));

    let mut service =
        PublishService::new(Schema::embedded(), bus.clone(), settings.max_payload_bytes);
    if let Some(rate) = settings.publish_rate {
        service = service.with_rate_limit(rate);
    }
    service.trace_tenant = settings.trace_tenant;
    let api = PublisherApi::new(service, settings.publisher_auth.clone(), bus.clone());
    let (health, health_service) = tonic_health::server::health_reporter();
    type Served = crate::proto::server::publisher_server::PublisherServer<PublisherApi>;
    health.set_serving::<Served>().await;
    // gRPC health follows the bus, like /readyz: publishing needs it.
    let mut health_down = shutdown_rx.clone();
    tokio::spawn(async move {
        let mut serving = true;
        loop {
            tokio::select! {
                _ = health_down.wait_for(|d| *d) => break,
                _ = tokio::time::sleep(HEALTH_EVERY) => {}
            }
            let ready = bus.ready().await && !*draining_rx.borrow();
            if ready != serving {
                serving = ready;
                if ready {
                    health.set_serving::<Served>().await;
                } else {
                    health.set_not_serving::<Served>().await;
                }
            }
        }
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| StartError::Reflection(e.to_string()))?;
    // Many deployed tools (grpcurl, older grpcui) still ask v1alpha.
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| StartError::Reflection(e.to_string()))?;
    // Room for an envelope at the limit plus the request around it; larger
    // messages are refused by tonic before they are decoded.
    let max_message = settings.max_payload_bytes.saturating_mul(2).max(64 * 1024) + 16 * 1024;
    let mut grpc_down = shutdown_rx;
    let limits = settings.grpc.clone();
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(limits.ping_every))
        .http2_keepalive_timeout(Some(limits.idle_timeout));
    if let Some(tls) = limits.tls.clone() {
        builder = builder
            .tls_config(tls)
            .map_err(|e| StartError::GrpcTls(e.to_string()))?;
    }
    // Accepted sockets come from our listener, so tonic does not set their
    // options: without TCP_NODELAY small responses wait on Nagle's
    // algorithm and the peer's delayed ACK. They are set on the listener,
    // whose accepted sockets inherit them (`tune`). Past the cap a socket is closed
    // at once; each admitted one closes once it keeps no call open for the
    // idle timeout.
    let gate = Gate::new(limits.max_connections, "grpc");
    tune(&grpc_listener, limits.idle_timeout);
    let incoming = TcpListenerStream::new(grpc_listener).filter_map(move |conn| match conn {
        Ok(tcp) => {
            let admitted = gate.admit()?;
            Some(Ok(IdleIo::new(
                tcp,
                Activity::new(),
                limits.idle_timeout,
                admitted,
                "grpc",
            )))
        }
        Err(e) => Some(Err(e)),
    });
    // Browsers and edge runtimes speak gRPC-Web (HTTP/1.1 or 2, trailers
    // in the body); tonic-web translates it for the same services. CORS
    // answers preflights for the configured origins only.
    let cors = grpc_web_cors(
        &settings.http.cors_origins,
        settings.console.then_some(http_addr.port()),
    );
    let grpc = tokio::spawn(async move {
        builder
            .accept_http1(true)
            .layer(tower::util::option_layer(cors))
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(TrackLayer)
            .layer(tower::util::MapResponseLayer::new(
                crate::grpc::transport_status,
            ))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(api.into_server(max_message))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = grpc_down.wait_for(|d| *d).await;
            })
            .await
    });
    tracing::info!(%http_addr, %grpc_addr, "sse-bridge listening");
    Ok(Running {
        http_addr,
        grpc_addr,
        shutdown,
        draining,
        streams,
        grace: settings.shutdown_grace,
        drain_delay: settings.drain_delay,
        http,
        grpc,
    })
}

impl Running {
    /// Stops accepting, tells open streams to reconnect, and waits for both
    /// listeners to finish.
    /// Calls in flight finish; whatever is still open at the grace deadline
    /// is cut.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.streams.close_all();
        let grpc_abort = self.grpc.abort_handle();
        let deadline = tokio::time::Instant::now() + self.grace;
        // The HTTP listener bounds its own drain by the grace period.
        let _ = self.http.await;
        if tokio::time::timeout_at(deadline, self.grpc).await.is_err() {
            tracing::warn!("gRPC calls still open at the shutdown deadline; cutting them");
            grpc_abort.abort();
        }
    }

    /// Serves until SIGINT/SIGTERM, then shuts down.
    pub async fn run_until_signal(self) {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        return self.shutdown().await;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        self.drain().await;
    }

    /// A rolling update's way out: `/readyz` and gRPC health turn
    /// not-ready at once, the node keeps serving for the drain delay (load
    /// balancers take it out meanwhile), then shuts down: every stream ends
    /// with its own jittered `retry:` and reconnects elsewhere with its
    /// cursor.
    pub async fn drain(self) {
        let _ = self.draining.send(true);
        tracing::info!(delay = ?self.drain_delay, "draining: not ready, still serving");
        tokio::time::sleep(self.drain_delay).await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// CORS for gRPC-Web calls from the configured origins (none: no CORS
/// headers, so browsers on other origins cannot call).
///
/// With the console on, pages of this node's HTTP listener (its port, on
/// whichever host name the browser used) may call too: the console is one.
fn grpc_web_cors(
    origins: &[::http::HeaderValue],
    console_port: Option<u16>,
) -> Option<tower_http::cors::CorsLayer> {
    use ::http::header::{AUTHORIZATION, CONTENT_TYPE};
    use ::http::{HeaderName, Method};
    if origins.is_empty() && console_port.is_none() {
        return None;
    }
    let listed = origins.to_vec();
    let allow = tower_http::cors::AllowOrigin::predicate(move |origin, _| {
        listed.contains(origin)
            || console_port.is_some_and(|port| {
                origin
                    .to_str()
                    .ok()
                    .and_then(|o| o.parse::<::http::Uri>().ok())
                    .is_some_and(|u| u.scheme_str() == Some("http") && u.port_u16() == Some(port))
            })
    });
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::POST, Method::OPTIONS])
            .allow_headers([
                AUTHORIZATION,
                CONTENT_TYPE,
                HeaderName::from_static("x-grpc-web"),
                HeaderName::from_static("x-user-agent"),
                HeaderName::from_static("grpc-timeout"),
            ])
            .expose_headers([
                HeaderName::from_static("grpc-status"),
                HeaderName::from_static("grpc-message"),
                HeaderName::from_static("grpc-status-details-bin"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}
