//! The `fanout` and `latency` scenarios: N subscribers of one channel.
//! `fanout` publishes E events as fast as one `PublishStream` takes them;
//! `latency` publishes them at a fixed rate, so the figure is the latency
//! of a steady load rather than of a queue.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;
use tokio::sync::mpsc;

use super::args::{BenchArgs, Scenario};
use super::bridge::Bridge;
use super::events::{now_us, publish_stream, request};
use super::report::{Deliveries, Load};
use crate::client;

/// What a run that delivers events reports (`fanout`, `latency`, `channels`).
#[derive(Serialize)]
pub(super) struct Delivered {
    #[serde(flatten)]
    load: Load,
    published: u64,
    publish_secs: f64,
    #[serde(flatten)]
    deliveries: Deliveries,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<u64>,
}

impl Delivered {
    pub(super) fn new(
        args: &BenchArgs,
        published: u64,
        publish_secs: f64,
        deliveries: Deliveries,
    ) -> Self {
        Self {
            load: Load::of(args),
            published,
            publish_secs,
            deliveries,
            rate: None,
        }
    }
}

pub(super) async fn run(args: &BenchArgs, bridge: &mut Bridge) -> Result<Delivered> {
    let tenant = bridge.tenant.clone();
    let tenant = &tenant;
    let name = format!("conversations:{tenant}:fanout");
    let ch = client::channel("conversations", tenant, "fanout");
    let latency = args.scenario == Scenario::Latency;
    let streams = bridge.open_streams(&[name], args.subscribers, true).await?;
    let expected = (args.subscribers * args.events) as u64;
    let started = Instant::now();
    let start_us = now_us();
    let published = if latency {
        // Through one PublishStream fed by a ticker, so the rate holds
        // whatever each publish's round trip is (one unary call at a time
        // fell to ~100/s on Valkey under this load). Each event is stamped
        // when its tick comes.
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
            &mut bridge.publisher,
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )
        .await?;
        feeder.await?;
        accepted
    } else {
        let (payload, n) = (args.payload, args.events);
        let reqs = futures::stream::iter((0..n).map(move |_| request(&ch, payload)));
        publish_stream(&mut bridge.publisher, reqs).await?
    };
    let publish_secs = started.elapsed().as_secs_f64();
    let deliveries = streams.deliveries(expected, start_us).await;
    let mut figures = Delivered::new(args, published, publish_secs, deliveries);
    if latency {
        figures.rate = Some(args.rate);
    }
    Ok(figures)
}
