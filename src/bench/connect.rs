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
    let opened = bridge.open(openings, Pace::Burst(args.in_flight)).await?;
    opened.streams.finish().await;
    Ok(Connect {
        load: Load::of(args),
        alg: args.alg,
        resume: args.resume,
        shared_token: args.shared_token,
        in_flight: args.in_flight,
        open_secs: opened.secs,
        streams_per_sec: (n as f64 / opened.secs.max(1e-9)).round(),
    })
}
