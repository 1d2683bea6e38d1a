//! The HTTP listener: accepts TCP (optionally TLS, with HTTP/2 by ALPN),
//! bounds what a connection may cost, and drains connections on shutdown.
//!
//! Served by hyper directly rather than `axum::serve` because the bounds
//! that protect a public endpoint are connection settings: how many
//! connections may be open, how long a client may take to send its request
//! head, how large that head may be, how long a connection may keep no
//! request open (`crate::connections`), and how long a socket may refuse
//! our writes before it is closed.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Sleep;

use crate::connections::{Activity, Gate, IdleIo, Track, tune};
use crate::metrics as m;

/// Stream requests on plain HTTP/1.1 that are routed and answered at once;
/// more wait, each holding only its parsed request (see `direct::serve`).
/// Far above what the opens of one node ever need in flight to keep both
/// cores busy (`bench connect` on Valkey batches its subscribes well
/// within it), and a bound on the memory a burst of them leaves behind.
const OPENING_AT_ONCE: usize = 256;

/// Connection bounds of the HTTP listener.
#[derive(Clone)]
pub struct ListenerConfig {
    /// TLS; HTTP/2 and HTTP/1.1 are offered by ALPN.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// A connection that sends no complete request head within this time,
    /// or that leaves our writes unaccepted (peer gone or not reading) this
    /// long, is closed.
    pub idle_timeout: Duration,
    /// Largest request head hyper buffers at all; the JSON 414/431 answers
    /// for smaller excesses come from the router.
    pub max_head_bytes: usize,
    /// HTTP/2 PING interval, to find dead peers of otherwise quiet
    /// connections.
    pub ping_every: Duration,
    /// Connections open at once; more are closed at accept (0: no cap).
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` flips, then waits up to
/// `grace` for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: ListenerConfig,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.idle_timeout)
        .max_buf_size(config.max_head_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_head_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(config.ping_every)
        .keep_alive_timeout(config.idle_timeout);
    let builder = Arc::new(builder);
    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let gate = Gate::new(config.max_connections, "http");
    // Every connection's task, so shutdown can wait for the streams served
    // outside hyper too.
    let tasks = tokio_util::task::TaskTracker::new();
    let opening = Arc::new(tokio::sync::Semaphore::new(OPENING_AT_ONCE));
    tune(&listener, config.idle_timeout);
    let down = async move {
        // An error means the node is gone: stop too.
        let _ = shutdown.wait_for(|d| *d).await;
    };
    tokio::pin!(down);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut down => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = gate.admit() else {
            drop(tcp);
            continue;
        };
        let activity = Activity::new();
        let io = IdleIo::new(
            StallGuard::new(tcp, config.idle_timeout),
            activity.clone(),
            config.idle_timeout,
            admitted,
            "http",
        );
        let service = TowerToHyperService::new(Track::new(router.clone(), Some(activity.clone())));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let idle = config.idle_timeout;
        let router = router.clone();
        let max_head = config.max_head_bytes;
        let spawner = tasks.clone();
        let opening = opening.clone();
        let fut = async move {
            let result = match tls {
                None => {
                    let direct = super::direct::serve(
                        io, router, max_head, idle, &activity, &spawner, &opening,
                    );
                    let io = match direct.await {
                        super::direct::Outcome::Done => return,
                        super::direct::Outcome::Hyper(io) => io,
                    };
                    // Boxed: a direct stream's task should not be as large
                    // as hyper's connection state it never uses.
                    Box::pin(async move {
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                        watcher.watch(conn.into_owned()).await
                    })
                    .await
                }
                Some(acceptor) => {
                    Box::pin(async move {
                        let stream = match tokio::time::timeout(idle, acceptor.accept(io)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return Ok(());
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return Ok(());
                            }
                        };
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        watcher.watch(conn.into_owned()).await
                    })
                    .await
                }
            };
            if let Err(e) = result {
                log_connection_error(peer, &*e);
            }
        };
        tasks.spawn(fut);
    }
    drop(listener);
    tasks.close();
    let drained = async {
        graceful.shutdown().await;
        // Direct streams end on the same shutdown signal; wait for their
        // last bytes to be written.
        tasks.wait().await;
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            ?grace,
            "connections still open at the shutdown deadline; closing them"
        );
    }
}

fn log_connection_error(peer: SocketAddr, e: &(dyn std::error::Error + 'static)) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                tracing::info!(%peer, "closed a connection that stopped accepting data");
                return;
            }
        }
        source = err.source();
    }
    tracing::debug!(%peer, error = %e, "connection ended with an error");
}

/// Fails writes that stay blocked longer than `limit`: a client that stops
/// reading fills its socket buffers, and then holds the connection until
/// this closes it. It reconnects with its cursor when it wakes up.
struct StallGuard<T> {
    inner: T,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    counted: bool,
}

impl<T> StallGuard<T> {
    fn new(inner: T, limit: Duration) -> StallGuard<T> {
        StallGuard {
            inner,
            limit,
            stalled: None,
            counted: false,
        }
    }

    /// Counts a connection lost to a stalled peer once, whichever bound
    /// fired: ours, or the kernel's (TCP_USER_TIMEOUT), which may surface
    /// on a read as well as on a write.
    fn note(&mut self, e: &io::Error) {
        if e.kind() == io::ErrorKind::TimedOut && !self.counted {
            self.counted = true;
            ::metrics::counter!(m::STALLED_CLOSED).increment(1);
        }
    }

    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match result {
            Poll::Pending => {
                let limit = self.limit;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if timer.as_mut().poll(cx).is_ready() {
                    let e = io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the peer accepted no data within the idle timeout",
                    );
                    self.note(&e);
                    return Poll::Ready(Err(e));
                }
                Poll::Pending
            }
            Poll::Ready(Err(e)) => {
                self.stalled = None;
                self.note(&e);
                Poll::Ready(Err(e))
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Err(e)) = &result {
            self.note(e);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
