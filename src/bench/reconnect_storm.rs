//! The `reconnect-storm` scenario: a node restarts, and every client it
//! served comes back within a second, each a few events behind on its own
//! channel. What counts is how soon all of them have caught up, how much
//! memory the node needed to get there, and how many Valkey commands it
//! spent per client.
//!
//! Needs `--spawn` and `--valkey-url`: the restart is a real process kill
//! and start, and after it only Valkey still has the missed events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;

use super::args::BenchArgs;
use super::bridge::Bridge;
use super::commandstats::CommandStats;
use super::events::{publish_ids, publish_stream, request};
use super::readers::{Opening, Pace};
use super::target::{peak_rss_kib, rss_kib};
use crate::client;
use crate::proto::ssebridge::v1 as pb;

#[derive(Serialize)]
pub(super) struct Storm {
    clients: usize,
    /// Events each client missed.
    behind: usize,
    within_ms: u64,
    delivered: u64,
    lost: u64,
    /// From the first reconnect to the last missed event read.
    caught_up_secs: f64,
    /// From the first reconnect to the last `200` head.
    open_secs: f64,
    server_rss_kib_idle: Option<u64>,
    server_rss_kib_peak: Option<u64>,
    server_peak_mb_above_idle: Option<f64>,
    /// Commands the bridge sent Valkey during the storm.
    valkey_commands_sent: u64,
    valkey_commands_sent_per_client: f64,
    /// Commands Valkey ran inside the bridge's scripts for them.
    valkey_calls_in_scripts_per_client: f64,
    /// Both, by name, as `INFO commandstats` counts them.
    valkey_commands_by_name: BTreeMap<String, u64>,
}

/// What the bridge's Lua scripts call (`src/bus/valkey/lua`): counted by
/// `INFO commandstats` like any command, but run inside a script the bridge
/// sent, not sent themselves. A test holds this list to the scripts.
const IN_SCRIPTS: &[&str] = &[
    "exists",
    "get",
    "pexpire",
    "set",
    "spublish",
    "time",
    "xadd",
    "xinfo|stream",
    "xlen",
    "xrange",
    "xrevrange",
    "xsetid",
    "xtrim",
];

pub(super) async fn run(args: &BenchArgs, bridge: &mut Bridge) -> Result<Storm> {
    let Some(url) = args.valkey_url.as_deref().filter(|_| args.spawn) else {
        bail!(
            "reconnect-storm needs --spawn and --valkey-url: it restarts the bridge, and only Valkey keeps the missed events across that"
        );
    };
    let n = args.subscribers;
    let tenant = bridge.tenant.clone();
    let channels: Vec<pb::Channel> = (0..n)
        .map(|i| client::channel("conversations", &tenant, &format!("storm{i}")))
        .collect();
    // Where each client was: the last event it read before the restart.
    let cursors = publish_ids(
        &mut bridge.publisher,
        channels.iter().map(|c| request(c, args.payload)).collect(),
    )
    .await?;
    // What it missed: `behind` more on its channel.
    let (payload, behind) = (args.payload, args.behind);
    let missed =
        futures::stream::iter((0..n * behind).map(move |k| request(&channels[k % n], payload)));
    let published = publish_stream(&mut bridge.publisher, missed).await?;
    if published != (n * behind) as u64 {
        bail!(
            "only {published} of {} missed events were published",
            n * behind
        );
    }
    bridge.restart(args).await?;
    // Idle: started, connected to Valkey, no streams yet.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = bridge.target.pid;
    let idle = pid.and_then(rss_kib);
    let mut openings = Vec::with_capacity(n);
    for (i, cursor) in cursors.into_iter().enumerate() {
        let token: Arc<str> = bridge
            .target
            .signer
            .subscriber(&tenant, &format!("user{i}"))?;
        let mut opening = Opening::new(&format!("conversations:{tenant}:storm{i}"), token);
        opening.last_event_id = Some(cursor);
        openings.push(opening);
    }
    let before = CommandStats::read(url).await?;
    let opened = bridge
        .open(openings, Pace::Over(Duration::from_millis(args.within_ms)))
        .await?;
    let expected = (n * behind) as u64;
    let (delivered, last_us) = opened.streams.arrived(expected).await;
    let by_name = CommandStats::read(url).await?.since(&before);
    let peak = pid.and_then(peak_rss_kib);
    let in_scripts: u64 = by_name
        .iter()
        .filter(|(name, _)| IN_SCRIPTS.contains(&name.as_str()))
        .map(|(_, n)| n)
        .sum();
    let sent = by_name.values().sum::<u64>() - in_scripts;
    let per_client = |k: u64| k as f64 / n.max(1) as f64;
    Ok(Storm {
        clients: n,
        behind,
        within_ms: args.within_ms,
        delivered,
        lost: expected.saturating_sub(delivered),
        caught_up_secs: last_us.saturating_sub(opened.start_us) as f64 / 1e6,
        open_secs: opened.secs,
        server_rss_kib_idle: idle,
        server_rss_kib_peak: peak,
        server_peak_mb_above_idle: idle
            .zip(peak)
            .map(|(i, p)| p.saturating_sub(i) as f64 / 1024.0),
        valkey_commands_sent: sent,
        valkey_commands_sent_per_client: per_client(sent),
        valkey_calls_in_scripts_per_client: per_client(in_scripts),
        valkey_commands_by_name: by_name,
    })
}

#[cfg(test)]
mod tests {
    use super::IN_SCRIPTS;

    /// Every command a script calls is counted as run inside a script, and
    /// nothing else is.
    #[test]
    fn the_in_script_list_is_what_the_scripts_call() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/bus/valkey/lua");
        let mut called = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let lua = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for call in lua.split("redis.call('").skip(1) {
                let name = call.split('\'').next().unwrap().to_ascii_lowercase();
                // `XINFO STREAM` is counted as the subcommand.
                let name = if name == "xinfo" {
                    "xinfo|stream".into()
                } else {
                    name
                };
                called.insert(name);
            }
        }
        let listed: std::collections::BTreeSet<String> =
            IN_SCRIPTS.iter().map(|s| s.to_string()).collect();
        assert_eq!(called, listed);
    }
}
