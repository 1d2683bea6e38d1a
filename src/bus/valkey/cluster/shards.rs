//! A node's subscriptions on Valkey Cluster: one subscription connection
//! per primary that owns a watched channel's slot, each channel
//! `SSUBSCRIBE`d alone on its owner (never one command across slots, which
//! the server refuses with `CROSSSLOT`).
//!
//! A channel leaves its node when the server drops it (a slot migrated
//! away: `sunsubscribe`; a resubscription refused with `MOVED`), when its
//! node's connection drops, or when the slot map says another primary owns
//! it. The pump reports the first two ([`Attention`]); the map comes from
//! the router. Either way the channel is marked stale, subscribed on the
//! owner, and refilled from history when that is confirmed, as after any
//! reconnect: nothing lost, nothing twice.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use super::super::node_client;
use super::super::pump::Shared;
use super::super::subscriber::{Kind, Push, RequestError, Subscriber};
use super::router::Router;
use super::slot::slot;
use super::topology::NodeAddr;

/// How often the node checks, unprompted, that every channel is subscribed
/// on its slot's owner.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// The least time between two checks.
const PACE: Duration = Duration::from_millis(100);

/// What the pump tells the shards: channels the server dropped, and that a
/// connection dropped.
#[derive(Default)]
pub(in crate::bus::valkey) struct Attention {
    lost: Mutex<Vec<String>>,
    wake: Notify,
}

impl Attention {
    /// The server no longer sends `name`'s messages here.
    pub fn lost(&self, name: &str) {
        self.lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.to_owned());
        self.wake.notify_one();
    }

    /// A subscription connection dropped: its node may be gone.
    pub fn disconnected(&self) {
        self.wake.notify_one();
    }
}

/// Which node each channel is subscribed on.
#[derive(Default)]
struct State {
    nodes: HashMap<NodeAddr, Subscriber>,
    /// Shard channel → its slot and the node it is subscribed on.
    placed: HashMap<String, (u16, NodeAddr)>,
    /// Channels that should be subscribed but are not (their slot has no
    /// reachable owner yet); tried again at every check.
    homeless: HashSet<String>,
}

pub(in crate::bus::valkey) struct Shards {
    router: Arc<Router>,
    pushes: mpsc::UnboundedSender<Push>,
    silence: Duration,
    state: tokio::sync::Mutex<State>,
    pub attention: Arc<Attention>,
}

impl Shards {
    pub fn new(
        router: Arc<Router>,
        pushes: mpsc::UnboundedSender<Push>,
        silence: Duration,
    ) -> Shards {
        Shards {
            router,
            pushes,
            silence,
            state: tokio::sync::Mutex::new(State::default()),
            attention: Arc::new(Attention::default()),
        }
    }

    /// Subscribes `name` on its slot's owner and waits for the
    /// confirmation.
    pub async fn subscribe(&self, name: &str) -> Result<(), RequestError> {
        let mut state = self.state.lock().await;
        self.place(&mut state, name).await
    }

    pub async fn unsubscribe(&self, name: &str) -> Result<(), RequestError> {
        let mut state = self.state.lock().await;
        state.homeless.remove(name);
        let Some((_, node)) = state.placed.remove(name) else {
            return Ok(());
        };
        match state.nodes.get(&node) {
            Some(sub) => sub.unsubscribe(Kind::Shard, name).await,
            None => Ok(()),
        }
    }

    /// `Ok` when every channel is subscribed on its slot's owner and every
    /// connection holding one answers a ping.
    pub async fn ping(&self) -> Result<(), RequestError> {
        let state = self.state.lock().await;
        if !state.homeless.is_empty() {
            return Err(RequestError::Down);
        }
        let topology = self.router.topology();
        let mut used = HashSet::new();
        for (slot, node) in state.placed.values() {
            if topology.owner(*slot) != Some(node) {
                return Err(RequestError::Down);
            }
            used.insert(node);
        }
        for node in used {
            match state.nodes.get(node) {
                Some(sub) => sub.ping().await?,
                None => return Err(RequestError::Down),
            }
        }
        Ok(())
    }

    async fn place(&self, state: &mut State, name: &str) -> Result<(), RequestError> {
        let slot = slot(name.as_bytes());
        let mut refused = RequestError::Down;
        for _ in 0..3 {
            let owner = match self.router.owner(slot) {
                Some(owner) => owner,
                None => {
                    let _ = self.router.refresh().await;
                    self.router.owner(slot).ok_or_else(|| {
                        RequestError::Refused(format!("CLUSTERDOWN no primary serves slot {slot}"))
                    })?
                }
            };
            let sub = match state.nodes.entry(owner.clone()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(v) => {
                    let target = node_client(&self.router.url(&owner))
                        .map_err(|e| RequestError::Refused(e.to_string()))?
                        .1;
                    let opened = tokio::time::timeout(
                        self.silence,
                        Subscriber::connect(target, self.pushes.clone(), self.silence, false),
                    )
                    .await;
                    match opened {
                        Ok(Ok(sub)) => v.insert(sub),
                        _ => {
                            self.router.refresh_soon();
                            return Err(RequestError::Down);
                        }
                    }
                }
            };
            match sub.subscribe(Kind::Shard, name).await {
                Ok(()) => {
                    state.homeless.remove(name);
                    state.placed.insert(name.to_owned(), (slot, owner));
                    return Ok(());
                }
                // The map is behind the cluster: read it again and retry.
                Err(RequestError::Refused(m)) if m.starts_with("MOVED") => {
                    let _ = self.router.refresh().await;
                    refused = RequestError::Refused(m);
                }
                Err(e) => {
                    self.router.refresh_soon();
                    return Err(e);
                }
            }
        }
        Err(refused)
    }

    /// Moves every channel that is not on its slot's owner, or that the
    /// server dropped, to the owner; each is marked stale first so that its
    /// confirmation refills it from history.
    async fn rehome(&self, shared: &Shared) {
        let lost: HashSet<String> = std::mem::take(
            &mut *self
                .attention
                .lost
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        )
        .into_iter()
        .collect();
        let mut state = self.state.lock().await;
        let topology = self.router.topology();
        let mut moving: Vec<(String, Option<NodeAddr>)> = state
            .placed
            .iter()
            .filter(|(name, (slot, node))| {
                topology.owner(*slot) != Some(node) || lost.contains(*name)
            })
            .map(|(name, (_, node))| (name.clone(), Some(node.clone())))
            .collect();
        moving.extend(state.homeless.iter().map(|name| (name.clone(), None)));
        for (name, from) in moving {
            if let Some(w) = shared.lock().get_mut(&name) {
                w.stale = true;
            }
            state.placed.remove(&name);
            if let Some(sub) = from.as_ref().and_then(|n| state.nodes.get(n)) {
                // Off the old node, if it still answers; a dead one has
                // already let go.
                let _ =
                    tokio::time::timeout(self.silence, sub.unsubscribe(Kind::Shard, &name)).await;
            }
            match self.place(&mut state, &name).await {
                Ok(()) => tracing::info!(channel = %name, "subscribed on the slot's new owner"),
                Err(e) => {
                    tracing::warn!(channel = %name, error = %e, "cannot subscribe on the slot's owner yet; retrying");
                    state.homeless.insert(name);
                }
            }
        }
        // A connection that holds nothing goes (a dead node's would retry
        // forever).
        let used: HashSet<NodeAddr> = state.placed.values().map(|(_, n)| n.clone()).collect();
        state.nodes.retain(|n, _| used.contains(n));
    }

    /// Keeps every channel on its slot's owner: after the pump's reports (a
    /// map refresh first), after the map changes, and every second.
    pub async fn keep_placed(self: Arc<Self>, shared: Arc<Shared>) {
        loop {
            tokio::select! {
                () = self.attention.wake.notified() => {
                    if let Err(e) = self.router.refresh().await {
                        tracing::warn!(error = %e, "cannot refresh the Valkey Cluster's slot map");
                    }
                }
                () = self.router.changed.notified() => {}
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
            self.rehome(&shared).await;
            // Not in a tight loop while a slot has no reachable owner.
            tokio::time::sleep(PACE).await;
        }
    }
}
