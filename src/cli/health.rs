//! `sse-bridge health`: a container's HEALTHCHECK where the image has no
//! curl (distroless). Exit 0 when the endpoint answers 200, 1 otherwise.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// The bridge's HTTP base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Check /readyz (the bus reachable, not draining) instead of /healthz.
    #[arg(long)]
    pub ready: bool,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

pub(super) async fn health(args: HealthArgs) -> Result<()> {
    if !(args.url.starts_with("http://") || args.url.starts_with("https://")) {
        bail!(
            "bad --url `{}`: expected the HTTP listener's URL, e.g. http://127.0.0.1:8080",
            args.url
        );
    }
    let path = if args.ready { "readyz" } else { "healthz" };
    let url = format!("{}/{path}", args.url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(args.timeout_ms))
        .build()?;
    let status = match client.get(&url).send().await {
        Ok(r) => r.status(),
        Err(e) => bail!("{url}: {e}"),
    };
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    Ok(())
}
