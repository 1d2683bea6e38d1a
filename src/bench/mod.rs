//! `sse-bridge bench`: a load generator that drives a real bridge through
//! its real APIs — SSE connections over HTTP and publishes over gRPC — and
//! reports deliveries per second, lost deliveries, latency percentiles,
//! publish throughput and server memory per stream.
//!
//! It either spawns a bridge process of its own (`--spawn`, so memory can
//! be read from `/proc/<pid>/status`) or targets a running one.

//!
//! One file per scenario; what they share is the bridge they run against
//! (`target.rs`, `bridge.rs`), the publisher (`events.rs`), the readers (`readers.rs`)
//! and the report's typed keys (`report.rs`).

use anyhow::Result;
use serde::Serialize;

pub use args::{BenchArgs, Scenario};
use bridge::Bridge;
pub use idle_floor::{FloorServerArgs, FloorShape, serve as serve_floor};
use report::Report;

mod args;
mod bridge;
mod bus;
mod channels;
mod commandstats;
mod connect;
mod events;
mod fanout;
mod floor;
mod idle;
mod idle_floor;
mod keys;
mod publish;
mod readers;
mod reconnect_storm;
mod report;
mod resume;
mod target;

/// Runs one scenario and prints its figures as one JSON object.
pub async fn run(args: BenchArgs) -> Result<()> {
    let json = match args.scenario {
        Scenario::Fanout | Scenario::Latency => on_bridge(&args, fanout::run).await?,
        Scenario::Channels => on_bridge(&args, channels::run).await?,
        Scenario::Idle => on_bridge(&args, idle::run).await?,
        Scenario::Publish => on_bridge(&args, publish::run).await?,
        Scenario::Resume => on_bridge(&args, resume::run).await?,
        Scenario::Connect => on_bridge(&args, connect::run).await?,
        Scenario::ReconnectStorm => on_bridge(&args, reconnect_storm::run).await?,
        Scenario::IdleFloor => to_json(
            args.scenario,
            idle_floor::BUS,
            idle_floor::run(&args).await?,
        )?,
        Scenario::Floor => to_json(args.scenario, floor::BUS, floor::run(&args).await?)?,
        Scenario::Bus => {
            let (bus, figures) = bus::run(&args).await?;
            to_json(args.scenario, bus, figures)?
        }
    };
    println!("{json}");
    Ok(())
}

/// Runs a scenario against a bridge, then stops the bridge if this run
/// spawned it.
async fn on_bridge<F: Serialize>(
    args: &BenchArgs,
    scenario: impl AsyncFnOnce(&BenchArgs, &mut Bridge) -> Result<F>,
) -> Result<String> {
    let mut bridge = Bridge::start(args).await?;
    let figures = scenario(args, &mut bridge).await;
    let bus = bridge.bus;
    bridge.stop().await;
    to_json(args.scenario, bus, figures?)
}

fn to_json<F: Serialize>(scenario: Scenario, bus: &'static str, figures: F) -> Result<String> {
    Ok(serde_json::to_string_pretty(&Report {
        scenario,
        bus,
        figures,
    })?)
}
