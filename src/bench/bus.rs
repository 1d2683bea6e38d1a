//! The `bus` scenario: the many-channels publish pattern straight on the
//! bus — no gRPC, no HTTP, no SSE. Events go round robin over N channels,
//! in batches of 64 with 4 batches on their way (as `PublishStream` sends
//! them), to a bus whose node watches every channel; it reports what the
//! bus alone sustains on this machine, and on Valkey the server's own time
//! per event (`INFO commandstats`). The `channels` scenario is read against
//! it: the rest is HTTP, gRPC, the streams and the load generator.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use super::args::BenchArgs;
use super::commandstats::CommandStats;
use crate::bus::memory::MemoryBus;
use crate::bus::valkey::{ValkeyBus, ValkeyConfig};
use crate::bus::{Bus, Entry, Orders, Outgoing, Retention, Sink};
use crate::channel::Channel;
use crate::revocation::Revocation;

/// As many as one `PublishStream` batch and as many batches in flight.
const BATCH: usize = 64;
const IN_FLIGHT: usize = 4;

/// Counts what reaches this node.
#[derive(Default)]
struct Counting {
    delivered: AtomicU64,
}

impl Sink for Counting {
    fn deliver(&self, _channel: &Channel, _entry: Entry) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }
    fn resync(&self, _channel: &Channel) {}
}

impl Orders for Counting {
    fn apply(&self, _order: &Revocation) {}
}

/// Valkey's total `EVALSHA` time so far, in µs.
async fn script_usec(url: &str) -> Result<u64> {
    Ok(CommandStats::read(url)
        .await?
        .get("evalsha")
        .map_or(0, |c| c.usec))
}

#[derive(Serialize)]
pub(super) struct BusRun {
    channels: usize,
    events_per_channel: usize,
    payload_bytes: usize,
    published: u64,
    published_per_sec: f64,
    delivered: u64,
    delivered_per_sec: f64,
    lost: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    valkey_script_usec_per_event: Option<f64>,
}

/// Runs the scenario; returns which bus it ran on and its figures.
pub(super) async fn run(args: &BenchArgs) -> Result<(&'static str, BusRun)> {
    let sink = Arc::new(Counting::default());
    let retention = Retention {
        max_len: args.events.max(1000) + 10,
        ..Retention::default()
    };
    let bus: Arc<dyn Bus> = match &args.valkey_url {
        Some(url) => Arc::new(
            ValkeyBus::connect(
                &ValkeyConfig {
                    url: url.clone(),
                    timeout: Duration::from_secs(5),
                    durability: Default::default(),
                    durability_timeout: Duration::from_secs(1),
                },
                retention,
                sink.clone(),
                sink.clone(),
            )
            .await?,
        ),
        None => Arc::new(MemoryBus::new(
            retention,
            usize::MAX,
            sink.clone(),
            sink.clone(),
        )),
    };
    let tenant = uuid::Uuid::new_v4().to_string();
    let mut channels = Vec::with_capacity(args.subscribers);
    for i in 0..args.subscribers {
        let channel = Channel::parse(&format!("conversations:{tenant}:c{i}"))
            .map_err(|e| anyhow::anyhow!("bench channel: {e}"))?;
        bus.watch(&channel).await?;
        channels.push(channel);
    }
    let data = Bytes::from(format!(r#"{{"content":"{}"}}"#, "x".repeat(args.payload)));
    let event = crate::schema::Schema::embedded()
        .catalogue()
        .by_name("message.delta")
        .context("the catalogue has no message.delta")?
        .name
        .clone();
    let total = args.subscribers * args.events;
    let outgoing = (0..total).map(|k| Outgoing {
        channel: channels[k % channels.len()].clone(),
        event: event.clone(),
        data: data.clone(),
        idempotency_key: None,
    });
    let batches: Vec<Vec<Outgoing>> = outgoing
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(<[Outgoing]>::to_vec)
        .collect();
    let usec_before = match &args.valkey_url {
        Some(url) => script_usec(url).await?,
        None => 0,
    };
    let started = Instant::now();
    let mut outcomes = futures::stream::iter(batches)
        .map(|batch| {
            let bus = bus.clone();
            async move { bus.publish_batch(batch).await }
        })
        .buffered(IN_FLIGHT);
    let mut published = 0u64;
    while let Some(batch) = outcomes.next().await {
        published += batch.iter().filter(|r| r.is_ok()).count() as u64;
    }
    let publish_secs = started.elapsed().as_secs_f64();
    // Deliveries trail the last acknowledgement by one pub/sub hop.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.delivered.load(Ordering::Relaxed) < published && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered = sink.delivered.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    let mut figures = BusRun {
        channels: args.subscribers,
        events_per_channel: args.events,
        payload_bytes: args.payload,
        published,
        published_per_sec: (published as f64 / publish_secs).round(),
        delivered,
        delivered_per_sec: (delivered as f64 / secs).round(),
        lost: (total as u64).saturating_sub(delivered),
        valkey_script_usec_per_event: None,
    };
    if let Some(url) = &args.valkey_url {
        let usec = script_usec(url)
            .await
            .context("read Valkey's command stats")?
            .saturating_sub(usec_before);
        figures.valkey_script_usec_per_event =
            Some((usec as f64 / published.max(1) as f64 * 100.0).round() / 100.0);
    }
    Ok((super::args::bus_name(args, "embedded"), figures))
}
