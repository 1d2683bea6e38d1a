//! The node's subscriptions: which channels it watches, and the pump that
//! receives their pushes — delivering each message's events to the sink
//! once, and after a dropped subscription comes back, refilling from history
//! what was missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::cluster::shards::Attention;
use super::history::History;
use super::keys::{CONTROL, SHARDED_CONTROL};
use super::record::{EventNames, parse_messages};
use super::subscriber::Push;
use crate::bus::{Entry, Orders, Sink};
use crate::channel::Channel;
use crate::cursor::StreamId;
use crate::revocation::Revocation;

/// A channel this node subscribes to.
pub(super) struct Watch {
    pub channel: Channel,
    /// Local watchers (the hub's slots); unsubscribed at zero.
    pub count: usize,
    /// Newest id handed to the sink: later deliveries at or before it are
    /// duplicates, and a refill starts after it.
    pub last: StreamId,
    /// The subscription dropped; refill once it is back.
    pub stale: bool,
    /// Valkey's answer to the subscribe that made this watch, for a
    /// second watcher that comes while it is still on its way.
    pub confirmed: Option<Confirmation>,
}

/// The wait for Valkey's confirmation of a subscribe, shareable.
pub(super) type Confirmation = futures::future::Shared<
    futures::future::BoxFuture<'static, Result<(), super::subscriber::RequestError>>,
>;

/// The node's watches, keyed by shard channel name (looked up per pushed
/// message, hence foldhash).
pub(super) type Watches = HashMap<String, Watch, foldhash::fast::RandomState>;

pub(super) struct Shared {
    pub sink: Arc<dyn Sink>,
    pub orders: Arc<dyn Orders>,
    pub watches: Mutex<Watches>,
    /// On a cluster: where dropped subscriptions are reported, to be
    /// placed again.
    pub attention: Option<Arc<Attention>>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Watches> {
        self.watches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands `entry` to the sink unless the node already delivered it.
    pub fn deliver(&self, name: &str, entry: Entry) {
        let channel = {
            let mut watches = self.lock();
            let Some(w) = watches.get_mut(name) else {
                return;
            };
            if entry.id <= w.last {
                return;
            }
            w.last = entry.id;
            w.channel.clone()
        };
        self.sink.deliver(&channel, entry);
    }
}

/// Receives the node's pushes: delivers messages, and after a dropped
/// subscription comes back, refills what was missed from history.
pub(super) async fn pump(
    mut rx: mpsc::UnboundedReceiver<Push>,
    history: History,
    shared: Arc<Shared>,
) {
    let mut names = EventNames::default();
    while let Some(push) = rx.recv().await {
        match push {
            Push::Message { channel, payload } => {
                let Ok(name) = std::str::from_utf8(&channel) else {
                    continue;
                };
                if name == CONTROL || name == SHARDED_CONTROL {
                    match Revocation::decode(&payload) {
                        Ok(order) => shared.orders.apply(&order),
                        Err(e) => {
                            tracing::warn!(error = %e, "ignoring a malformed revocation order")
                        }
                    }
                    continue;
                }
                match parse_messages(&payload, &mut names) {
                    Some(entries) => {
                        for entry in entries {
                            shared.deliver(name, entry);
                        }
                    }
                    None => tracing::warn!(channel = name, "ignoring a malformed bus message"),
                }
            }
            Push::Disconnected { channels } => {
                tracing::warn!("lost the Valkey connection; subscriptions will be refilled");
                metrics::counter!(crate::metrics::BUS_DISCONNECTS).increment(1);
                {
                    let mut watches = shared.lock();
                    for name in &channels {
                        if let Some(w) = watches.get_mut(name) {
                            w.stale = true;
                        }
                    }
                }
                if let Some(attention) = &shared.attention {
                    attention.disconnected();
                }
            }
            Push::Unsubscribed { channel } => {
                if let Some(w) = shared.lock().get_mut(&channel) {
                    w.stale = true;
                }
                match &shared.attention {
                    Some(attention) => attention.lost(&channel),
                    None => tracing::warn!(%channel, "Valkey dropped a subscription"),
                }
            }
            Push::Subscribed { channel } => {
                let Ok(name) = std::str::from_utf8(&channel) else {
                    continue;
                };
                let stale = {
                    let mut watches = shared.lock();
                    match watches.get_mut(name) {
                        Some(w) if w.stale => {
                            w.stale = false;
                            Some((w.channel.clone(), w.last))
                        }
                        _ => None,
                    }
                };
                if let Some((channel, last)) = stale {
                    refill(&history, &shared, name, &channel, last).await;
                }
            }
        }
    }
}

/// Delivers what the channel's history holds after `last`, a page at a
/// time. Runs inside the pump, so pushes that arrive meanwhile wait and are
/// deduplicated after.
async fn refill(
    history: &History,
    shared: &Shared,
    name: &str,
    channel: &Channel,
    mut last: StreamId,
) {
    let mut refilled = 0;
    loop {
        match history.read_after(channel, last, REFILL_PAGE_BYTES).await {
            Ok(replay) => {
                if let Some(gap) = replay.gap {
                    tracing::info!(%channel, ?gap, "history does not cover what the node missed");
                    if let Some(w) = shared.lock().get_mut(name) {
                        w.last = w.last.max(gap.resume_from);
                    }
                    // Listeners compare their own positions with history and
                    // report the gap to their clients.
                    shared.sink.resync(channel);
                }
                refilled += replay.entries.len();
                for entry in replay.entries {
                    last = last.max(entry.id);
                    shared.deliver(name, entry);
                }
                if !replay.more {
                    tracing::info!(%channel, refilled, "resubscribed");
                    return;
                }
            }
            Err(e) => {
                if let Some(w) = shared.lock().get_mut(name) {
                    w.stale = true;
                }
                match &shared.attention {
                    // On a cluster the slot is most likely changing hands (a
                    // failover under way): the channel is placed again and
                    // refilled once that is confirmed. Listeners wait rather
                    // than read a history that is unreachable for now.
                    Some(attention) => {
                        tracing::warn!(%channel, error = %e, "refill failed; placing the channel again");
                        attention.lost(name);
                    }
                    None => {
                        tracing::warn!(%channel, error = %e, "refill failed; listeners will resync");
                        shared.sink.resync(channel);
                    }
                }
                return;
            }
        }
    }
}

/// The page a refill reads at a time: the node holds one page per channel
/// being refilled, whatever the history's size.
const REFILL_PAGE_BYTES: usize = 1 << 20;
