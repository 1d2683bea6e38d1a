//! `sse-bridge bench`: a load generator that drives a real bridge through
//! its real APIs — SSE connections over HTTP and publishes over gRPC — and
//! reports deliveries per second, lost deliveries, latency percentiles,
//! publish throughput and server memory per stream.
//!
//! It either spawns a bridge process of its own (`--spawn`, so memory can
//! be read from `/proc/<pid>/status`) or targets a running one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;

use crate::client::{self, Client};
use crate::proto::events::v1::{Event, MessageDelta, event::Payload};
use crate::proto::ssebridge::v1 as pb;
use crate::token;

mod bus;
mod floor;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// N subscribers of one channel; E events as fast as possible.
    Fanout,
    /// N subscribers, each on its own channel; E events per channel.
    Channels,
    /// N idle streams; server memory per stream.
    Idle,
    /// Events/s accepted by PublishStream and by unary Publish.
    Publish,
    /// Latency at a fixed publish rate to N subscribers of one channel.
    Latency,
    /// Time for a client resuming across E missed events to catch up.
    Resume,
    /// The latency scenario with no bridge: what the kernel and the load
    /// generator alone cost on this machine (see `floor.rs`).
    Floor,
    /// The many-channels publish pattern on the bus alone, no bridge
    /// around it (see `bus.rs`).
    Bus,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Subscribers (streams).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Events (per channel for `channels`; total for the others).
    #[arg(long, default_value_t = 2000)]
    pub events: usize,
    /// Publish rate for `latency`, events per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Concurrent unary callers for `publish`.
    #[arg(long, default_value_t = 16)]
    pub callers: usize,
    /// Start a bridge process for the run (needed for memory figures).
    #[arg(long)]
    pub spawn: bool,
    /// With --spawn (or for `bus`): the Valkey to use (else embedded).
    #[arg(long)]
    pub valkey_url: Option<String>,
    /// A running bridge's HTTP base URL (without --spawn).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub http: String,
    /// A running bridge's gRPC target (without --spawn).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub grpc: String,
    /// The running bridge's HS256 secret, to mint tokens (without --spawn).
    #[arg(long, env = "SSE_BRIDGE_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Payload bytes per event (content of a message.delta).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
}

struct Target {
    http: String,
    grpc: String,
    secret: String,
    pid: Option<u32>,
    child: Option<tokio::process::Child>,
}

impl Target {
    /// A spawned bridge that is exiting (say it could not reach Valkey)
    /// explains a failure better than the sockets it reset on its way out.
    async fn explain<T>(&mut self, r: Result<T>) -> Result<T> {
        let e = match r {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if let Some(child) = self.child.as_mut() {
            let exited = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
            if let Ok(Ok(status)) = exited {
                bail!("the spawned bridge exited ({status}); its error is above");
            }
        }
        Err(e)
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn spawn_bridge(args: &BenchArgs) -> Result<Target> {
    let secret = format!("bench-{}", uuid::Uuid::new_v4());
    let (http_port, grpc_port) = (free_port()?, free_port()?);
    let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
    cmd.args([
        "serve",
        "--http-addr",
        &format!("127.0.0.1:{http_port}"),
        "--grpc-addr",
        &format!("127.0.0.1:{grpc_port}"),
        "--jwt-secret",
        &secret,
        "--history-len",
        &(args.events.max(1000) + 10).to_string(),
        "--max-channels",
        "10",
        // The load generator is one tenant, one subject and one publisher.
        "--max-streams-per-tenant",
        "0",
        "--max-streams-per-subject",
        "0",
        "--publish-rate",
        "0",
    ]);
    if let Some(url) = &args.valkey_url {
        cmd.args(["--valkey-url", url]);
    }
    cmd.env("RUST_LOG", "warn").kill_on_drop(true);
    let mut child = cmd.spawn().context("spawn the bridge")?;
    let pid = child.id();
    let http = format!("http://127.0.0.1:{http_port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", grpc_port))
        .await
        .is_err()
    {
        // A bridge that could not start (say Valkey is not there) has said
        // why on its stderr and exited: point there rather than wait.
        if let Some(status) = child.try_wait()? {
            bail!("the spawned bridge exited ({status}); its error is above");
        }
        if Instant::now() > deadline {
            bail!("the spawned bridge did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Target {
        http,
        grpc: format!("http://127.0.0.1:{grpc_port}"),
        secret,
        pid,
        child: Some(child),
    })
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// An event whose content starts with the publish time in µs. Built in
/// one allocation, without `format!`: the publisher shares the cores with
/// the bridge, and in the many-channels run it makes one per delivery.
fn stamped(payload: usize) -> Event {
    let mut digits = itoa::Buffer::new();
    let stamp = digits.format(now_us());
    let mut content = String::with_capacity(payload.max(stamp.len() + 1));
    content.push_str(stamp);
    content.push(' ');
    let pad = payload.saturating_sub(content.len());
    content.extend(std::iter::repeat_n('x', pad));
    Event {
        payload: Some(Payload::MessageDelta(MessageDelta { content })),
    }
}

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
    addr: String,
    path: String,
    token: String,
    tally: Arc<Tally>,
    samples: Option<Arc<Samples>>,
    opened: mpsc::Sender<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(&addr).await?;
    socket.set_nodelay(true)?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n");
    socket.write_all(request.as_bytes()).await?;
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
    drop(opened);
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

struct Streams {
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
    stop: tokio::sync::watch::Sender<bool>,
    counters: Counters,
    samples: Arc<Samples>,
}

async fn open_streams(
    target: &Target,
    channels: &[String],
    per_stream: impl Fn(usize) -> usize,
    n: usize,
    tenant: &str,
    latency: bool,
) -> Result<Streams> {
    let addr = target
        .http
        .strip_prefix("http://")
        .context("the bench reads plain http:// bridges")?
        .trim_end_matches('/')
        .to_owned();
    let token = token::mint(
        &target.secret,
        token::subscriber_claims("tenant_id", tenant, "bench"),
        3600,
    )?;
    let counters = Counters {
        readers: (0..n).map(|_| Arc::default()).collect(),
    };
    let samples = Arc::new(Samples::default());
    let (tx, mut rx) = mpsc::channel(n.max(1));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let path = format!("/v1/events?channel={}", channels[per_stream(i)]);
        tasks.push(tokio::spawn(reader(
            addr.clone(),
            path,
            token.clone(),
            counters.readers[i].clone(),
            latency.then(|| samples.clone()),
            tx.clone(),
            stop_rx.clone(),
        )));
        // Open in waves so the listen backlog is not overrun.
        if i % 500 == 499 {
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
    Ok(Streams {
        tasks,
        stop,
        counters,
        samples,
    })
}

impl Streams {
    /// Waits until `expected` deliveries arrived or nothing moves, then adds
    /// deliveries, losses, rate since `start_us` and latency to `report`.
    async fn report_deliveries(self, expected: u64, start_us: u64, report: &mut serde_json::Value) {
        wait_quiet(&self.counters, expected, Duration::from_secs(120)).await;
        let delivered = self.counters.delivered();
        let last = self.counters.last_delivery_us();
        let secs = (last.saturating_sub(start_us)) as f64 / 1e6;
        let lat = self.finish().await;
        report["deliveries"] = json!(delivered);
        report["lost"] = json!(expected.saturating_sub(delivered));
        report["deliveries_per_sec"] = json!((delivered as f64 / secs.max(1e-9)).round());
        report["latency_ms"] = json!({
            "p50": percentile(&lat, 0.50), "p90": percentile(&lat, 0.90),
            "p99": percentile(&lat, 0.99), "max": percentile(&lat, 1.0),
        });
    }

    /// Stops every reader and waits for it to hand in its samples.
    async fn finish(self) -> Vec<u64> {
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

fn request(channel: &pb::Channel, payload: usize) -> pb::PublishRequest {
    client::request(channel.clone(), stamped(payload), "")
}

/// Publishes `requests` over one PublishStream; returns accepted count.
async fn publish_stream(
    client: &mut Client,
    requests: impl futures::Stream<Item = pb::PublishRequest> + Send + 'static,
) -> Result<u64> {
    let mut responses = client.publish_stream(requests).await?.into_inner();
    let mut ok = 0;
    while let Some(r) = responses.message().await? {
        if r.error.is_none() {
            ok += 1;
        }
    }
    Ok(ok)
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

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Runs one scenario and prints its figures as one JSON object.
pub async fn run(args: BenchArgs) -> Result<()> {
    match args.scenario {
        Scenario::Floor => return floor::run(args).await,
        Scenario::Bus => return bus::run(args).await,
        _ => {}
    }
    let mut target = if args.spawn {
        spawn_bridge(&args).await?
    } else {
        Target {
            http: args.http.clone(),
            grpc: args.grpc.clone(),
            secret: args
                .secret
                .clone()
                .context("--secret is needed without --spawn")?,
            pid: None,
            child: None,
        }
    };
    let tenant = uuid::Uuid::new_v4().to_string();
    let pub_token = token::mint(
        &target.secret,
        token::publisher_claims("bench", crate::auth::PUBLISH_SCOPE, &["*".to_owned()]),
        3600,
    )?;
    let connected = client::connect(&target.grpc, &pub_token).await;
    let mut publisher = target.explain(connected.map_err(Into::into)).await?;
    let rss_before = target.pid.and_then(rss_kib);
    let bus = if args.valkey_url.is_some() {
        "valkey"
    } else if args.spawn {
        "embedded"
    } else {
        "unknown (running bridge)"
    };
    let mut report = json!({
        "scenario": format!("{:?}", args.scenario).to_lowercase(),
        "bus": bus,
        "subscribers": args.subscribers,
        "events": args.events,
        "payload_bytes": args.payload,
    });

    match args.scenario {
        Scenario::Fanout | Scenario::Latency => {
            let name = format!("bench:{tenant}:fanout");
            let ch = client::channel("bench", &tenant, "fanout");
            let latency = args.scenario == Scenario::Latency;
            let streams =
                open_streams(&target, &[name], |_| 0, args.subscribers, &tenant, true).await;
            let streams = target.explain(streams).await?;
            let expected = (args.subscribers * args.events) as u64;
            let started = Instant::now();
            let start_us = now_us();
            if latency {
                // Through one PublishStream fed by a ticker, so the rate
                // holds whatever each publish's round trip is (one unary
                // call at a time fell to ~100/s on Valkey under this load).
                // Each event is stamped when its tick comes.
                let every = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
                let (tx, rx) = mpsc::channel(1024);
                let (n, payload, ch) = (args.events, args.payload, ch.clone());
                let feeder = tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                    for _ in 0..n {
                        tick.tick().await;
                        if tx.send(request(&ch, payload)).await.is_err() {
                            break;
                        }
                    }
                });
                let accepted = publish_stream(
                    &mut publisher,
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                )
                .await?;
                feeder.await?;
                report["published"] = json!(accepted);
            } else {
                let payload = args.payload;
                let n = args.events;
                let reqs = futures::stream::iter((0..n).map(move |_| request(&ch, payload)));
                let accepted = publish_stream(&mut publisher, reqs).await?;
                report["published"] = json!(accepted);
            }
            let publish_secs = started.elapsed().as_secs_f64();
            report["publish_secs"] = json!(publish_secs);
            streams
                .report_deliveries(expected, start_us, &mut report)
                .await;
            if latency {
                report["rate"] = json!(args.rate);
            }
        }
        Scenario::Channels => {
            let names: Vec<String> = (0..args.subscribers)
                .map(|i| format!("bench:{tenant}:c{i}"))
                .collect();
            let streams =
                open_streams(&target, &names, |i| i, args.subscribers, &tenant, true).await;
            let streams = target.explain(streams).await?;
            let expected = (args.subscribers * args.events) as u64;
            let (payload, subs, events) = (args.payload, args.subscribers, args.events);
            // Made once, before the clock starts: the publisher shares the
            // cores with the bridge.
            let channels: Vec<pb::Channel> = (0..subs)
                .map(|i| client::channel("bench", &tenant, &format!("c{i}")))
                .collect();
            let start_us = now_us();
            let reqs = futures::stream::iter(
                (0..events * subs).map(move |k| request(&channels[k % subs], payload)),
            );
            let started = Instant::now();
            let accepted = publish_stream(&mut publisher, reqs).await?;
            report["published"] = json!(accepted);
            report["publish_secs"] = json!(started.elapsed().as_secs_f64());
            streams
                .report_deliveries(expected, start_us, &mut report)
                .await;
        }
        Scenario::Idle => {
            let names: Vec<String> = (0..args.subscribers)
                .map(|i| format!("bench:{tenant}:idle{}", i % 100))
                .collect();
            let streams =
                open_streams(&target, &names, |i| i, args.subscribers, &tenant, false).await;
            let streams = target.explain(streams).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let rss_after = target.pid.and_then(rss_kib);
            if let (Some(before), Some(after)) = (rss_before, rss_after) {
                report["server_rss_kib_before"] = json!(before);
                report["server_rss_kib_after"] = json!(after);
                // No streams, no figure per stream (rather than all the
                // growth charged to one that does not exist).
                if args.subscribers > 0 {
                    report["server_bytes_per_stream"] =
                        json!(((after.saturating_sub(before)) * 1024) / args.subscribers as u64);
                }
            }
            streams.finish().await;
        }
        Scenario::Publish => {
            let ch = client::channel("bench", &tenant, "publish");
            let (payload, n) = (args.payload, args.events);
            let c2 = ch.clone();
            let started = Instant::now();
            let reqs = futures::stream::iter((0..n).map(move |_| request(&c2, payload)));
            let accepted = publish_stream(&mut publisher, reqs).await?;
            let stream_rate = accepted as f64 / started.elapsed().as_secs_f64();
            let started = Instant::now();
            let per = n.div_ceil(args.callers.max(1));
            let mut tasks = Vec::new();
            for _ in 0..args.callers.max(1) {
                let mut p = publisher.clone();
                let ch = ch.clone();
                tasks.push(tokio::spawn(async move {
                    let mut ok = 0u64;
                    for _ in 0..per {
                        if p.publish(request(&ch, payload)).await.is_ok() {
                            ok += 1;
                        }
                    }
                    ok
                }));
            }
            let mut unary_ok = 0;
            for t in tasks {
                unary_ok += t.await?;
            }
            let unary_rate = unary_ok as f64 / started.elapsed().as_secs_f64();
            report["publish_stream_per_sec"] = json!(stream_rate.round());
            report["unary_per_sec"] = json!(unary_rate.round());
            report["unary_callers"] = json!(args.callers);
        }
        // Run above, without a bridge.
        Scenario::Floor | Scenario::Bus => {}
        Scenario::Resume => {
            let ch = client::channel("bench", &tenant, "resume");
            let first = publisher
                .publish(request(&ch, args.payload))
                .await?
                .into_inner()
                .id;
            let (payload, n) = (args.payload, args.events);
            let c2 = ch.clone();
            let reqs = futures::stream::iter((0..n).map(move |_| request(&c2, payload)));
            publish_stream(&mut publisher, reqs).await?;
            let http = reqwest::Client::builder().no_proxy().build()?;
            let token = token::mint(
                &target.secret,
                token::subscriber_claims("tenant_id", &tenant, "bench"),
                3600,
            )?;
            let url = format!("{}/v1/events?channel=bench:{tenant}:resume", target.http);
            let started = Instant::now();
            let response = http
                .get(&url)
                .bearer_auth(&token)
                .header("last-event-id", &first)
                .send()
                .await?;
            let mut body = response.bytes_stream();
            let (mut seen, mut carry) = (0usize, Vec::new());
            while seen < n {
                let Some(chunk) = body.next().await else {
                    break;
                };
                carry.extend_from_slice(&chunk?);
                let frames = carry.windows(8).filter(|w| w == b"\nevent: ").count();
                seen += frames;
                let keep = carry.len().saturating_sub(7);
                carry.drain(..keep);
            }
            report["caught_up"] = json!(seen >= n);
            report["resume_ms"] = json!(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    if let Some(mut child) = target.child.take() {
        let _ = child.kill().await;
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
