//! Commands on Valkey Cluster: each goes to the primary that owns its slot,
//! over one multiplexed connection per primary, and follows the cluster's
//! answers:
//!
//! - `MOVED`: the slot has a new owner; the map is corrected at once, the
//!   command sent there, and a full refresh is asked for.
//! - `ASK` (a slot being migrated): the command goes to the target once,
//!   after `ASKING`.
//! - `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `LOADING`, `READONLY`, and
//!   a slot without an owner: tried again with backoff, the map refreshed,
//!   until the deadline, then the last error is returned.
//! - A connection error is returned as it is (the command may have run),
//!   with a refresh asked for; the caller's retry is made safe by
//!   idempotency keys.
//!
//! None of the redirects runs the command on the refusing node, so
//! following them never runs a publish twice. The map is refreshed from
//! `CLUSTER SLOTS` on redirects, on connection errors, and every few
//! seconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::super::seeds::Seeds;
use super::super::{ValkeyConfig, node_client, node_manager};
use super::topology::{NodeAddr, Topology};
use redis::ServerErrorKind;

/// How often the map is refreshed when nothing asks for it.
pub(in crate::bus::valkey) const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// Waits between tries of a command the cluster asked to try again.
const RETRY_MIN: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_millis(500);

/// The node's view of a cluster and its connections to the primaries.
pub(in crate::bus::valkey) struct Router {
    seeds: Seeds,
    config: ValkeyConfig,
    topology: RwLock<Topology>,
    conns: Mutex<HashMap<NodeAddr, ConnectionManager>>,
    /// Asks the refresher task for a refresh now.
    refresh_wanted: Notify,
    /// Rings after each refresh that changed the map.
    pub changed: Notify,
    /// Scripts every primary should hold, loaded on each new one.
    scripts: Vec<&'static str>,
}

impl Router {
    pub fn new(seeds: Seeds, config: ValkeyConfig, scripts: Vec<&'static str>) -> Router {
        Router {
            seeds,
            config,
            topology: RwLock::new(Topology::default()),
            conns: Mutex::new(HashMap::new()),
            refresh_wanted: Notify::new(),
            changed: Notify::new(),
            scripts,
        }
    }

    pub fn topology(&self) -> Topology {
        self.topology
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn owner(&self, slot: u16) -> Option<NodeAddr> {
        self.topology
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .owner(slot)
            .cloned()
    }

    /// The node's URL, with the credentials of `--valkey-url`.
    pub fn url(&self, node: &NodeAddr) -> String {
        self.seeds.node_url(&node.host, node.port)
    }

    /// The connection to `node`, opened on first use.
    pub async fn conn(&self, node: &NodeAddr) -> Result<ConnectionManager, String> {
        if let Some(c) = self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
        {
            return Ok(c.clone());
        }
        let (client, _) = node_client(&self.url(node)).map_err(|e| e.to_string())?;
        let conn = tokio::time::timeout(self.config.timeout, node_manager(client, &self.config))
            .await
            .map_err(|_| format!("{node}: no answer within {:?}", self.config.timeout))?
            .map_err(|e| format!("{node}: {e}"))?;
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        Ok(conns.entry(node.clone()).or_insert(conn).clone())
    }

    /// Reads the map from the first node that gives one covering every
    /// slot (else the first that gives any): the known primaries, then the
    /// seeds. Loads the scripts on primaries it has not seen before.
    pub async fn refresh(&self) -> Result<Topology, String> {
        let before = self.topology();
        let mut asked: Vec<NodeAddr> = before.primaries();
        for (host, port) in &self.seeds.hosts {
            let seed = NodeAddr {
                host: host.clone(),
                port: *port,
            };
            if !asked.contains(&seed) {
                asked.push(seed);
            }
        }
        let mut found: Option<Topology> = None;
        let mut why = Vec::new();
        for node in &asked {
            match self.ask_slots(node).await {
                Ok(t) if t.uncovered().is_empty() => {
                    found = Some(t);
                    break;
                }
                Ok(t) => {
                    why.push(format!(
                        "{node}: slots {} are not served",
                        t.uncovered().join(", ")
                    ));
                    found.get_or_insert(t);
                }
                Err(e) => why.push(e),
            }
        }
        let Some(found) = found else {
            return Err(format!("no cluster node answered ({})", why.join("; ")));
        };
        if found != before {
            for node in found.primaries() {
                if !before.primaries().contains(&node) {
                    // A new primary (a promoted replica) holds no scripts:
                    // loading them now spares its first publishes a retry.
                    let _ = self.load_scripts(&node).await;
                }
            }
            *self.topology.write().unwrap_or_else(|p| p.into_inner()) = found.clone();
            self.forget_others(&found);
            self.changed.notify_one();
        }
        Ok(found)
    }

    async fn ask_slots(&self, node: &NodeAddr) -> Result<Topology, String> {
        let mut conn = self.conn(node).await?;
        let reply: Value = tokio::time::timeout(
            self.config.timeout,
            redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn),
        )
        .await
        .map_err(|_| format!("{node}: no answer within {:?}", self.config.timeout))?
        .map_err(|e| format!("{node}: {e}"))?;
        Topology::parse(&reply, node)
            .ok_or_else(|| format!("{node}: a malformed CLUSTER SLOTS reply"))
    }

    /// Drops connections to nodes that are no longer primaries (a dead
    /// node's manager would retry forever).
    fn forget_others(&self, topology: &Topology) {
        let keep = topology.primaries();
        let seeds: Vec<NodeAddr> = self
            .seeds
            .hosts
            .iter()
            .map(|(host, port)| NodeAddr {
                host: host.clone(),
                port: *port,
            })
            .collect();
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|n, _| keep.contains(n) || seeds.contains(n));
    }

    pub async fn load_scripts(&self, node: &NodeAddr) -> Result<(), String> {
        let mut conn = self.conn(node).await?;
        for script in &self.scripts {
            tokio::time::timeout(
                self.config.timeout,
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(*script)
                    .query_async::<String>(&mut conn),
            )
            .await
            .map_err(|_| format!("{node}: no answer within {:?}", self.config.timeout))?
            .map_err(|e| format!("{node}: {e}"))?;
        }
        Ok(())
    }

    /// Asks the refresher task for a refresh.
    pub fn refresh_soon(&self) {
        self.refresh_wanted.notify_one();
    }

    /// The refresher: every [`REFRESH_EVERY`], and soon after anything asks.
    pub async fn refresher(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(REFRESH_EVERY) => {}
                () = self.refresh_wanted.notified() => {}
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "cannot refresh the Valkey Cluster's slot map");
                // Not in a tight loop while the cluster is unreachable.
                tokio::time::sleep(RETRY_MAX).await;
            }
        }
    }

    /// A connection that sends everything to `slot`'s owner.
    pub fn routed(self: &Arc<Self>, slot: u16) -> Routed {
        Routed {
            router: self.clone(),
            slot,
        }
    }

    /// Sends `pipeline` (all its keys in `slot`) to the slot's owner,
    /// following the cluster's redirects; the replies from `offset`, `count`
    /// of them.
    async fn send(
        &self,
        slot: u16,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let deadline = Instant::now() + self.config.timeout * 3 / 4;
        let mut wait = RETRY_MIN;
        let mut ask: Option<NodeAddr> = None;
        loop {
            let asking = ask.take();
            let node = match asking.clone().or_else(|| self.owner(slot)) {
                Some(node) => node,
                None => {
                    let _ = self.refresh().await;
                    match self.owner(slot) {
                        Some(node) => node,
                        None if Instant::now() + wait < deadline => {
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(RETRY_MAX);
                            continue;
                        }
                        None => return Err(unserved(slot)),
                    }
                }
            };
            let mut conn = match self.conn(&node).await {
                Ok(c) => c,
                Err(e) => {
                    self.refresh_soon();
                    return Err(RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        e,
                    )));
                }
            };
            let replies = match &asking {
                None => conn.req_packed_commands(pipeline, offset, count).await,
                Some(_) => {
                    let mut with = redis::pipe();
                    with.cmd("ASKING");
                    for cmd in pipeline.cmd_iter() {
                        with.add_command(cmd.clone());
                    }
                    conn.req_packed_commands(&with, offset + 1, count).await
                }
            };
            let replies = match replies {
                Ok(r) => r,
                Err(e) => {
                    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                        self.refresh_soon();
                    }
                    return Err(e);
                }
            };
            let Some(Value::ServerError(refusal)) = replies.first() else {
                return Ok(replies);
            };
            match refusal.kind() {
                Some(ServerErrorKind::Moved) => {
                    if let Some((to, moved)) = redirect(refusal, &node) {
                        self.topology
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .moved(moved, to);
                        self.refresh_soon();
                        continue;
                    }
                }
                Some(ServerErrorKind::Ask) => {
                    if let Some((to, _)) = redirect(refusal, &node) {
                        ask = Some(to);
                        continue;
                    }
                }
                Some(
                    ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::BusyLoading
                    | ServerErrorKind::ReadOnly,
                ) if Instant::now() + wait < deadline => {
                    if !matches!(refusal.kind(), Some(ServerErrorKind::TryAgain)) {
                        self.refresh_soon();
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                    continue;
                }
                _ => {}
            }
            return Ok(replies);
        }
    }
}

/// Where a `MOVED` or `ASK` points: the node and the slot.
fn redirect(refusal: &redis::ServerError, answered_by: &NodeAddr) -> Option<(NodeAddr, u16)> {
    let mut parts = refusal.details()?.split_ascii_whitespace();
    let slot = parts.next()?.parse().ok()?;
    let node = NodeAddr::parse(parts.next()?, answered_by)?;
    Some((node, slot))
}

fn unserved(slot: u16) -> RedisError {
    RedisError::from((
        redis::ErrorKind::Server(ServerErrorKind::ClusterDown),
        "no primary serves the slot",
        format!("slot {slot}"),
    ))
}

/// A connection to one slot's owner, whoever that is when a command goes.
#[derive(Clone)]
pub(in crate::bus::valkey) struct Routed {
    router: Arc<Router>,
    slot: u16,
}

impl ConnectionLike for Routed {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut one = redis::pipe();
            one.add_command(cmd.clone());
            let mut replies = self.router.send(self.slot, &one, 0, 1).await?;
            Ok(replies.pop().unwrap_or(Value::Nil))
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.router.send(self.slot, pipeline, offset, count))
    }

    fn get_db(&self) -> i64 {
        0
    }
}
