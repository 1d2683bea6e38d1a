//! The `channels` scenario: N subscribers, each on its own channel, and E
//! events per channel published round robin over one `PublishStream`.

use std::time::Instant;

use anyhow::Result;

use super::args::BenchArgs;
use super::bridge::Bridge;
use super::events::{now_us, publish_stream, request};
use super::fanout::Delivered;
use crate::client;
use crate::proto::ssebridge::v1 as pb;

pub(super) async fn run(args: &BenchArgs, bridge: &mut Bridge) -> Result<Delivered> {
    let tenant = bridge.tenant.clone();
    let tenant = &tenant;
    let names: Vec<String> = (0..args.subscribers)
        .map(|i| format!("conversations:{tenant}:c{i}"))
        .collect();
    let streams = bridge.open_streams(&names, args.subscribers, true).await?;
    let expected = (args.subscribers * args.events) as u64;
    let (payload, subs, events) = (args.payload, args.subscribers, args.events);
    // Made once, before the clock starts: the publisher shares the cores
    // with the bridge.
    let channels: Vec<pb::Channel> = (0..subs)
        .map(|i| client::channel("conversations", tenant, &format!("c{i}")))
        .collect();
    let start_us = now_us();
    let reqs = futures::stream::iter(
        (0..events * subs).map(move |k| request(&channels[k % subs], payload)),
    );
    let started = Instant::now();
    let published = publish_stream(&mut bridge.publisher, reqs).await?;
    let publish_secs = started.elapsed().as_secs_f64();
    let deliveries = streams.deliveries(expected, start_us).await;
    Ok(Delivered::new(args, published, publish_secs, deliveries))
}
