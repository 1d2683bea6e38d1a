//! What a connection may cost, on both listeners: a cap on how many are
//! open, and closing those that keep no request open for the idle timeout.
//!
//! A socket that completes a handshake and then asks for nothing (an HTTP/2
//! preface and PING acks, an HTTP/1 keep-alive that never sends its next
//! request) holds a descriptor and buffers for free. hyper bounds only the
//! first HTTP/1 request head, and tonic nothing, so the bound lives in the
//! socket itself: [`IdleIo`] ends a connection once no request has been open
//! on it for the idle timeout. Requests are counted by [`Track`], which
//! wraps the service and keeps a request open until its response body ends,
//! so a long stream is never idle.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

use crate::metrics as m;

/// The open-connection cap of one listener.
#[derive(Clone)]
pub struct Gate {
    open: Arc<AtomicUsize>,
    max: usize,
    listener: &'static str,
    /// Looked up once: each lookup makes a handle of its own (32 bytes held
    /// by every open connection).
    gauge: metrics::Gauge,
}

/// A connection let through the gate; frees its place when dropped.
pub struct Admitted {
    open: Arc<AtomicUsize>,
    gauge: metrics::Gauge,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.gauge.decrement(1.0);
    }
}

impl Gate {
    /// `max` connections at once on the listener named `listener` (`http`
    /// or `grpc`, for metrics); 0 means no cap.
    pub fn new(max: usize, listener: &'static str) -> Gate {
        Gate {
            open: Arc::new(AtomicUsize::new(0)),
            max: if max == 0 { usize::MAX } else { max },
            listener,
            gauge: metrics::gauge!(m::CONNECTIONS_OPEN, "listener" => listener),
        }
    }

    /// A place for a new connection, or `None` at the cap (counted; the
    /// caller closes the socket at once).
    pub fn admit(&self) -> Option<Admitted> {
        let admitted = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            metrics::counter!(m::CONNECTIONS_REFUSED, "listener" => self.listener).increment(1);
            tracing::debug!(
                listener = self.listener,
                max = self.max,
                "connection refused at the cap"
            );
            return None;
        }
        let gauge = self.gauge.clone();
        gauge.increment(1.0);
        Some(Admitted {
            open: self.open.clone(),
            gauge,
        })
    }
}

/// Requests open on one connection, and since when none has been.
pub struct Activity {
    open: AtomicUsize,
    /// Milliseconds after `start` at which the last request ended (or the
    /// connection opened).
    idle_since_ms: AtomicU64,
    start: Instant,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            open: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            start: Instant::now(),
        })
    }

    /// Marks a request open until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.open.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// When the connection became idle, if it is.
    fn idle_since(&self) -> Option<Instant> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ms = self.idle_since_ms.load(Ordering::Acquire);
        Some(self.start + Duration::from_millis(ms))
    }
}

/// A request in progress on a connection.
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let now = self.0.start.elapsed().as_millis() as u64;
        self.0.idle_since_ms.store(now, Ordering::Release);
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's socket that reads as closed once no request has been
/// open on it for `idle`. Holds the connection's place under its [`Gate`].
pub struct IdleIo<T> {
    inner: T,
    activity: Arc<Activity>,
    idle: Duration,
    /// Only while no request is open: a stream may stay open for hours,
    /// and would hold a timer it never polls (112 bytes a stream).
    timer: Option<Pin<Box<Sleep>>>,
    listener: &'static str,
    _admitted: Admitted,
}

impl<T> IdleIo<T> {
    pub fn new(
        inner: T,
        activity: Arc<Activity>,
        idle: Duration,
        admitted: Admitted,
        listener: &'static str,
    ) -> IdleIo<T> {
        IdleIo {
            inner,
            timer: None,
            activity,
            idle,
            listener,
            _admitted: admitted,
        }
    }

    /// Whether the idle bound has run out; arms the timer otherwise.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        // A connection with a request open is not idle, and the timer is
        // not polled: a stream waits on its socket once per delivered event.
        // When the last request ends, the next read finds the timer due (or
        // due soon) and re-arms it from the moment the connection fell idle.
        if self.activity.open.load(Ordering::Acquire) > 0 {
            self.timer = None;
            return false;
        }
        let (activity, idle) = (&self.activity, self.idle);
        let timer = self.timer.get_or_insert_with(|| {
            let since = activity.idle_since().unwrap_or_else(Instant::now);
            Box::pin(tokio::time::sleep_until(since + idle))
        });
        while timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            match activity.idle_since() {
                Some(since) if now >= since + idle => return true,
                Some(since) => timer.as_mut().reset(since + idle),
                None => timer.as_mut().reset(now + idle),
            }
        }
        false
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if result.is_pending() && self.expired(cx) {
            metrics::counter!(m::IDLE_CLOSED, "listener" => self.listener).increment(1);
            tracing::debug!(
                listener = self.listener,
                "closed a connection with no request open"
            );
            // Read as the end of the stream: the server side closes it as
            // it would a client that left.
            return Poll::Ready(Ok(()));
        }
        result
    }
}

crate::write_through::write_through!(IdleIo);

/// The activity of the connection a gRPC request came on, as tonic hands
/// it to the service in the request's extensions.
#[derive(Clone)]
pub struct ConnInfo(pub Arc<Activity>);

impl tonic::transport::server::Connected for IdleIo<TcpStream> {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo(self.activity.clone())
    }
}

/// Socket options: no Nagle delay for event frames, and on Linux a bound
/// on how long sent data may stay unacknowledged, so a peer that vanished
/// without a FIN or RST (half-open socket) is dropped after the idle
/// timeout instead of the kernel's ~15 minutes of retransmissions.
///
/// Set once on the listening socket: Linux copies them to every socket it
/// accepts, which saves five `setsockopt` calls per connection (a tenth of
/// the node's system calls when a fleet of browsers connects at once;
/// change 38). `the_listeners_options_reach_accepted_sockets` holds the
/// kernel to that.
pub fn tune(listener: &TcpListener, idle: Duration) {
    let sock = socket2::SockRef::from(listener);
    let _ = sock.set_tcp_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(Duration::from_secs(5).min(idle));
    let _ = sock.set_tcp_keepalive(&keepalive);
    #[cfg(target_os = "linux")]
    let _ = sock.set_tcp_user_timeout(Some(idle));
}

/// A service that counts its requests as open on their connection until
/// their response bodies end. The activity is given (one service per
/// connection) or found in the request's [`ConnInfo`] (tonic's one service
/// for all connections).
#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    activity: Option<Arc<Activity>>,
}

impl<S> Track<S> {
    pub fn new(inner: S, activity: Option<Arc<Activity>>) -> Track<S> {
        Track { inner, activity }
    }
}

/// A [`Track`] for every service tonic serves.
#[derive(Clone, Copy, Default)]
pub struct TrackLayer;

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track::new(inner, None)
    }
}

fn activity_of<B>(request: &::http::Request<B>) -> Option<Arc<Activity>> {
    let ext = request.extensions();
    ext.get::<ConnInfo>()
        .or_else(|| {
            ext.get::<tonic::transport::server::TlsConnectInfo<ConnInfo>>()
                .map(|tls| tls.get_ref())
        })
        .map(|info| info.0.clone())
}

impl<S, B, ResBody> tower::Service<::http::Request<B>> for Track<S>
where
    S: tower::Service<::http::Request<B>, Response = ::http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = ::http::Response<Tracked<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ::http::Request<B>) -> Self::Future {
        let busy = self
            .activity
            .clone()
            .or_else(|| activity_of(&request))
            .map(|a| a.begin());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Tracked { body, _busy: busy }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as open until it
    /// ends or is dropped.
    pub struct Tracked<B> {
        #[pin]
        body: B,
        _busy: Option<Busy>,
    }
}

impl<B: http_body::Body<Data = Bytes>> http_body::Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tune` is applied to listeners only, on the strength of Linux
    /// copying a listener's options to the sockets it accepts.
    #[tokio::test]
    async fn the_listeners_options_reach_accepted_sockets() -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let idle = Duration::from_secs(7);
        tune(&listener, idle);
        let _client = TcpStream::connect(listener.local_addr()?).await?;
        let (accepted, _) = listener.accept().await?;
        let sock = socket2::SockRef::from(&accepted);
        assert!(sock.tcp_nodelay()?, "TCP_NODELAY");
        assert!(sock.keepalive()?, "SO_KEEPALIVE");
        assert_eq!(sock.tcp_keepalive_time()?, idle);
        assert_eq!(sock.tcp_keepalive_interval()?, Duration::from_secs(5));
        #[cfg(target_os = "linux")]
        assert_eq!(sock.tcp_user_timeout()?, Some(idle));
        Ok(())
    }
}
