//! The `connect` scenario: how many streams a bridge opens per second, each
//! with a token it verifies — a fleet of browsers arriving, or coming back.
//!
//! Every stream is on a channel of its own and, unless `--shared-token`,
//! presents a token of its own (its own `sub`), so nothing the bridge
//! keeps per token or per channel is reused across streams. With
//! `--resume` each sends the id of its channel's last event as
//! `Last-Event-ID`: the history check a reconnect costs, with nothing to
//! replay. Tokens and cursors are made before the clock starts.

use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use super::args::{Alg, BenchArgs};
use super::bridge::Bridge;
use super::events::{publish_ids, request};
use super::readers::{Opening, Pace};
use super::report::Load;
use super::target::cpu_us;
use crate::client;

#[derive(Serialize)]
pub(super) struct Connect {
    #[serde(flatten)]
    load: Load,
    alg: Alg,
    resume: bool,
    shared_token: bool,
    in_flight: usize,
    /// From the first connect to the last `200` head.
    open_secs: f64,
    streams_per_sec: f64,
    /// CPU time per stream opened, meanwhile (10 ms resolution): the
    /// spawned bridge's, and the load generator's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    bridge_cpu_us_per_stream: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_generator_cpu_us_per_stream: Option<f64>,
}

pub(super) async fn run(args: &BenchArgs, bridge: &mut Bridge) -> Result<Connect> {
    let tenant = bridge.tenant.clone();
    let n = args.subscribers;
    let channel = |i: usize| format!("open{i}");
    let cursors = if args.resume {
        let reqs = (0..n)
            .map(|i| request(&client::channel("conversations", &tenant, &channel(i)), 8))
            .collect();
        Some(publish_ids(&mut bridge.publisher, reqs).await?)
    } else {
        None
    };
    let signer = &bridge.target.signer;
    let shared = match args.shared_token {
        true => Some(signer.subscriber(&tenant, "bench")?),
        false => None,
    };
    let mut openings = Vec::with_capacity(n);
    for i in 0..n {
        let token: Arc<str> = match &shared {
            Some(t) => t.clone(),
            None => signer.subscriber(&tenant, &format!("user{i}"))?,
        };
        let mut opening = Opening::new(&format!("conversations:{tenant}:{}", channel(i)), token);
        opening.last_event_id = cursors.as_ref().map(|c| c[i].clone());
        openings.push(opening);
    }
    let (pid, me) = (bridge.target.pid, std::process::id());
    let before = (pid.and_then(cpu_us), cpu_us(me));
    let opened = bridge.open(openings, Pace::Burst(args.in_flight)).await?;
    let after = (pid.and_then(cpu_us), cpu_us(me));
    opened.streams.finish().await;
    let per_stream =
        |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / n.max(1) as f64);
    Ok(Connect {
        load: Load::of(args),
        alg: args.alg,
        resume: args.resume,
        shared_token: args.shared_token,
        in_flight: args.in_flight,
        open_secs: opened.secs,
        streams_per_sec: (n as f64 / opened.secs.max(1e-9)).round(),
        bridge_cpu_us_per_stream: per_stream(before.0, after.0),
        load_generator_cpu_us_per_stream: per_stream(before.1, after.1),
    })
}
