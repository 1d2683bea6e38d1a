//! The `floor` scenario: the latency scenario's delivery pattern with no
//! bridge at all. One thread answers each stream request with a bare
//! `200` head and then, at the publish rate, writes every event's frame to
//! every socket as soon as it is due (events that fell due while it was
//! still writing go out together) — the least any server could do. What
//! it measures is the machine's share: the kernel's loopback TCP per write
//! and per read, and the load generator's own reading, on the same cores.
//! A bridge figure is read against it: the difference is the bridge's.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::args::BenchArgs;
use super::events::now_us;
use super::keys::{Alg, Signer};
use super::readers::open_streams;
use super::report::{Deliveries, Load};
use super::target::Target;

/// What the report names as the bus: there is none.
pub(super) const BUS: &str = "none (no server: kernel and load generator only)";

#[derive(Serialize)]
pub(super) struct Floor {
    #[serde(flatten)]
    load: Load,
    rate: u64,
    #[serde(flatten)]
    deliveries: Deliveries,
}

/// What the stand-in server answers each stream request with.
const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";

/// One event as the bridge frames it on an HTTP/1.1 stream: a chunk with an
/// `id:`, the event type and a `message.delta` whose content starts with
/// the time it was written.
fn frame(seq: usize, payload: usize) -> Vec<u8> {
    let stamp = now_us().to_string();
    let pad = payload.saturating_sub(stamp.len() + 1);
    let id = format!("{}-0", 1_700_000_000_000u64 + seq as u64);
    let data = format!(r#"{{"content":"{stamp} {}"}}"#, "x".repeat(pad));
    let body = crate::wire::frame(Some(&id), "message.delta", data.as_bytes());
    let mut chunk = format!("{:08x}\r\n", body.len()).into_bytes();
    chunk.extend_from_slice(&body);
    chunk.extend_from_slice(b"\r\n");
    chunk
}

/// Reads a request head and answers it; the request itself is not looked at.
fn answer(mut socket: &TcpStream) -> Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 512];
    while !head.ends_with(b"\r\n\r\n") {
        let n = socket.read(&mut byte)?;
        if n == 0 {
            bail!("client left before its request head ended");
        }
        head.extend_from_slice(&byte[..n]);
    }
    socket.write_all(HEAD)?;
    Ok(())
}

pub(super) async fn run(args: &BenchArgs) -> Result<Floor> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (n, events, payload) = (args.subscribers, args.events, args.payload);
    let every = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let server = std::thread::Builder::new()
        .name("floor-server".into())
        .spawn(move || -> Result<Vec<TcpStream>> {
            let mut sockets = Vec::with_capacity(n);
            for _ in 0..n {
                let (socket, _) = listener.accept()?;
                socket.set_nodelay(true)?;
                answer(&socket)?;
                sockets.push(socket);
            }
            wait.recv().context("the bench went away")?;
            // Events that fell due while the last round was being written
            // go out together, one write per socket, as the bridge does.
            let start = Instant::now();
            let mut sent = 0;
            while sent < events {
                let due = start + every * sent as u32;
                if let Some(left) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(left);
                }
                let ready = (start.elapsed().as_secs_f64() / every.as_secs_f64()) as usize + 1;
                let upto = ready.clamp(sent + 1, events);
                let chunk: Vec<u8> = (sent..upto).flat_map(|k| frame(k, payload)).collect();
                for socket in &mut sockets {
                    socket.write_all(&chunk)?;
                }
                sent = upto;
            }
            Ok(sockets)
        })?;
    let target = Target {
        http: format!("http://{addr}"),
        grpc: String::new(),
        secret: "floor".into(),
        signer: Signer::new(Alg::Hs256, "floor", None)?,
        pid: None,
        child: None,
    };
    let streams = open_streams(&target, &["floor".into()], n, "floor", true).await?;
    let start_us = now_us();
    go.send(()).context("the floor server stopped")?;
    let deliveries = streams.deliveries((n * events) as u64, start_us).await;
    let sockets = tokio::task::spawn_blocking(move || server.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the floor server panicked"))??;
    drop(sockets);
    Ok(Floor {
        load: Load::of(args),
        rate: args.rate,
        deliveries,
    })
}
