//! HTTP/1.1 event streams written straight to the socket.
//!
//! An open stream through hyper keeps hyper's connection buffers (about
//! 16 KiB) for its whole life and writes each frame as its own chunk. Here
//! a plain-TCP connection's first request head is read with a buffer that
//! is freed right after; `GET /v1/events` is answered by the same router as
//! everything else, and when the answer is a stream its frames are written
//! by this loop: every frame that is ready goes out in one chunk and one
//! write, and an idle stream holds no buffer at all. Anything else — other
//! paths, methods, HTTP/1.0, a head too large or malformed — is handed to
//! hyper with the bytes already read, so it behaves exactly as before.
//!
//! Hand-written because a measurement asks for it: change 2 in
//! `docs/benchmarks.md` has the figures with and without it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Version};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tower::ServiceExt;

use super::sse::{Dormant, ParkSlot};
use crate::hub::{Check, Delivery, Sleeper};

/// Most headers a head may carry on this path.
const MAX_HEADERS: usize = 64;
/// Frames written in one go, at most (bytes).
const MAX_WRITE: usize = 64 * 1024;
/// Bodies of non-stream answers (errors) collected, at most.
const MAX_BODY: usize = 64 * 1024;

/// A stream's frames, shared between the response body (for hyper) and
/// this module (which takes them first when it serves the connection).
pub(crate) type Frames = BoxStream<'static, Result<Bytes, std::convert::Infallible>>;

/// Put in a stream response's extensions: the stream, for either hyper or
/// this module to take.
#[derive(Clone)]
pub(crate) struct DirectFrames(Arc<ParkSlot>);

impl DirectFrames {
    /// The response body and the extension that let either hyper or this
    /// module take the stream.
    pub(crate) fn new(dormant: Dormant) -> (Body, DirectFrames) {
        let slot = Arc::new(ParkSlot::holding(dormant));
        let body = Body::from_stream(LazyFrames {
            slot: slot.clone(),
            frames: None,
        });
        (body, DirectFrames(slot))
    }

    fn take(&self) -> Option<(Box<Dormant>, Arc<ParkSlot>)> {
        Some((self.0.take()?, self.0.clone()))
    }
}

/// Starts the stream's frames when hyper first polls. They never sleep:
/// hyper's connection task holds them anyway.
struct LazyFrames {
    slot: Arc<ParkSlot>,
    frames: Option<Frames>,
}

impl futures::Stream for LazyFrames {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.frames.is_none() {
            match self.slot.take() {
                Some(dormant) => self.frames = Some(dormant.start(None)),
                None => return Poll::Ready(None),
            }
        }
        match self.frames.as_mut() {
            Some(f) => f.poll_next_unpin(cx),
            None => Poll::Ready(None),
        }
    }
}

/// What became of a connection.
pub(crate) enum Outcome<IO> {
    /// Served here; the connection is finished.
    Done,
    /// Not for this path: serve it with hyper, replaying `read` first.
    Hyper(Rewind<IO>),
}

/// The first request head, read.
enum Head {
    /// A stream request this path serves.
    Stream(Box<Request<Body>>),
    /// Anything else: these bytes go to hyper first.
    Other(Vec<u8>),
    /// A request line or header with characters HTTP does not allow (a raw
    /// `<` in the URL): answered here, since hyper's 400 has no body.
    Malformed,
    /// The client left (or sent nothing within the idle timeout).
    Gone,
}

async fn read_head<IO: AsyncRead + Unpin>(io: &mut IO, max_head: usize) -> Head {
    // Most heads fit in 1 KiB; a larger one grows the buffer as it comes.
    // Every open makes this buffer and frees it, and thousands may wait for
    // their heads at once: its size is memory the allocator keeps after a
    // burst (change 48).
    let mut head = Vec::with_capacity(1024.min(max_head));
    loop {
        if head.len() >= max_head {
            return Head::Other(head);
        }
        if head.len() == head.capacity() {
            head.reserve((max_head - head.len()).min(head.capacity()));
        }
        // Never past the bound: a read fills at most the spare capacity.
        let room = head.capacity().min(max_head) - head.len();
        match (&mut *io).take(room as u64).read_buf(&mut head).await {
            Ok(0) | Err(_) => return Head::Gone,
            Ok(_) => {}
        };
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(len)) => {
                return match to_request(&request, len == head.len()) {
                    Some(r) => Head::Stream(Box::new(r)),
                    None if request
                        .path
                        .is_some_and(|p| p.parse::<axum::http::Uri>().is_err()) =>
                    {
                        Head::Malformed
                    }
                    None => Head::Other(head),
                };
            }
            Ok(httparse::Status::Partial) => continue,
            // Other errors include HTTP/2's preface (`PRI * HTTP/2.0`),
            // which hyper serves.
            Err(httparse::Error::Token | httparse::Error::HeaderValue) => return Head::Malformed,
            Err(_) => return Head::Other(head),
        }
    }
}

/// Reads the first request head and serves it when it is a stream request.
/// The stream is written by a task of its own, spawned on `tasks`: the
/// connection's task (which may also have to serve HTTP through hyper) is
/// three times the size of a stream's, and would otherwise live as long as
/// the stream (change 41).
pub(crate) async fn serve<IO>(
    mut io: IO,
    router: Router,
    max_head: usize,
    idle: std::time::Duration,
    activity: &Arc<crate::connections::Activity>,
    tasks: &tokio_util::task::TaskTracker,
    opening: &tokio::sync::Semaphore,
) -> Outcome<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Each phase is boxed so that the task a stream lives in is only as
    // large as its streaming state.
    let request = match Box::pin(tokio::time::timeout(idle, read_head(&mut io, max_head))).await {
        Ok(Head::Stream(r)) => *r,
        Ok(Head::Other(read)) => return Outcome::Hyper(Rewind::new(io, read)),
        Ok(Head::Malformed) => {
            use axum::response::IntoResponse;
            Box::pin(answer(
                io,
                super::error::ApiError::Malformed.into_response(),
            ))
            .await;
            return Outcome::Done;
        }
        Ok(Head::Gone) | Err(_) => return Outcome::Done,
    };
    // The connection is not idle while its one request is answered.
    let busy = activity.begin();
    // Opens answered at once are bounded: one in progress holds ~5 KB of
    // routing, handler and bus state while it waits (for Valkey's
    // subscribe, say), and a burst of thousands would leave that much per
    // stream in the allocator's keeping after they finish. One waiting
    // here holds only its request. The permit is taken after the head is
    // read, so a client that sends nothing holds none (change 47).
    let permit = match opening.acquire().await {
        Ok(permit) => permit,
        // Never closed.
        Err(_) => return Outcome::Done,
    };
    // Boxed: the request and routing state live only while the answer is
    // made, not for the whole life of the stream task.
    let response = match Box::pin(router.oneshot(request)).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    drop(permit);
    match response
        .extensions()
        .get::<DirectFrames>()
        .and_then(DirectFrames::take)
    {
        Some((dormant, park)) => {
            let mut out = Vec::with_capacity(512);
            put_head(&mut out, &response, "transfer-encoding: chunked\r\n");
            drop(response);
            if dormant.is_quiet() {
                // Most streams have nothing to say after their opening:
                // written here, the stream goes to sleep at once, and no
                // task or frames are ever made for it unless an event
                // comes.
                put_chunk(&mut out, &dormant.opening());
                if io.write_all(&out).await.is_err() {
                    return Outcome::Done;
                }
                drop(out);
                Asleep::sleep(io, *dormant, park, busy, tasks.token());
            } else {
                let frames = dormant.start(Some(park.clone()));
                let writer = Writer::new(io, frames, out, Phase::Start, park, busy);
                tasks.spawn(run(writer, tasks.token()));
            }
        }
        None => Box::pin(answer(io, response)).await,
    }
    Outcome::Done
}

/// A head this path serves: `GET /v1/events` over HTTP/1.1 with no body
/// and no pipelined bytes after it.
fn to_request(r: &httparse::Request<'_, '_>, whole: bool) -> Option<Request<Body>> {
    if !whole || r.method? != "GET" || r.version? != 1 {
        return None;
    }
    let path = r.path?;
    if path.split('?').next() != Some("/v1/events") {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(r.headers.len());
    for h in r.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if name == axum::http::header::CONTENT_LENGTH && h.value != b"0" {
            return None;
        }
        if matches!(name.as_str(), "transfer-encoding" | "upgrade" | "expect") {
            return None;
        }
        headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(Version::HTTP_11)
        .body(Body::empty())
        .ok()?;
    *request.headers_mut() = headers;
    Some(request)
}

fn put_head(out: &mut Vec<u8>, response: &Response<Body>, framing: &str) {
    let status = response.status();
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in response.headers() {
        if name == axum::http::header::CONTENT_LENGTH
            || name == axum::http::header::TRANSFER_ENCODING
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(framing.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes a bounded answer (an error) and closes.
async fn answer<IO: AsyncWrite + Unpin>(mut io: IO, response: Response<Body>) {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let response = Response::from_parts(parts, Body::empty());
    let mut out = Vec::with_capacity(256 + body.len());
    put_head(
        &mut out,
        &response,
        &format!("content-length: {}\r\nconnection: close\r\n", body.len()),
    );
    out.extend_from_slice(&body);
    let _ = io.write_all(&out).await;
    let _ = io.shutdown().await;
}

/// Writes a stream's frames as chunks until the stream ends or the client
/// goes. A future written out by hand rather than an `async fn`: it is the
/// task every open stream lives in, and a generator keeps room for the
/// locals of every await point at once (768 bytes against this one's ~200;
/// change 44).
struct Writer<IO> {
    io: IO,
    frames: Frames,
    /// What is being written (the head and first frames, or one batch),
    /// and how much of it went out; empty while waiting for a frame.
    out: Vec<u8>,
    written: usize,
    phase: Phase,
    /// Set when the frames were last polled with this task's waker,
    /// returned `Pending`, and nothing can have taken that registration
    /// since: the next wait need not poll them before sleeping (one poll of
    /// the whole stream per write fewer). Only for a stream that is keeping
    /// up (its write carried one frame): one with a backlog looks again
    /// right after its write, since more frames have most likely come
    /// meanwhile, and they go out together without a trip through the
    /// scheduler.
    armed: bool,
    /// Where the frames leave the stream when they end to sleep.
    park: Arc<ParkSlot>,
    /// Set when they did: once `out` is written the task ends and the
    /// stream sleeps in its channel's slot.
    dormant: Option<Box<Dormant>>,
    /// The connection is not idle while it streams.
    busy: crate::connections::Busy,
}

/// Writes a stream until it ends, or until it sleeps: then it is handed to
/// its channel's slot with its socket, and this task ends. `token` keeps
/// the node's drain waiting for a stream asleep as for one with a task.
async fn run<IO>(mut writer: Writer<IO>, token: TaskTrackerToken)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    (&mut writer).await;
    if let Some(dormant) = writer.dormant.take() {
        Asleep::sleep(writer.io, *dormant, writer.park, writer.busy, token);
    }
}

impl<IO> Writer<IO> {
    /// A writer that starts in `phase` with `out` to write.
    fn new(
        io: IO,
        frames: Frames,
        out: Vec<u8>,
        phase: Phase,
        park: Arc<ParkSlot>,
        busy: crate::connections::Busy,
    ) -> Writer<IO> {
        Writer {
            io,
            frames,
            out,
            written: 0,
            phase,
            armed: false,
            park,
            dormant: None,
            busy,
        }
    }
}

/// A keep-alive comment as one chunk of the body.
const KEEPALIVE_CHUNK: &[u8] = b"d\r\n: keepalive\n\n\r\n";
/// Its length, as a sleeper's offset into it.
const KEEPALIVE_LEN: u8 = KEEPALIVE_CHUNK.len() as u8;
/// Reads a look makes past what a sleeping stream's client sent, at most
/// (64 bytes each); the rest waits for the next look.
const PROBE_READS: usize = 8;

/// Appends `frame` as one chunk of the body.
fn put_chunk(out: &mut Vec<u8>, frame: &[u8]) {
    use std::io::Write;
    let _ = write!(out, "{:x}\r\n", frame.len());
    out.extend_from_slice(frame);
    out.extend_from_slice(b"\r\n");
}

/// A stream asleep in its channel's slot: its socket, its state between
/// frames, and nothing else.
struct Asleep<IO> {
    io: IO,
    dormant: Dormant,
    park: Arc<ParkSlot>,
    busy: crate::connections::Busy,
    token: TaskTrackerToken,
    /// Where the unwritten rest of a keep-alive starts in
    /// [`KEEPALIVE_CHUNK`] (its length when all went out): the woken writer
    /// starts with it. An offset, not a buffer: 24 bytes less per sleeper.
    unsent: u8,
}

impl<IO> Asleep<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Hands a quiet stream and its socket to its channel's slot.
    fn sleep(
        io: IO,
        dormant: Dormant,
        park: Arc<ParkSlot>,
        busy: crate::connections::Busy,
        token: TaskTrackerToken,
    ) {
        let hub = dormant.hub().clone();
        let channel = dormant.channel().clone();
        let asleep = Asleep {
            io,
            dormant,
            park,
            busy,
            token,
            unsent: KEEPALIVE_LEN,
        };
        hub.park(&channel, Box::new(asleep));
    }
}

impl<IO> Sleeper for Asleep<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn let_go(&mut self) -> bool {
        self.dormant.let_go()
    }

    fn wake(self: Box<Self>, rx: Option<broadcast::Receiver<Delivery>>) {
        let Asleep {
            io,
            dormant,
            park,
            busy,
            token,
            unsent,
        } = *self;
        let frames = dormant.wake(rx, park.clone());
        let unsent = &KEEPALIVE_CHUNK[usize::from(unsent)..];
        let phase = if unsent.is_empty() {
            Phase::Wait
        } else {
            Phase::Write
        };
        let writer = Writer::new(io, frames, unsent.to_vec(), phase, park, busy);
        let tasks = token.task_tracker().clone();
        tasks.spawn(run(writer, token));
    }

    fn check(&mut self, now: Instant) -> Check {
        if self.dormant.has_word(now) {
            return Check::Wake;
        }
        // Looked at, never waited on: the reactor's readiness answers
        // without a system call while nothing came. What a client sends is
        // not ours to answer (as for a stream awake) and is read past, a
        // bounded amount per look: this runs under the hub's lock.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut probe = [0u8; 64];
        for _ in 0..PROBE_READS {
            let mut buf = ReadBuf::new(&mut probe);
            match Pin::new(&mut self.io).poll_read(&mut cx, &mut buf) {
                Poll::Pending => break,
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                Poll::Ready(_) => return Check::Gone,
            }
        }
        if self.dormant.keepalive_due(now) {
            Check::KeepAlive
        } else {
            Check::Stay
        }
    }

    fn keep_alive(mut self: Box<Self>, rx: broadcast::Receiver<Delivery>) {
        self.dormant.listen_again(rx);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(&mut self.io).poll_write(&mut cx, KEEPALIVE_CHUNK) {
            Poll::Ready(Ok(n)) if n == KEEPALIVE_CHUNK.len() => {
                // Asleep again, unless an event came meanwhile: then
                // `park` wakes it, still listening.
                let hub = self.dormant.hub().clone();
                let channel = self.dormant.channel().clone();
                hub.park(&channel, self);
            }
            // The client left.
            Poll::Ready(Ok(0) | Err(_)) => drop(self),
            // A full socket: the woken writer waits for room.
            Poll::Ready(Ok(n)) => {
                // `n` is less than the chunk's 19 bytes here.
                self.unsent = u8::try_from(n).unwrap_or(KEEPALIVE_LEN);
                self.wake(None);
            }
            Poll::Pending => {
                self.unsent = 0;
                self.wake(None);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    /// The head is in `out`; the frames ready at once join it.
    Start,
    /// Waiting for a frame, or for the client to leave.
    Wait,
    /// Writing `out`; then waiting again.
    Write,
    /// Writing `out`, which ends the body; then closing.
    WriteLast,
    Close,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Writer<IO> {
    /// Appends one chunk holding `first` (if any) and every frame already
    /// waiting, up to [`MAX_WRITE`]: one chunk, one write. The chunk size
    /// is written last, zero-padded into its slot. Polled with the task's
    /// own waker, so the last (pending) poll also arms the wait for the
    /// next frame. Returns whether the frames ended.
    fn gather(&mut self, first: Option<Bytes>, cx: &mut Context<'_>) -> bool {
        let out = &mut self.out;
        let slot = out.len();
        out.extend_from_slice(b"00000000\r\n");
        let mut count = 0;
        if let Some(first) = first {
            out.extend_from_slice(&first);
            count += 1;
        }
        let mut ended = false;
        while out.len() - slot < MAX_WRITE {
            match self.frames.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    out.extend_from_slice(&frame);
                    count += 1;
                }
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(None) => {
                    ended = true;
                    break;
                }
                Poll::Pending => {
                    self.armed = count <= 1;
                    break;
                }
            }
        }
        match out.len() - slot - 10 {
            0 => out.truncate(slot),
            size => {
                put_chunk_size(&mut out[slot..slot + 8], size);
                out.extend_from_slice(b"\r\n");
            }
        }
        if ended {
            self.end_body();
        }
        ended
    }

    /// The frames ended: to sleep, or for good (then the body ends).
    fn end_body(&mut self) {
        self.dormant = self.park.take();
        if self.dormant.is_none() {
            self.out.extend_from_slice(b"0\r\n\r\n");
        }
    }

    /// Waits for the next frame, watching the socket meanwhile: anything
    /// the client sends now is not ours to answer, and a read of 0 or an
    /// error means it went away (`Ready(None)`).
    fn next_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Option<Bytes>>> {
        if !std::mem::take(&mut self.armed) {
            if let Poll::Ready(frame) = self.frames.poll_next_unpin(cx) {
                return Poll::Ready(Some(frame.map(|Ok(f)| f)));
            }
        }
        let mut probe = [0u8; 32];
        loop {
            let mut buf = ReadBuf::new(&mut probe);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                Poll::Ready(_) => return Poll::Ready(None),
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Future for Writer<IO> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match this.phase {
                // The head goes out with the frames that are ready at once
                // (`retry:`, the start of a replay): one segment and one
                // wake-up of the client per open, not two (change 38).
                Phase::Start => {
                    let ended = this.gather(None, cx);
                    // Not armed: the first wait looks at the frames again.
                    this.armed = false;
                    this.phase = if ended {
                        Phase::WriteLast
                    } else {
                        Phase::Write
                    };
                }
                Phase::Wait => match std::task::ready!(this.next_frame(cx)) {
                    None => return Poll::Ready(()),
                    Some(Some(first)) => {
                        let ended = this.gather(Some(first), cx);
                        this.phase = if ended {
                            Phase::WriteLast
                        } else {
                            Phase::Write
                        };
                    }
                    Some(None) => {
                        this.end_body();
                        this.phase = Phase::WriteLast;
                    }
                },
                Phase::Write | Phase::WriteLast => {
                    while this.written < this.out.len() {
                        match Pin::new(&mut this.io).poll_write(cx, &this.out[this.written..]) {
                            // A write that has to wait may be woken by a
                            // new frame, which takes the frames'
                            // registration: then they must be polled again.
                            Poll::Pending => {
                                this.armed = false;
                                return Poll::Pending;
                            }
                            Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(()),
                            Poll::Ready(Ok(n)) => this.written += n,
                        }
                    }
                    // An idle stream holds no buffer.
                    this.out = Vec::new();
                    this.written = 0;
                    this.phase = match this.phase {
                        Phase::WriteLast if this.dormant.is_some() => return Poll::Ready(()),
                        Phase::WriteLast => Phase::Close,
                        _ => Phase::Wait,
                    };
                }
                Phase::Close => {
                    let _ = std::task::ready!(Pin::new(&mut this.io).poll_shutdown(cx));
                    return Poll::Ready(());
                }
            }
        }
    }
}

/// Writes `size` as the fixed-width hex a chunk-size slot holds (leading
/// zeros are allowed there), with no allocation per write.
fn put_chunk_size(slot: &mut [u8], mut size: usize) {
    for b in slot.iter_mut().rev() {
        *b = b"0123456789abcdef"[size & 0xf];
        size >>= 4;
    }
}

/// An IO whose first reads replay bytes already taken from it.
pub(crate) struct Rewind<IO> {
    read: Option<Bytes>,
    inner: IO,
}

impl<IO> Rewind<IO> {
    fn new(inner: IO, read: Vec<u8>) -> Rewind<IO> {
        Rewind {
            read: (!read.is_empty()).then(|| Bytes::from(read)),
            inner,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(mut read) = self.read.take() {
            let n = read.len().min(buf.remaining());
            buf.put_slice(&read.split_to(n));
            if !read.is_empty() {
                self.read = Some(read);
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

crate::write_through::write_through!(Rewind);

#[cfg(test)]
mod tests {
    use super::{put_chunk_size, to_request};

    /// Parses `head` as the listener does and asks `to_request`.
    fn served(head: &[u8], whole: bool) -> Option<axum::http::Request<axum::body::Body>> {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(head) {
            Ok(httparse::Status::Complete(_)) => to_request(&request, whole),
            _ => panic!("a complete head"),
        }
    }

    #[test]
    fn only_plain_stream_requests_are_served_here() {
        let r = served(
            b"GET /v1/events?channel=a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nAuthorization: Bearer u\r\n\r\n",
            true,
        )
        .expect("a stream request");
        assert_eq!(r.uri(), "/v1/events?channel=a");
        // Repeated headers stay repeated, for the handler to refuse.
        assert_eq!(r.headers().get_all("authorization").iter().count(), 2);
        assert!(
            served(
                b"GET /v1/events HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                true
            )
            .is_some()
        );
        for head in [
            &b"POST /v1/events HTTP/1.1\r\n\r\n"[..],
            b"GET /v1/events HTTP/1.0\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\n\r\n",
            b"GET /v1/eventsx HTTP/1.1\r\n\r\n",
            b"GET /v1/events HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            b"GET /v1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /v1/events HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            b"GET /v1/events HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        ] {
            assert!(
                served(head, true).is_none(),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        // Bytes after the head (pipelining) go to hyper.
        assert!(served(b"GET /v1/events HTTP/1.1\r\n\r\n", false).is_none());
    }

    #[test]
    fn the_keepalive_chunk_is_the_keepalive_comment_chunked() {
        let mut out = Vec::new();
        super::put_chunk(&mut out, crate::http::sse::KEEPALIVE);
        assert_eq!(out, super::KEEPALIVE_CHUNK);
    }

    /// A sleeper is all an idle stream keeps besides its socket's
    /// registration and its channel; jemalloc serves it from the 384-byte
    /// size class, the next is 448 (change 50 brought it down from 512).
    #[test]
    fn a_sleeper_fits_its_size_class() {
        type Sleeping = super::Asleep<crate::connections::IdleIo<tokio::net::TcpStream>>;
        let size = std::mem::size_of::<Sleeping>();
        assert!(size <= 384, "a sleeper grew to {size} bytes");
    }

    #[test]
    fn chunk_sizes_fill_their_slot_in_hex() {
        for (size, hex) in [
            (0, "00000000"),
            (0x1a2, "000001a2"),
            (0xffff_ffff, "ffffffff"),
        ] {
            let mut slot = *b"xxxxxxxx";
            put_chunk_size(&mut slot, size);
            assert_eq!(&slot, hex.as_bytes());
        }
    }
}
