//! The `publish` scenario: events per second accepted through one
//! `PublishStream`, then through unary `Publish` from concurrent callers.

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use super::args::BenchArgs;
use super::bridge::Bridge;
use super::events::{publish_stream, request};
use super::report::Load;
use crate::client;

#[derive(Serialize)]
pub(super) struct Publish {
    #[serde(flatten)]
    load: Load,
    publish_stream_per_sec: f64,
    unary_per_sec: f64,
    unary_callers: usize,
}

pub(super) async fn run(args: &BenchArgs, bridge: &mut Bridge) -> Result<Publish> {
    let ch = client::channel("conversations", &bridge.tenant, "publish");
    let (payload, n) = (args.payload, args.events);
    let c2 = ch.clone();
    let started = Instant::now();
    let reqs = futures::stream::iter((0..n).map(move |_| request(&c2, payload)));
    let accepted = publish_stream(&mut bridge.publisher, reqs).await?;
    let stream_rate = accepted as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let callers = args.callers.max(1);
    let per = n.div_ceil(callers);
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let mut p = bridge.publisher.clone();
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
    Ok(Publish {
        load: Load::of(args),
        publish_stream_per_sec: stream_rate.round(),
        unary_per_sec: unary_rate.round(),
        unary_callers: args.callers,
    })
}
