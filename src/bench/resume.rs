//! The `resume` scenario: how long a client that missed E events takes to
//! catch up when it reconnects with `Last-Event-ID`.

use std::time::Instant;

use anyhow::Result;
use futures::StreamExt;
use serde::Serialize;

use super::args::BenchArgs;
use super::bridge::Bridge;
use super::events::{publish_stream, request};
use super::report::Load;
use crate::{client, token};

#[derive(Serialize)]
pub(super) struct Resume {
    #[serde(flatten)]
    load: Load,
    caught_up: bool,
    resume_ms: f64,
}

pub(super) async fn run(args: &BenchArgs, bridge: &mut Bridge) -> Result<Resume> {
    let tenant = &bridge.tenant;
    let ch = client::channel("conversations", tenant, "resume");
    let first = bridge
        .publisher
        .publish(request(&ch, args.payload))
        .await?
        .into_inner()
        .id;
    let (payload, n) = (args.payload, args.events);
    let reqs = futures::stream::iter((0..n).map(move |_| request(&ch, payload)));
    publish_stream(&mut bridge.publisher, reqs).await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let token = token::mint(
        &bridge.target.secret,
        token::subscriber_claims("tenant_id", tenant, "bench"),
        3600,
    )?;
    let url = format!(
        "{}/v1/events?channel=conversations:{tenant}:resume",
        bridge.target.http
    );
    let started = Instant::now();
    let response = http
        .get(&url)
        .bearer_auth(&token)
        .header("last-event-id", &first)
        .send()
        .await?;
    let mut body = response.bytes_stream();
    let (mut seen, mut carry) = (0usize, Vec::new());
    while seen < n {
        let Some(chunk) = body.next().await else {
            break;
        };
        carry.extend_from_slice(&chunk?);
        seen += carry.windows(8).filter(|w| w == b"\nevent: ").count();
        let keep = carry.len().saturating_sub(7);
        carry.drain(..keep);
    }
    Ok(Resume {
        load: Load::of(args),
        caught_up: seen >= n,
        resume_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}
