//! A bridge ready for a scenario: the target, plus what every bridge
//! scenario needs before it starts.

use anyhow::{Context, Result, bail};

use super::args::BenchArgs;
use super::keys::{Alg, Signer};
use super::readers::{self, Opened, Opening, Pace, Streams};
use super::target::{Target, spawn_bridge};
use crate::client::{self, Client};
use crate::token;

/// A bridge ready for a scenario: its tenant for this run, a connected
/// publisher, and its memory before any stream opened.
pub(super) struct Bridge {
    pub(super) target: Target,
    pub(super) tenant: String,
    pub(super) publisher: Client,
    pub(super) bus: &'static str,
}

impl Bridge {
    pub(super) async fn start(args: &BenchArgs) -> Result<Self> {
        let mut target = if args.spawn {
            spawn_bridge(args).await?
        } else {
            if args.alg != Alg::Hs256 {
                bail!("--alg rs256 needs --spawn: the run gives its bridge the key");
            }
            let secret = args
                .secret
                .clone()
                .context("--secret is needed without --spawn")?;
            Target {
                http: args.http.clone(),
                grpc: args.grpc.clone(),
                signer: Signer::new(Alg::Hs256, &secret, None)?,
                secret,
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
        let bus = super::args::bus_name(
            args,
            if args.spawn {
                "embedded"
            } else {
                "unknown (running bridge)"
            },
        );
        Ok(Self {
            target,
            tenant,
            publisher,
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

    /// Opens one stream per opening at `pace`; streams that measure
    /// nothing are not sampled for latency.
    pub(super) async fn open(&mut self, openings: Vec<Opening>, pace: Pace) -> Result<Opened> {
        let opened = readers::open(&self.target, openings, false, pace).await;
        self.target.explain(opened).await
    }

    /// Kills this run's bridge and starts a fresh one on the same bus and
    /// tenant: a node restart, after which the node has nothing but what
    /// Valkey holds.
    pub(super) async fn restart(&mut self, args: &BenchArgs) -> Result<()> {
        if let Some(mut child) = self.target.child.take() {
            let _ = child.kill().await;
        }
        let tenant = std::mem::take(&mut self.tenant);
        *self = Bridge::start(args).await?;
        self.tenant = tenant;
        Ok(())
    }

    /// Stops a bridge this run spawned; one it found running is left be.
    pub(super) async fn stop(mut self) {
        if let Some(mut child) = self.target.child.take() {
            let _ = child.kill().await;
        }
    }
}
