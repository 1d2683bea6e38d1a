//! `sse-bridge tail`: print a stream's events as they arrive.

use anyhow::{Context, Result, bail};
use futures::StreamExt;

use super::args::TailArgs;

pub(super) async fn tail(args: TailArgs) -> Result<()> {
    let url = reqwest::Url::parse(&args.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    let Some(url) = url else {
        bail!(
            "bad --url `{}`: expected the HTTP listener's URL, e.g. http://127.0.0.1:8080",
            args.url
        );
    };
    let mut url = url.join("/v1/events")?;
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
        .map_err(|e| {
            // HTTP/1.1 sent to the gRPC listener (HTTP/2 only) gets its
            // connection preface back, which reqwest calls unexpected.
            let wrong_port =
                std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source()).any(
                    |e| {
                        let text = e.to_string();
                        text.contains("unexpected message") || text.contains("invalid HTTP version")
                    },
                );
            let hint = if wrong_port {
                ": this looks like the gRPC listener; is --url the gRPC port? \
                 Streams come from --http-addr (default 127.0.0.1:8080)"
            } else {
                ""
            };
            anyhow::Error::new(e).context(format!("cannot reach the bridge{hint}"))
        })?;
    if !response.status().is_success() {
        let status = response.status();
        // The bridge's HTTP listener answers every refusal in JSON; the gRPC
        // listener (which takes HTTP/1.1 for gRPC-Web) answers a GET with a
        // bare 400.
        let json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let body = response.text().await.unwrap_or_default();
        if !json {
            bail!(
                "{status} {body}: this is not the bridge's HTTP listener; is --url the gRPC port? \
                 Streams come from --http-addr (default 127.0.0.1:8080)"
            );
        }
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
