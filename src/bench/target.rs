//! The bridge a run measures: one this command spawns (so its memory can be
//! read from `/proc/<pid>/status`) or one already running, and what every
//! bridge scenario needs from it before it starts: a tenant of its own and
//! a connected publisher.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::BenchArgs;
use super::readers::{self, Streams};
use crate::client::{self, Client};
use crate::token;

pub(super) struct Target {
    pub(super) http: String,
    pub(super) grpc: String,
    pub(super) secret: String,
    pub(super) pid: Option<u32>,
    pub(super) child: Option<tokio::process::Child>,
}

impl Target {
    /// A spawned bridge that is exiting (say it could not reach Valkey)
    /// explains a failure better than the sockets it reset on its way out.
    pub(super) async fn explain<T>(&mut self, r: Result<T>) -> Result<T> {
        let e = match r {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if let Some(child) = self.child.as_mut() {
            let exited = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
            if let Ok(Ok(status)) = exited {
                bail!("the spawned bridge exited ({status}); its error is above");
            }
        }
        Err(e)
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn spawn_bridge(args: &BenchArgs) -> Result<Target> {
    let secret = format!("bench-{}", uuid::Uuid::new_v4());
    let (http_port, grpc_port) = (free_port()?, free_port()?);
    let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
    cmd.args([
        "serve",
        "--http-addr",
        &format!("127.0.0.1:{http_port}"),
        "--grpc-addr",
        &format!("127.0.0.1:{grpc_port}"),
        "--jwt-secret",
        &secret,
        "--history-len",
        &(args.events.max(1000) + 10).to_string(),
        "--max-channels",
        "10",
        // The load generator is one tenant, one subject and one publisher.
        "--max-streams-per-tenant",
        "0",
        "--max-streams-per-subject",
        "0",
        "--publish-rate",
        "0",
    ]);
    if let Some(url) = &args.valkey_url {
        cmd.args(["--valkey-url", url]);
    }
    cmd.env("RUST_LOG", "warn").kill_on_drop(true);
    let mut child = cmd.spawn().context("spawn the bridge")?;
    let pid = child.id();
    let http = format!("http://127.0.0.1:{http_port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", grpc_port))
        .await
        .is_err()
    {
        // A bridge that could not start (say Valkey is not there) has said
        // why on its stderr and exited: point there rather than wait.
        if let Some(status) = child.try_wait()? {
            bail!("the spawned bridge exited ({status}); its error is above");
        }
        if Instant::now() > deadline {
            bail!("the spawned bridge did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Target {
        http,
        grpc: format!("http://127.0.0.1:{grpc_port}"),
        secret,
        pid,
        child: Some(child),
    })
}

/// Resident memory of a process, in KiB.
pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A bridge ready for a scenario: its tenant for this run, a connected
/// publisher, and its memory before any stream opened.
pub(super) struct Bridge {
    pub(super) target: Target,
    pub(super) tenant: String,
    pub(super) publisher: Client,
    pub(super) rss_before: Option<u64>,
    pub(super) bus: &'static str,
}

impl Bridge {
    pub(super) async fn start(args: &BenchArgs) -> Result<Self> {
        let mut target = if args.spawn {
            spawn_bridge(args).await?
        } else {
            Target {
                http: args.http.clone(),
                grpc: args.grpc.clone(),
                secret: args
                    .secret
                    .clone()
                    .context("--secret is needed without --spawn")?,
                pid: None,
                child: None,
            }
        };
        let tenant = uuid::Uuid::new_v4().to_string();
        let pub_token = token::mint(
            &target.secret,
            token::publisher_claims("bench", crate::auth::PUBLISH_SCOPE, &["*".to_owned()]),
            3600,
        )?;
        let connected = client::connect(&target.grpc, &pub_token).await;
        let publisher = target.explain(connected.map_err(Into::into)).await?;
        let rss_before = target.pid.and_then(rss_kib);
        let bus = if args.valkey_url.is_some() {
            "valkey"
        } else if args.spawn {
            "embedded"
        } else {
            "unknown (running bridge)"
        };
        Ok(Self {
            target,
            tenant,
            publisher,
            rss_before,
            bus,
        })
    }

    /// Opens `n` streams of this run's tenant, stream `i` on channel
    /// `i % channels.len()`.
    pub(super) async fn open_streams(
        &mut self,
        channels: &[String],
        n: usize,
        latency: bool,
    ) -> Result<Streams> {
        let streams = readers::open_streams(&self.target, channels, n, &self.tenant, latency).await;
        self.target.explain(streams).await
    }

    /// Stops a bridge this run spawned; one it found running is left be.
    pub(super) async fn stop(mut self) {
        if let Some(mut child) = self.target.child.take() {
            let _ = child.kill().await;
        }
    }
}
