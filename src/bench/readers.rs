//! The subscriber side of a run: N streams over bare TCP sockets, each
//! counting its events (and, for latency, the age of each) until stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc;

use super::events::now_us;
use super::report::{Deliveries, Latency};
use super::target::Target;

/// Latency samples in µs, collected from every subscriber.
#[derive(Default)]
struct Samples {
    all: std::sync::Mutex<Vec<u64>>,
}

/// What every reader counted. Each reader counts on its own cache line:
/// one counter shared by all readers was two contended atomic updates per
/// delivery, bounced between the cores the bridge needs.
#[derive(Default)]
struct Counters {
    readers: Vec<Arc<Tally>>,
}

#[derive(Default)]
#[repr(align(64))]
struct Tally {
    delivered: AtomicU64,
    last_delivery_us: AtomicU64,
}

impl Counters {
    fn delivered(&self) -> u64 {
        self.readers
            .iter()
            .map(|t| t.delivered.load(Ordering::Relaxed))
            .sum()
    }

    fn last_delivery_us(&self) -> u64 {
        self.readers
            .iter()
            .map(|t| t.last_delivery_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }
}

/// Where a bench event's timestamp starts in its frame.
const MARK: &[u8] = b"data: {\"content\":\"";

/// Opens one stream over a plain TCP connection and counts its events until
/// stopped. A bare socket rather than an HTTP client library: the load
/// generator shares the cores with the bridge, so its own cost per event is
/// kept to a read and a scan. Chunk-size lines of the chunked body fall
/// between frames and are skipped by the scan.
async fn reader(
    addr: Arc<str>,
    opening: Opening,
    tally: Arc<Tally>,
    samples: Option<Arc<Samples>>,
    opened: mpsc::Sender<()>,
    gate: Option<Arc<tokio::sync::Semaphore>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Held from the connect to the response head: bounds the handshakes in
    // flight, so a burst of opens does not overrun the listen backlog.
    let permit = match &gate {
        Some(g) => Some(g.acquire().await?),
        None => None,
    };
    let mut socket = tokio::net::TcpStream::connect(&*addr).await?;
    socket.set_nodelay(true)?;
    socket.write_all(opening.request(&addr).as_bytes()).await?;
    drop(opening);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    // Read straight into `buf`: no second buffer per reader to copy through
    // (1,000 readers' buffers do not stay in cache between deliveries).
    let head_end = loop {
        buf.reserve(4096);
        if socket.read_buf(&mut buf).await? == 0 {
            bail!("stream closed before its response head");
        }
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    if !buf.starts_with(b"HTTP/1.1 200") {
        bail!(
            "stream refused: {}",
            String::from_utf8_lossy(&buf[..head_end.min(80)])
        );
    }
    buf.drain(..head_end);
    let _ = opened.send(()).await;
    drop((opened, permit));
    let mut local = Vec::new();
    let mut first = true;
    let frame_end = memchr::memmem::Finder::new(b"\n\n");
    let mark = memchr::memmem::Finder::new(MARK);
    // Made once, not per read: a fresh `wait_for` registers with (and on
    // drop leaves) the watch's waiter list, a lock each way, per event.
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    loop {
        if !first {
            // Room for a backlog of frames in one read (a fan-out burst).
            if buf.capacity() - buf.len() < 8 * 1024 {
                buf.reserve(16 * 1024);
            }
            let n = tokio::select! {
                n = socket.read_buf(&mut buf) => n?,
                _ = &mut stopped => break,
            };
            if n == 0 {
                break;
            }
        }
        first = false;
        let mut start = 0;
        // memchr's searchers rather than `windows(..).position`: a naive scan
        // compares the marker at every byte of every frame, and the load
        // generator's cost per event is part of every figure.
        while let Some(pos) = frame_end.find(&buf[start..]) {
            let frame = &buf[start..start + pos];
            start += pos + 2;
            let Some(at) = mark.find(frame) else {
                continue;
            };
            let now = now_us();
            tally.delivered.fetch_add(1, Ordering::Relaxed);
            tally.last_delivery_us.store(now, Ordering::Relaxed);
            if samples.is_some() {
                let digits = &frame[at + MARK.len()..];
                let end = digits.iter().position(|b| *b == b' ').unwrap_or(0);
                if let Some(sent) = std::str::from_utf8(&digits[..end])
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    local.push(now.saturating_sub(sent));
                }
            }
        }
        buf.drain(..start);
        if let Some(s) = &samples {
            if local.len() >= 1024 {
                s.all
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .append(&mut local);
            }
        }
    }
    if let Some(s) = &samples {
        s.all
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(&mut local);
    }
    Ok(())
}

pub(super) struct Streams {
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
    stop: tokio::sync::watch::Sender<bool>,
    counters: Counters,
    samples: Arc<Samples>,
}

/// One stream to open: its path, its bearer token and, when it resumes,
/// the cursor it sends as `Last-Event-ID`.
pub(super) struct Opening {
    pub(super) path: String,
    pub(super) token: Arc<str>,
    pub(super) last_event_id: Option<String>,
}

impl Opening {
    pub(super) fn new(channel: &str, token: Arc<str>) -> Self {
        Self {
            path: format!("/v1/events?channel={channel}"),
            token,
            last_event_id: None,
        }
    }

    fn request(&self, host: &str) -> String {
        let mut r = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n",
            self.path, self.token
        );
        if let Some(id) = &self.last_event_id {
            r.push_str("Last-Event-ID: ");
            r.push_str(id);
            r.push_str("\r\n");
        }
        r.push_str("\r\n");
        r
    }
}

/// How a run spreads its opens over time.
#[derive(Clone, Copy)]
pub(super) enum Pace {
    /// In waves of 500 with a short pause between: setting up a scenario
    /// that measures something else.
    Waves,
    /// As fast as the bridge takes them, with at most this many handshakes
    /// in flight (a browser fleet's connects are not serialised either).
    Burst(usize),
    /// Evenly spread over this long: clients coming back after an outage.
    Over(Duration),
}

/// Streams that all answered `200`, and how long opening them took.
pub(super) struct Opened {
    pub(super) streams: Streams,
    /// From the first connect to the last response head.
    pub(super) secs: f64,
    /// When the first connect started, in µs since the epoch.
    pub(super) start_us: u64,
}

/// Opens `n` streams of `tenant` with one shared token, stream `i` on
/// `channels[i % channels.len()]`, in waves.
pub(super) async fn open_streams(
    target: &Target,
    channels: &[String],
    n: usize,
    tenant: &str,
    latency: bool,
) -> Result<Streams> {
    let token = target.signer.subscriber(tenant, "bench")?;
    let openings = (0..n)
        .map(|i| Opening::new(&channels[i % channels.len()], token.clone()))
        .collect();
    Ok(open(target, openings, latency, Pace::Waves).await?.streams)
}

/// Opens every stream of `openings` at the given pace and waits until all
/// have answered `200`.
pub(super) async fn open(
    target: &Target,
    openings: Vec<Opening>,
    latency: bool,
    pace: Pace,
) -> Result<Opened> {
    let addr: Arc<str> = target
        .http
        .strip_prefix("http://")
        .context("the bench reads plain http:// bridges")?
        .trim_end_matches('/')
        .into();
    let n = openings.len();
    let counters = Counters {
        readers: (0..n).map(|_| Arc::default()).collect(),
    };
    let samples = Arc::new(Samples::default());
    let (tx, mut rx) = mpsc::channel(n.max(1));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let gate = match pace {
        Pace::Burst(k) => Some(Arc::new(tokio::sync::Semaphore::new(k.max(1)))),
        _ => None,
    };
    let mut tasks = Vec::with_capacity(n);
    let (started, start_us) = (Instant::now(), now_us());
    for (i, opening) in openings.into_iter().enumerate() {
        if let Pace::Over(span) = pace {
            tokio::time::sleep_until((started + span.mul_f64(i as f64 / n as f64)).into()).await;
        }
        tasks.push(tokio::spawn(reader(
            addr.clone(),
            opening,
            counters.readers[i].clone(),
            latency.then(|| samples.clone()),
            tx.clone(),
            gate.clone(),
            stop_rx.clone(),
        )));
        // Open in waves so the listen backlog is not overrun.
        if matches!(pace, Pace::Waves) && i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(tx);
    let mut opened = 0;
    while opened < n {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(())) => opened += 1,
            _ => {
                // Say why: a refused stream's answer, or the socket error.
                let mut why = String::from("the rest timed out");
                for task in tasks.into_iter().filter(|t| t.is_finished()) {
                    match task.await {
                        Ok(Err(e)) => {
                            why = format!("first failure: {e:#}");
                            break;
                        }
                        Err(e) => {
                            why = format!("a reader failed: {e}");
                            break;
                        }
                        Ok(Ok(())) => {}
                    }
                }
                bail!("only {opened} of {n} streams opened; {why}")
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(Opened {
        streams: Streams {
            tasks,
            stop,
            counters,
            samples,
        },
        secs,
        start_us,
    })
}

impl Streams {
    /// Waits until `expected` deliveries arrived or nothing moves, then
    /// stops the readers and counts deliveries, losses, the rate since
    /// `start_us` and the latency.
    pub(super) async fn deliveries(self, expected: u64, start_us: u64) -> Deliveries {
        wait_quiet(&self.counters, expected, Duration::from_secs(120)).await;
        let delivered = self.counters.delivered();
        let last = self.counters.last_delivery_us();
        let secs = (last.saturating_sub(start_us)) as f64 / 1e6;
        let latency = self.finish().await;
        Deliveries {
            deliveries: delivered,
            lost: expected.saturating_sub(delivered),
            deliveries_per_sec: (delivered as f64 / secs.max(1e-9)).round(),
            latency_ms: Latency::of(&latency),
        }
    }

    /// Waits until `expected` deliveries arrived or nothing moves, then
    /// stops the readers: what arrived, and when the last of it did (µs
    /// since the epoch).
    pub(super) async fn arrived(self, expected: u64) -> (u64, u64) {
        wait_quiet(&self.counters, expected, Duration::from_secs(120)).await;
        let arrived = (self.counters.delivered(), self.counters.last_delivery_us());
        self.finish().await;
        arrived
    }

    /// Stops every reader and waits for it to hand in its samples.
    pub(super) async fn finish(self) -> Vec<u64> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let mut all =
            std::mem::take(&mut *self.samples.all.lock().unwrap_or_else(|p| p.into_inner()));
        all.sort_unstable();
        all
    }
}

async fn wait_quiet(counters: &Counters, expected: u64, max: Duration) {
    let deadline = Instant::now() + max;
    let mut last = u64::MAX;
    while Instant::now() < deadline {
        let now = counters.delivered();
        if now >= expected {
            return;
        }
        if now == last {
            // Nothing moved for a second: what is missing is lost.
            tokio::time::sleep(Duration::from_millis(1000)).await;
            if counters.delivered() == now {
                return;
            }
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
