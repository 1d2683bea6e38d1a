//! `sse-bridge tail`: print a stream's events as they arrive.

use anyhow::{Context, Result, bail};
use futures::StreamExt;

use super::args::TailArgs;

pub(super) async fn tail(args: TailArgs) -> Result<()> {
    let mut url = reqwest::Url::parse(&args.url)
        .with_context(|| format!("bad --url `{}`", args.url))?
        .join("/v1/events")?;
    {
        let mut q = url.query_pairs_mut();
        for c in &args.channels {
            q.append_pair("channel", c);
        }
        if let Some(id) = &args.last_event_id {
            q.append_pair("last_event_id", id);
        }
    }
    let http = reqwest::Client::builder().no_proxy().build()?;
    let response = http
        .get(url)
        .bearer_auth(&args.token)
        .send()
        .await
        .context("cannot reach the bridge")?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        bail!("{status}: {body}");
    }
    use eventsource_stream::Eventsource;
    let mut events = response.bytes_stream().eventsource();
    while let Some(event) = events.next().await {
        let event = event.context("stream broke")?;
        println!(
            "id: {}\nevent: {}\ndata: {}\n",
            event.id, event.event, event.data
        );
    }
    Ok(())
}
