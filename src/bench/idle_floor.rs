//! The `idle-floor` scenario: the `idle` scenario against a stand-in server
//! that holds each stream with the least a server can, in one of two
//! shapes. What it measures is the floor under the bridge's memory per idle
//! stream on this machine, with the same runtime, allocator, load generator
//! and pacing, and nothing of the bridge's own (no token, no registry, no
//! subscription, no SSE framing):
//!
//! - `task`: a tokio task per stream that waits on its channel's
//!   `broadcast` receiver and a keep-alive timer, as any server built on a
//!   task per connection does;
//! - `held`: no task per stream. Each socket, once answered, is kept in its
//!   channel's list, still registered with the reactor, for one writer to
//!   write to: the shape of a writer per core.
//!
//! The stand-in runs as its own process (`sse-bridge bench-floor-server`,
//! hidden), so its resident memory holds nothing of the load generator's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::ValueEnum;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

use super::args::BenchArgs;
use super::idle::{Idle, SETTLE, channel_names};
use super::keys::{Alg, Signer};
use super::readers::open_streams;
use super::target::{Target, free_port, rss_kib, wait_for_port};

/// What the report names as the bus: there is none.
pub(super) const BUS: &str = "none (a stand-in server: see `floor_shape`)";

/// How the stand-in server holds an idle stream.
#[derive(ValueEnum, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FloorShape {
    /// A task per stream, waiting on a broadcast receiver and a timer.
    Task,
    /// The socket alone, kept in its channel's list for one writer.
    Held,
}

impl FloorShape {
    fn name(self) -> &'static str {
        match self {
            FloorShape::Task => "task",
            FloorShape::Held => "held",
        }
    }
}

/// The hidden `bench-floor-server` command's arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct FloorServerArgs {
    #[arg(long)]
    pub addr: SocketAddr,
    #[arg(long, value_enum)]
    pub shape: FloorShape,
}

#[derive(Serialize)]
pub(super) struct IdleFloor {
    #[serde(flatten)]
    idle: Idle,
    floor_shape: FloorShape,
}

/// What the stand-in answers each stream request with: the bridge's head,
/// without the headers only a browser needs.
const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";

/// The keep-alive comment as one chunk, and how often (the bridge's
/// default `--keepalive-secs`).
const KEEPALIVE: &[u8] = b"e\r\n: keepalive\n\n\r\n";
const KEEPALIVE_EVERY: Duration = Duration::from_secs(15);

/// A broadcast ring as small as the bridge's first one.
const RING: usize = 4;

/// The stand-in's state: each channel's sender (`task`) or sockets
/// (`held`). The map is keyed by the channel's name, as the bridge's hub is.
#[derive(Default)]
struct Channels {
    senders: HashMap<String, broadcast::Sender<Bytes>>,
    held: HashMap<String, Vec<TcpStream>>,
}

/// Runs the stand-in server until killed.
pub async fn serve(args: FloorServerArgs) -> Result<()> {
    let listener = TcpListener::bind(args.addr).await?;
    let channels = Arc::new(Mutex::new(Channels::default()));
    loop {
        let (socket, _) = listener.accept().await?;
        let channels = channels.clone();
        tokio::spawn(async move {
            // A stream that fails (its client left) is simply gone.
            let _ = stream(socket, args.shape, &channels).await;
        });
    }
}

async fn stream(
    mut socket: TcpStream,
    shape: FloorShape,
    channels: &Mutex<Channels>,
) -> Result<()> {
    socket.set_nodelay(true)?;
    let channel = read_channel(&mut socket).await?;
    socket.write_all(HEAD).await?;
    let lock = || channels.lock().unwrap_or_else(|p| p.into_inner());
    match shape {
        FloorShape::Held => {
            lock().held.entry(channel).or_default().push(socket);
            Ok(())
        }
        FloorShape::Task => {
            let rx = lock()
                .senders
                .entry(channel)
                .or_insert_with(|| broadcast::channel(RING).0)
                .subscribe();
            idle(socket, rx).await
        }
    }
}

/// Writes what the channel sends, and a keep-alive comment when it sends
/// nothing, until the client leaves.
async fn idle(mut socket: TcpStream, mut rx: broadcast::Receiver<Bytes>) -> Result<()> {
    let timer = tokio::time::sleep(KEEPALIVE_EVERY);
    tokio::pin!(timer);
    loop {
        tokio::select! {
            _ = &mut timer => {
                socket.write_all(KEEPALIVE).await?;
                timer.as_mut().reset(tokio::time::Instant::now() + KEEPALIVE_EVERY);
            }
            frame = rx.recv() => match frame {
                Ok(frame) => socket.write_all(&frame).await?,
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}

/// Reads a request head and returns its `channel` parameter; nothing else
/// of the request is looked at.
async fn read_channel(socket: &mut TcpStream) -> Result<String> {
    let mut head = Vec::with_capacity(1024);
    let end = loop {
        if head.len() > 16 * 1024 {
            bail!("request head over 16 KiB");
        }
        if socket.read_buf(&mut head).await? == 0 {
            bail!("client left before its request head ended");
        }
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
    };
    let line = head[..end]
        .split(|b| *b == b'\r')
        .next()
        .unwrap_or_default();
    let target = std::str::from_utf8(line)?
        .split(' ')
        .nth(1)
        .context("request line without a target")?;
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "channel")
        .map(|(_, v)| v.into_owned())
        .context("request without a channel")
}

pub(super) async fn run(args: &BenchArgs) -> Result<IdleFloor> {
    let port = free_port()?;
    let shape = args.floor_shape;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["bench-floor-server", "--addr", &format!("127.0.0.1:{port}")])
        .args(["--shape", shape.name()])
        .kill_on_drop(true)
        .spawn()
        .context("spawn the stand-in server")?;
    wait_for_port(&mut child, port, "the stand-in server").await?;
    let pid = child.id();
    let target = Target {
        http: format!("http://127.0.0.1:{port}"),
        grpc: String::new(),
        secret: "floor".into(),
        signer: Signer::new(Alg::Hs256, "floor", None)?,
        pid,
        child: Some(child),
    };
    // Read as `idle` reads the bridge: each after the same rest.
    tokio::time::sleep(SETTLE).await;
    let rss_before = pid.and_then(rss_kib);
    let (names, over) = channel_names(args, "floor");
    let streams = open_streams(&target, &names, args.subscribers, "floor", false).await?;
    tokio::time::sleep(SETTLE).await;
    let rss_after = pid.and_then(rss_kib);
    streams.finish().await;
    drop(target);
    Ok(IdleFloor {
        idle: Idle::new(args, over).with_rss(rss_before, rss_after, args.subscribers),
        floor_shape: shape,
    })
}
