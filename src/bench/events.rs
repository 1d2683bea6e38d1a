//! The publisher side of a run: events stamped with the time they were
//! made, and one `PublishStream` to send them through.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;

use crate::client::{self, Client};
use crate::proto::events::v1::{Event, MessageDelta, event::Payload};
use crate::proto::ssebridge::v1 as pb;

pub(super) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// An event whose content starts with the publish time in µs. Built in
/// one allocation, without `format!`: the publisher shares the cores with
/// the bridge, and in the many-channels run it makes one per delivery.
fn stamped(payload: usize) -> Event {
    let mut digits = itoa::Buffer::new();
    let stamp = digits.format(now_us());
    let mut content = String::with_capacity(payload.max(stamp.len() + 1));
    content.push_str(stamp);
    content.push(' ');
    let pad = payload.saturating_sub(content.len());
    content.extend(std::iter::repeat_n('x', pad));
    Event {
        payload: Some(Payload::MessageDelta(MessageDelta { content })),
    }
}

pub(super) fn request(channel: &pb::Channel, payload: usize) -> pb::PublishRequest {
    client::request(channel.clone(), stamped(payload), "")
}

/// Publishes `requests` over one PublishStream; returns accepted count.
pub(super) async fn publish_stream(
    client: &mut Client,
    requests: impl futures::Stream<Item = pb::PublishRequest> + Send + 'static,
) -> Result<u64> {
    let mut responses = client.publish_stream(requests).await?.into_inner();
    let mut ok = 0;
    while let Some(r) = responses.message().await? {
        if r.error.is_none() {
            ok += 1;
        }
    }
    Ok(ok)
}

/// Publishes `requests` over one PublishStream and returns each event's id,
/// in request order (the order the stream answers in); any refusal fails
/// the run, since a scenario that needs the ids needs all of them.
pub(super) async fn publish_ids(
    client: &mut Client,
    requests: Vec<pb::PublishRequest>,
) -> Result<Vec<String>> {
    let n = requests.len();
    let mut responses = client
        .publish_stream(futures::stream::iter(requests))
        .await?
        .into_inner();
    let mut ids = Vec::with_capacity(n);
    while let Some(r) = responses.message().await? {
        if let Some(e) = r.error {
            anyhow::bail!("a setup publish was refused: {}", e.message);
        }
        ids.push(r.id);
    }
    anyhow::ensure!(
        ids.len() == n,
        "{} of {n} setup publishes answered",
        ids.len()
    );
    Ok(ids)
}
