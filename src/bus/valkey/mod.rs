//! The Valkey bus: history in one stream per channel, live events over
//! sharded pub/sub, so any number of nodes share both.
//!
//! Per channel, its history stream, idempotency keys and shard channel
//! share one hash tag ([`keys`]). A publish batch is one script run
//! ([`publish`], `lua/publish.lua`): per channel it appends, trims by
//! length and age (keeping the newest trimmed id as the stream's
//! `max-deleted-entry-id`, so reads tell a trimmed position from a covered
//! one), and sends the channel's events as one pub/sub message
//! ([`record`]). Reads page through the stream ([`history`]).
//!
//! Each node holds two RESP3 connections: one for commands, through the
//! `redis` client library ([`commands`]), and one for subscriptions, of its
//! own ([`subscriber`], read by [`resp`]: the library's general parser cost
//! more per delivered event than the rest of the bridge: change 32 in
//! docs/benchmarks.md). It subscribes a channel while it has local
//! listeners, is subscribed again after a reconnect, and then refills from
//! the stream what it missed while the subscription was down ([`pump`]).
//! Behind Sentinel both follow the primary ([`sentinel`]); on a cluster
//! there is a pair per primary ([`cluster`]).
//!
//! This file connects and implements [`Bus`]; each format the Lua and the
//! Rust share has one home beside it: the mode argument ([`mode`]), the
//! reply lines ([`reply`]), the records ([`record`]).

mod batch;
mod call;
mod cluster;
mod commands;
mod durability;
mod gather;
mod hints;
mod history;
mod keys;
mod mode;
mod publish;
mod pump;
mod record;
mod reply;
mod resp;
mod seeds;
mod sentinel;
mod subscriber;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, Value};
use tokio::sync::mpsc;

use super::{Bus, BusError, Orders, Outgoing, Published, Replay, Retention, Sink};
use crate::channel::Channel;
use crate::cursor::StreamId;
use crate::revocation::Revocation;
use call::unavailable;
use cluster::router::Router;
use cluster::shards::Shards;
use commands::Commands;
use history::History;
use keys::{CONTROL, SHARDED_CONTROL, shard_channel};
use publish::Publisher;
use pump::{Confirmation, Shared, Watch};
use seeds::{Seeds, redacted};
use sentinel::Sentinels;
use subscriber::{Kind, Push, RequestError, Subscriber};

/// How to reach Valkey and how long to wait for it.
#[derive(Debug, Clone)]
pub struct ValkeyConfig {
    pub url: String,
    /// Bound on every command; past it the bus reports unavailable.
    pub timeout: Duration,
    /// When a publish is acknowledged, and how long its wait may take.
    pub durability: Durability,
    pub durability_timeout: Duration,
}

pub use durability::Durability;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("bad Valkey URL: {0}")]
    Url(String),
    #[error("cannot connect to Valkey: {0}")]
    Connect(String),
    #[error(
        "the server is a Valkey Cluster node: give the cluster's nodes as seeds, \
         --valkey-url redis+cluster://host:port[,host:port…]"
    )]
    Cluster,
    #[error("the Valkey Cluster does not serve every slot (slots {0} have no primary)")]
    Uncovered(String),
    #[error("the server is a replica ({0}); it takes no writes: point --valkey-url at the primary")]
    Replica(String),
    #[error(
        "--valkey-durability aof needs the append-only file on the Valkey primary \
         (`appendonly yes`); it reports aof_enabled:0"
    )]
    NoAof,
}

/// A node's subscriptions: one connection to a standalone primary, or one
/// per primary of a cluster.
enum Subscriptions {
    One(Subscriber),
    Sharded(Arc<Shards>),
}

impl Subscriptions {
    /// Starts subscribing: on one primary the command is queued before
    /// this returns, and the confirmation is awaited later, so many
    /// channels' subscribes share a round trip. A cluster's shards place
    /// the channel on its slot's owner first, which waits for the answer.
    async fn start_subscribe(&self, name: &str) -> Confirmation {
        use futures::FutureExt;
        match self {
            Subscriptions::One(s) => s.send_subscribe(Kind::Shard, name).boxed().shared(),
            Subscriptions::Sharded(s) => {
                let placed = s.subscribe(name).await;
                futures::future::ready(placed).boxed().shared()
            }
        }
    }

    async fn unsubscribe(&self, name: &str) -> Result<(), RequestError> {
        match self {
            Subscriptions::One(s) => s.unsubscribe(Kind::Shard, name).await,
            Subscriptions::Sharded(s) => s.unsubscribe(name).await,
        }
    }

    async fn ping(&self) -> Result<(), RequestError> {
        match self {
            Subscriptions::One(s) => s.ping().await,
            Subscriptions::Sharded(s) => s.ping().await,
        }
    }
}

/// The Valkey-backed bus.
pub struct ValkeyBus {
    /// Commands besides publishes and reads: revocation orders, pings.
    conn: Commands,
    /// Subscriptions; their messages arrive as pushes on the pump.
    subs: Subscriptions,
    publisher: Publisher,
    history: History,
    timeout: Duration,
    shared: Arc<Shared>,
    /// Serialises the sending of subscribes and unsubscribes so Valkey's
    /// state follows the watch counts whatever order the hub's calls arrive
    /// in. Held while a command is queued, not while Valkey answers it.
    subscriptions: tokio::sync::Mutex<()>,
    pump: tokio::task::JoinHandle<()>,
    /// Behind Sentinel: follows failovers. On a cluster: keeps the slot
    /// map current and the subscriptions on their slots' owners.
    followers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for ValkeyBus {
    fn drop(&mut self) {
        self.pump.abort();
        for follower in &self.followers {
            follower.abort();
        }
    }
}

/// A primary's command connection, checked, with the script loaded, and
/// where its subscription connection goes.
struct Opened {
    conn: ConnectionManager,
    target: subscriber::Target,
}

/// A client of the data node at `url` (RESP3), and where a subscription
/// connection to it goes.
fn node_client(url: &str) -> Result<(redis::Client, subscriber::Target), ConnectError> {
    if url.starts_with("rediss://") {
        // TLS through rustls with the ring provider; a provider installed
        // earlier by the embedding program wins.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let info = url
        .into_connection_info()
        .map_err(|e| ConnectError::Url(e.to_string()))?;
    let target = subscriber::Target::new(&info).map_err(|e| ConnectError::Url(e.to_string()))?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let info = info.set_redis_settings(settings);
    let client = redis::Client::open(info).map_err(|e| ConnectError::Url(e.to_string()))?;
    Ok((client, target))
}

/// A command connection that reconnects by itself, every command bounded.
async fn node_manager(
    client: redis::Client,
    config: &ValkeyConfig,
) -> redis::RedisResult<ConnectionManager> {
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.timeout))
        .set_response_timeout(Some(config.timeout))
        .set_min_delay(call::RECONNECT_MIN)
        .set_max_delay(call::RECONNECT_MAX);
    ConnectionManager::new_with_config(client, manager_config).await
}

/// Connects to the server at `url` for commands and checks it is one the
/// bridge can publish to: not a Cluster node, not a replica.
async fn open_primary(url: &str, config: &ValkeyConfig) -> Result<Opened, ConnectError> {
    let (client, target) = node_client(url)?;
    let conn = at_start(config, node_manager(client, config)).await?;
    // Pointed at one node of a cluster, the node would publish only to the
    // slots that node owns: say so at start, and how to name a cluster.
    let mut probe = conn.clone();
    let cluster: String = at_start(
        config,
        redis::cmd("INFO").arg("cluster").query_async(&mut probe),
    )
    .await?;
    if cluster.lines().any(|l| l.trim() == "cluster_enabled:1") {
        return Err(ConnectError::Cluster);
    }
    // A replica refuses every write (READONLY): say so at start.
    let role: Vec<Value> = at_start(config, redis::cmd("ROLE").query_async(&mut probe)).await?;
    if let Some(replica) = replica_of(&role) {
        return Err(ConnectError::Replica(replica));
    }
    // Publishes run the script by digest; load it before the first.
    at_start(config, publish::load_script(&mut probe, config.timeout)).await?;
    Ok(Opened { conn, target })
}

/// The parts a bus is made of, standalone or clustered.
struct Parts {
    conn: Commands,
    subs: Subscriptions,
    control: (Kind, &'static str),
    attention: Option<Arc<cluster::shards::Attention>>,
    followers: Vec<tokio::task::JoinHandle<()>>,
}

/// Connects to a cluster through its seeds: reads the slot map, checks
/// every slot is served, and readies every primary.
async fn connect_cluster(
    seeds: Seeds,
    config: &ValkeyConfig,
    pushes: mpsc::UnboundedSender<Push>,
) -> Result<Parts, ConnectError> {
    let router = Arc::new(Router::new(seeds, config.clone(), vec![publish::PUBLISH]));
    let topology = at_start(config, router.refresh()).await?;
    let uncovered = topology.uncovered();
    if !uncovered.is_empty() {
        return Err(ConnectError::Uncovered(uncovered.join(", ")));
    }
    for node in topology.primaries() {
        at_start(config, router.load_scripts(&node)).await?;
        let mut conn = at_start(config, router.conn(&node)).await?;
        check_durability(config, &mut conn).await?;
    }
    let shards = Arc::new(Shards::new(router.clone(), pushes, config.timeout));
    let attention = shards.attention.clone();
    let refresher = tokio::spawn(router.clone().refresher());
    Ok(Parts {
        conn: Commands::Cluster(router),
        subs: Subscriptions::Sharded(shards),
        control: (Kind::Shard, SHARDED_CONTROL),
        attention: Some(attention),
        followers: vec![refresher],
    })
}

impl ValkeyBus {
    /// Connects and starts the node's subscription pump (and, behind
    /// Sentinel, the task that follows failovers).
    pub async fn connect(
        config: &ValkeyConfig,
        retention: Retention,
        sink: Arc<dyn Sink>,
        orders: Arc<dyn Orders>,
    ) -> Result<ValkeyBus, ConnectError> {
        let (tx, rx) = mpsc::unbounded_channel::<Push>();
        let parts = match Seeds::parse(&config.url, "cluster", 6379)? {
            Some(seeds) => connect_cluster(seeds, config, tx).await?,
            None => connect_primary(config, tx).await?,
        };
        let Parts {
            conn,
            subs,
            control,
            attention,
            mut followers,
        } = parts;
        let publisher = Publisher::new(
            conn.clone(),
            retention,
            config.timeout,
            (config.durability, config.durability_timeout),
        );
        match (&subs, control) {
            (Subscriptions::One(one), (kind, name)) => {
                at_start(config, one.subscribe(kind, name)).await?
            }
            (Subscriptions::Sharded(shards), (_, name)) => {
                at_start(config, shards.subscribe(name)).await?
            }
        }
        let shared = Arc::new(Shared {
            sink,
            orders,
            watches: Mutex::new(HashMap::default()),
            attention,
        });
        let history = History::new(conn.clone(), retention.max_len, config.timeout);
        let pump = tokio::spawn(pump::pump(rx, history.clone(), shared.clone()));
        if let Subscriptions::Sharded(shards) = &subs {
            followers.push(tokio::spawn(shards.clone().keep_placed(shared.clone())));
        }
        Ok(ValkeyBus {
            conn,
            subs,
            publisher,
            history,
            timeout: config.timeout,
            shared,
            subscriptions: tokio::sync::Mutex::new(()),
            pump,
            followers,
        })
    }

    async fn bounded<T, E: std::fmt::Display>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, BusError> {
        call::bounded(self.timeout, what, f).await
    }
}

/// Connects to a standalone primary, or the one the sentinels name (and
/// then follows it).
async fn connect_primary(
    config: &ValkeyConfig,
    pushes: mpsc::UnboundedSender<Push>,
) -> Result<Parts, ConnectError> {
    let sentinels = Sentinels::parse(&config.url)?;
    let url = match &sentinels {
        Some(s) => at_start(config, s.discover(config.timeout)).await?,
        None => config.url.clone(),
    };
    let Opened { conn, target } = open_primary(&url, config).await?;
    let mut probe = conn.clone();
    check_durability(config, &mut probe).await?;
    // Subscriptions go on a connection of their own: Valkey holds
    // subscribed clients to the pub/sub output-buffer limit (32 MiB by
    // default), and the large history replies of many catching-up streams
    // would get that connection dropped.
    let subs = at_start(
        config,
        Subscriber::connect(target.clone(), pushes, config.timeout, true),
    )
    .await?;
    let conn = Commands::primary(conn);
    let followers = sentinels
        .map(|sentinels| {
            tokio::spawn(follow(
                sentinels,
                url,
                config.clone(),
                conn.clone(),
                subs.mover(&target),
            ))
        })
        .into_iter()
        .collect();
    Ok(Parts {
        conn,
        subs: Subscriptions::One(subs),
        control: (Kind::Plain, CONTROL),
        attention: None,
        followers,
    })
}

/// Asks the sentinels who the primary is, and moves both connections when
/// the answer changes. A new primary that is not ready yet (still a
/// replica while it is promoted) is tried again at the next turn.
async fn follow(
    sentinels: Sentinels,
    mut current: String,
    config: ValkeyConfig,
    primary: Commands,
    subscriptions: subscriber::Mover,
) {
    let mut every = tokio::time::interval(sentinel::FOLLOW_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Ok(found) = sentinels.discover(config.timeout).await else {
            continue;
        };
        if found == current {
            continue;
        }
        match open_primary(&found, &config).await {
            Ok(Opened { conn, target }) => {
                primary.set(conn);
                subscriptions.move_to(&target);
                tracing::warn!(primary = %redacted(&found), "followed a failover to a new primary");
                current = found;
            }
            Err(e) => {
                tracing::warn!(primary = %redacted(&found), error = %e, "the new primary is not ready yet")
            }
        }
    }
}

/// `Some("replica of host:port")` when a `ROLE` reply is not a primary's.
fn replica_of(role: &[Value]) -> Option<String> {
    let text = |v: Option<&Value>| match v {
        Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        Some(Value::SimpleString(s)) => Some(s.clone()),
        Some(Value::Int(n)) => Some(n.to_string()),
        _ => None,
    };
    match text(role.first())?.as_str() {
        "master" => None,
        "slave" | "replica" => Some(format!(
            "replica of {}:{}",
            text(role.get(1)).unwrap_or_default(),
            text(role.get(2)).unwrap_or_default()
        )),
        other => Some(format!("role {other}")),
    }
}

/// Refuses `aof` durability on a server without the append-only file
/// (every publish would fail), and warns when `replica` durability has no
/// replica yet (publishes fail until one connects).
async fn check_durability(
    config: &ValkeyConfig,
    conn: &mut (impl ConnectionLike + Send),
) -> Result<(), ConnectError> {
    let section = match config.durability {
        Durability::None => return Ok(()),
        Durability::Aof => "persistence",
        Durability::Replica => "replication",
    };
    let info: String = at_start(config, redis::cmd("INFO").arg(section).query_async(conn)).await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.parse::<u64>().ok())
    };
    match config.durability {
        Durability::Aof if field("aof_enabled") != Some(1) => Err(ConnectError::NoAof),
        Durability::Replica if field("connected_slaves").unwrap_or(0) == 0 => {
            tracing::warn!(
                "--valkey-durability replica: the primary has no replica connected; \
                 publishes fail with UNAVAILABLE until one is"
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A start-up step, bounded by twice the command timeout.
async fn at_start<T, E: std::fmt::Display>(
    config: &ValkeyConfig,
    step: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ConnectError> {
    let bound = config.timeout * 2;
    tokio::time::timeout(bound, step)
        .await
        .map_err(|_| ConnectError::Connect(format!("no answer within {bound:?}")))?
        .map_err(|e| ConnectError::Connect(e.to_string()))
}

#[async_trait]
impl Bus for ValkeyBus {
    async fn publish(&self, event: Outgoing) -> Result<Published, BusError> {
        self.publish_batch(vec![event])
            .await
            .pop()
            .unwrap_or_else(|| Err(unavailable("no publish outcome")))
    }

    async fn publish_batch(&self, events: Vec<Outgoing>) -> Vec<Result<Published, BusError>> {
        self.publisher.publish_batch(events).await
    }

    async fn head(&self, channel: &Channel) -> Result<StreamId, BusError> {
        self.history.head(channel).await
    }

    async fn read_after(
        &self,
        channel: &Channel,
        after: StreamId,
        page_bytes: usize,
    ) -> Result<Replay, BusError> {
        self.history.read_after(channel, after, page_bytes).await
    }

    async fn watch(&self, channel: &Channel) -> Result<StreamId, BusError> {
        let name = shard_channel(channel);
        // The lock covers queueing the subscribe, not Valkey's answer nor
        // the head read: when a restarted node's clients all come back at
        // once, their channels' subscribes go out together and are
        // confirmed in one round trip, instead of one channel after
        // another (change 39).
        let confirmation = {
            let _serial = self.subscriptions.lock().await;
            let (waiting, count) = {
                let mut watches = self.shared.lock();
                let w = watches.entry(name.clone()).or_insert_with(|| Watch {
                    channel: channel.clone(),
                    count: 0,
                    last: StreamId::ZERO,
                    stale: false,
                    confirmed: None,
                });
                w.count += 1;
                (w.confirmed.clone(), w.count)
            };
            match waiting {
                Some(confirmation) => Some(confirmation),
                // Watched before, and since confirmed.
                None if count > 1 => None,
                None => {
                    let confirmation = Box::pin(self.subs.start_subscribe(&name)).await;
                    if let Some(w) = self.shared.lock().get_mut(&name) {
                        w.confirmed = Some(confirmation.clone());
                    }
                    Some(confirmation)
                }
            }
        };
        let subscribed = match confirmation {
            Some(confirmation) => self.bounded("subscribe", confirmation).await,
            None => Ok(()),
        };
        // Each step is boxed: while thousands of opens wait for their
        // subscribe's confirmation, each holds only that wait, not room for
        // the largest step as well (change 47).
        let head = match subscribed {
            Ok(()) => Box::pin(self.history.head(channel)).await,
            Err(e) => Err(e),
        };
        match head {
            Ok(head) => {
                if let Some(w) = self.shared.lock().get_mut(&name) {
                    w.last = w.last.max(head);
                    // Confirmed: later watchers need not wait, and a quiet
                    // channel need not keep the shared answer (a few hundred
                    // bytes per watched channel).
                    w.confirmed = None;
                }
                Ok(head)
            }
            Err(e) => {
                // The hub unwatches only what it watched: take back this
                // call's count, and the subscription with the last one.
                let _ = Box::pin(self.unwatch(channel)).await;
                Err(e)
            }
        }
    }

    async fn unwatch(&self, channel: &Channel) -> Result<(), BusError> {
        let name = shard_channel(channel);
        let _serial = self.subscriptions.lock().await;
        let last = {
            let mut watches = self.shared.lock();
            match watches.get_mut(&name) {
                Some(w) if w.count > 1 => {
                    w.count -= 1;
                    false
                }
                Some(_) => {
                    watches.remove(&name);
                    true
                }
                None => false,
            }
        };
        if last {
            self.bounded("unsubscribe", self.subs.unsubscribe(&name))
                .await?;
        }
        Ok(())
    }

    async fn revoke(&self, order: &Revocation) -> Result<u64, BusError> {
        let (command, channel, mut conn) = match &self.conn {
            Commands::Primary(_) => ("PUBLISH", CONTROL, self.conn.for_slot(0)),
            Commands::Cluster(_) => (
                "SPUBLISH",
                SHARDED_CONTROL,
                self.conn
                    .for_slot(cluster::slot::slot(SHARDED_CONTROL.as_bytes())),
            ),
        };
        self.bounded(
            "revoke",
            redis::cmd(command)
                .arg(channel)
                .arg(order.encode())
                .query_async(&mut conn),
        )
        .await
    }

    async fn readiness(&self) -> super::Readiness {
        // Both kinds of connection: publishing needs one, live delivery the
        // other; on a cluster, every primary's.
        let commands = async {
            match &self.conn {
                Commands::Primary(_) => {
                    let mut conn = self.conn.for_slot(0);
                    self.bounded("ping", redis::cmd("PING").query_async::<Value>(&mut conn))
                        .await
                        .map(|_| ())
                }
                Commands::Cluster(router) => {
                    let pings = router
                        .topology()
                        .primaries()
                        .into_iter()
                        .map(|node| async move {
                            let mut conn = router.conn(&node).await.map_err(unavailable)?;
                            self.bounded("ping", redis::cmd("PING").query_async::<Value>(&mut conn))
                                .await
                                .map(|_| ())
                        });
                    futures::future::try_join_all(pings).await.map(|_| ())
                }
            }
        };
        let (commands, subscriptions) =
            tokio::join!(commands, self.bounded("ping", self.subs.ping()));
        super::Readiness {
            commands: commands.is_ok(),
            subscriptions: subscriptions.is_ok(),
        }
    }
}
