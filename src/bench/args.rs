//! The `bench` command's arguments: which scenario, and its load.

use clap::{Args, ValueEnum};
use serde::Serialize;

pub use super::idle_floor::FloorShape;
pub use super::keys::Alg;

#[derive(ValueEnum, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// N subscribers of one channel; E events as fast as possible.
    Fanout,
    /// N subscribers, each on its own channel; E events per channel.
    Channels,
    /// N idle streams; server memory per stream.
    Idle,
    /// The idle scenario against a stand-in server that holds each stream
    /// with the least a server can (see `idle_floor.rs`): the floor under
    /// `idle`'s memory per stream.
    #[serde(rename = "idle-floor")]
    IdleFloor,
    /// Events/s accepted by PublishStream and by unary Publish.
    Publish,
    /// Latency at a fixed publish rate to N subscribers of one channel.
    Latency,
    /// Time for a client resuming across E missed events to catch up.
    Resume,
    /// The latency scenario with no bridge: what the kernel and the load
    /// generator alone cost on this machine (see `floor.rs`).
    Floor,
    /// The many-channels publish pattern on the bus alone, no bridge
    /// around it (see `bus.rs`).
    Bus,
    /// N streams opened as fast as the bridge takes them, each with a
    /// token of its own: streams opened per second.
    Connect,
    /// After a node restart, N clients on N channels, each `--behind`
    /// events behind, reconnect within `--within-ms`: the time until all
    /// have caught up, peak memory and Valkey commands per client.
    #[serde(rename = "reconnect-storm")]
    ReconnectStorm,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Subscribers (streams).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Events (per channel for `channels`; total for the others).
    #[arg(long, default_value_t = 2000)]
    pub events: usize,
    /// Publish rate for `latency`, events per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Concurrent unary callers for `publish`.
    #[arg(long, default_value_t = 16)]
    pub callers: usize,
    /// Start a bridge process for the run (needed for memory figures).
    #[arg(long)]
    pub spawn: bool,
    /// With --spawn (or for `bus`): the Valkey to use (else embedded).
    #[arg(long)]
    pub valkey_url: Option<String>,
    /// A running bridge's HTTP base URL (without --spawn).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub http: String,
    /// A running bridge's gRPC target (without --spawn).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub grpc: String,
    /// The running bridge's HS256 secret, to mint tokens (without --spawn).
    #[arg(long, env = "SSE_BRIDGE_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Payload bytes per event (content of a message.delta).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// For `idle`: how the streams map to channels. `own`: each stream on a
    /// channel of its own (real use: a browser watches its scan or
    /// conversation); `one`: all on one channel; a number N: spread over N.
    #[arg(long, default_value = "100", value_parser = parse_spread)]
    pub channels_per_stream: Spread,
    /// For `idle-floor`: how the stand-in holds a stream, `task` (a task
    /// per stream on a broadcast receiver) or `held` (the socket alone).
    #[arg(long, value_enum, default_value_t = FloorShape::Task)]
    pub floor_shape: FloorShape,
    /// For `connect`: the subscriber tokens' algorithm (`rs256` needs
    /// --spawn: the run makes a key pair and gives the bridge its public
    /// half).
    #[arg(long, value_enum, default_value_t = Alg::Hs256)]
    pub alg: Alg,
    /// With `--alg rs256`: sign with this PKCS#8 PEM private key rather
    /// than one made for the run.
    #[arg(long)]
    pub rsa_key: Option<std::path::PathBuf>,
    /// For `connect`: each stream resumes from the last event of its
    /// channel (`Last-Event-ID`), as a reconnecting browser does.
    #[arg(long)]
    pub resume: bool,
    /// For `connect`: every stream presents the same token (one user's
    /// tabs and reconnects) rather than one token each.
    #[arg(long)]
    pub shared_token: bool,
    /// For `connect`: handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    pub in_flight: usize,
    /// For `reconnect-storm`: events each client missed.
    #[arg(long, default_value_t = 10)]
    pub behind: usize,
    /// For `reconnect-storm`: the clients come back evenly over this many
    /// milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub within_ms: u64,
}

/// How idle streams are spread over channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// A channel per stream.
    Own,
    /// Over this many channels.
    Over(usize),
}

fn parse_spread(s: &str) -> Result<Spread, String> {
    match s {
        "own" => Ok(Spread::Own),
        "one" => Ok(Spread::Over(1)),
        n => n
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .map(Spread::Over)
            .ok_or_else(|| format!("expected `own`, `one` or a number of channels, got `{n}`")),
    }
}

/// The bus a run used, for its report: `otherwise` without `--valkey-url`.
pub(super) fn bus_name(args: &BenchArgs, otherwise: &'static str) -> &'static str {
    match args.valkey_url.as_deref() {
        Some(url) if url.contains("+cluster://") => "valkey-cluster",
        Some(url) if url.contains("+sentinel://") => "valkey-sentinel",
        Some(_) => "valkey",
        None => otherwise,
    }
}
