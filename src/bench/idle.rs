//! The `idle` scenario: N open streams with nothing to deliver, and what
//! each costs in the (spawned) bridge's resident memory.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::args::{BenchArgs, Spread};
use super::bridge::Bridge;
use super::report::Load;
use super::target::rss_kib;

#[derive(Serialize)]
pub(super) struct Idle {
    #[serde(flatten)]
    load: Load,
    /// Channels the streams were spread over.
    channels: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_rss_kib_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_rss_kib_after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_bytes_per_stream: Option<u64>,
    /// On Valkey: what the streams cost Valkey's resident memory (its
    /// subscriptions), per stream; the bridge's and this are the whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    valkey_bytes_per_stream: Option<u64>,
}

/// the memory Valkey has allocated (`used_memory`), in bytes.
async fn valkey_rss(url: &str) -> Result<u64> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("INFO memory has no used_memory"))
}

/// The channel of each of the run's streams, by `--channels-per-stream`,
/// and how many channels that is.
pub(super) fn channel_names(args: &BenchArgs, tenant: &str) -> (Vec<String>, usize) {
    let over = match args.channels_per_stream {
        Spread::Own => args.subscribers.max(1),
        Spread::Over(n) => n,
    };
    let names = (0..args.subscribers)
        .map(|i| format!("conversations:{tenant}:idle{}", i % over))
        .collect();
    (names, over)
}

impl Idle {
    pub(super) fn new(args: &BenchArgs, over: usize) -> Self {
        Idle {
            load: Load::of(args),
            channels: over.min(args.subscribers),
            server_rss_kib_before: None,
            server_rss_kib_after: None,
            server_bytes_per_stream: None,
            valkey_bytes_per_stream: None,
        }
    }

    /// The server's memory before and after `streams` opened, and so per
    /// stream.
    pub(super) fn with_rss(
        mut self,
        before: Option<u64>,
        after: Option<u64>,
        streams: usize,
    ) -> Self {
        if let (Some(before), Some(after)) = (before, after) {
            self.server_rss_kib_before = Some(before);
            self.server_rss_kib_after = Some(after);
            // No streams, no figure per stream (rather than all the growth
            // charged to one that does not exist).
            if streams > 0 {
                self.server_bytes_per_stream =
                    Some((after.saturating_sub(before) * 1024) / streams as u64);
            }
        }
        self
    }
}

/// How long the bridge rests before each memory reading.
pub(super) const SETTLE: Duration = Duration::from_secs(2);

pub(super) async fn run(args: &BenchArgs, bridge: &mut Bridge) -> Result<Idle> {
    let tenant = bridge.tenant.clone();
    let (names, over) = channel_names(args, &tenant);
    // A cluster's memory is spread over its primaries: only one Valkey
    // is measured.
    let valkey = args.valkey_url.as_deref().filter(|u| !u.contains('+'));
    let valkey_before = match valkey {
        Some(url) => Some(valkey_rss(url).await?),
        None => None,
    };
    // Both readings are taken after the same 2 s at rest: an allocator that
    // returns freed pages after a delay (jemalloc's, change 50) would
    // otherwise return the start-up's only during the run, and make each
    // stream look cheaper than it is.
    tokio::time::sleep(SETTLE).await;
    let rss_before = bridge.target.pid.and_then(rss_kib);
    let streams = bridge.open_streams(&names, args.subscribers, false).await?;
    tokio::time::sleep(SETTLE).await;
    let rss_after = bridge.target.pid.and_then(rss_kib);
    let valkey_after = match valkey {
        Some(url) => Some(valkey_rss(url).await?),
        None => None,
    };
    let mut figures = Idle::new(args, over).with_rss(rss_before, rss_after, args.subscribers);
    if let (Some(before), Some(after)) = (valkey_before, valkey_after) {
        figures.valkey_bytes_per_stream =
            Some(after.saturating_sub(before) / args.subscribers.max(1) as u64);
    }
    streams.finish().await;
    Ok(figures)
}
