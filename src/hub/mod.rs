//! Node-local fan-out: one broadcast slot per watched channel, shared by all
//! of this node's listeners of that channel.
//!
//! The bus hands each live event to [`Fanout`] once; it is encoded as SSE
//! bytes once and every listener gets a reference to the same bytes.
//! (About 500 lines with its tests: the slots, their cache account and the
//! fan-out change together.)

mod asleep;
mod frame;
mod recent;
mod subscription;

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OnceCell, broadcast};

use crate::bus::{Bus, BusError, Entry, Gap, Sink};
use crate::channel::{Channel, ChannelMap};
use crate::cursor::StreamId;

pub use asleep::{Check, Sleeper};
pub use frame::Frame;
pub use recent::Page;
use recent::{Recent, account};
pub use subscription::{Item, Subscription};

/// What a channel's slot broadcasts to its listeners.
#[derive(Debug, Clone)]
pub enum Delivery {
    Frame(Arc<Frame>),
    /// Check the position against history: the node may have missed events.
    Resync,
    /// The channel moved to a larger ring: the last delivery of this one.
    Grown(Arc<Grown>),
}

/// A channel's larger ring, and a receiver of it for each listener, made
/// when the ring was swapped: a listener that takes one misses nothing
/// sent after the swap, however late it reads this.
#[derive(Debug)]
pub struct Grown {
    tx: broadcast::Sender<Delivery>,
    receivers: Mutex<Vec<broadcast::Receiver<Delivery>>>,
}

impl Grown {
    /// A receiver of the new ring, and whether it was made at the swap
    /// (else it starts now, and the listener must catch up).
    pub fn receiver(&self) -> (broadcast::Receiver<Delivery>, bool) {
        let made = self
            .receivers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        match made {
            Some(rx) => (rx, true),
            None => (self.tx.subscribe(), false),
        }
    }
}

/// The ring a channel starts with. A full `--stream-buffer` ring costs
/// ~40 bytes a slot whether or not anything is ever sent (10 KB at 256),
/// and most watched channels have one quiet listener, which reads each
/// event before the next. A channel whose listeners fall this far behind
/// grows, by [`GROWTH`] at a time, up to the full ring (see
/// [`Slot::grow_if_filling`]). Four rather than eight (change 45): 160
/// bytes less per idle channel, and the same instructions per delivery.
const FIRST_RING: usize = 4;

/// How much a filling ring grows at once: a channel that is busy for a
/// moment need not take the full ring for good (4, 32, 256). Growing by 4
/// from 4 slots cost ~2.5 % more instructions per delivery in
/// `scripts/bench-instructions` (channels that grew twice or three times).
const GROWTH: usize = 8;

struct Slot {
    /// Made while any listener is awake: a channel whose listeners all
    /// sleep holds no ring (~300 bytes; see [`Slot::sender`]).
    tx: Option<broadcast::Sender<Delivery>>,
    /// The capacity of `tx`'s ring.
    ring: usize,
    recent: Recent,
    listeners: usize,
    /// Whether the bus delivers this channel to the node yet.
    watched: Watched,
    /// The channel's newest position this node has seen: where a stream
    /// that starts live begins, without asking the bus. `None` until the
    /// watch started, and after a resync (the node may have missed events).
    live: Option<StreamId>,
    /// One history read per channel at a time: listeners that fell behind
    /// together wait for one read instead of each sending its own. Made at
    /// the first read: most channels never need one (56 bytes each).
    reading: Option<Arc<tokio::sync::Mutex<()>>>,
    /// The channel's streams asleep: counted in `listeners`, but with no
    /// receiver of `tx`; the next delivery wakes them.
    parked: Vec<Box<dyn Sleeper>>,
}

/// A channel's watch on the bus: shared while it starts, so listeners that
/// arrive together wait for one watch; then only a flag (the shared cell
/// would cost every watched channel 64 bytes for good).
enum Watched {
    Starting(Arc<OnceCell<()>>),
    Started,
}

impl Watched {
    fn started(&self) -> bool {
        match self {
            Watched::Starting(cell) => cell.initialized(),
            Watched::Started => true,
        }
    }
}

/// The watched channels' slots, and the node-wide account of their recent
/// frames.
#[derive(Default)]
struct Slots {
    /// Boxed: the map keeps room for about twice as many entries as it
    /// holds, and a slot is 160 bytes against the box's 8 (~90 bytes less
    /// per watched channel; change 50).
    map: ChannelMap<Box<Slot>>,
    /// Bytes of every slot's recent frames together.
    recent_bytes: usize,
    /// Every slot that holds recent frames, by the id of its oldest one:
    /// where the node-wide budget evicts first. Kept only under pressure
    /// (see [`Slots::fit`]): it costs a tree update per delivered event.
    oldest: Option<BTreeSet<(StreamId, Channel)>>,
}

impl Slots {
    fn get(&self, channel: &Channel) -> Option<&Slot> {
        self.map.get(channel).map(|s| &**s)
    }

    /// Changes a slot's recent frames, keeping the node-wide account true;
    /// every change to a `Recent` goes through here (or [`account`]).
    fn recent<R>(&mut self, channel: &Channel, change: impl FnOnce(&mut Recent) -> R) -> Option<R> {
        let slot = self.map.get_mut(channel)?;
        Some(account(
            &mut self.recent_bytes,
            self.oldest.as_mut(),
            channel,
            &mut slot.recent,
            change,
        ))
    }

    /// Evicts the oldest frames of any channel until all of them fit
    /// `budget`. Evicting only sends a later catch-up to history.
    ///
    /// Only eviction reads the index of oldest frames, so it is built
    /// (from every slot) when the cache passes half its budget and dropped
    /// below a quarter: well under budget a delivery updates no tree.
    fn fit(&mut self, budget: usize, gauges: &Gauges) {
        if self.oldest.is_none() && self.recent_bytes > budget / 2 {
            let index = self
                .map
                .iter()
                .filter_map(|(channel, slot)| Some((slot.recent.oldest()?, channel.clone())));
            self.oldest = Some(index.collect());
        } else if self.oldest.is_some() && self.recent_bytes < budget / 4 {
            self.oldest = None;
        }
        while self.recent_bytes > budget {
            let Some((_, channel)) = self.oldest.as_ref().and_then(|o| o.first().cloned()) else {
                break;
            };
            gauges.evicted.increment(1);
            self.recent(&channel, Recent::pop_oldest);
        }
        gauges.bytes.set(self.recent_bytes as f64);
    }
}

/// Metric handles of the cache, looked up once rather than per event.
struct Gauges {
    bytes: metrics::Gauge,
    evicted: metrics::Counter,
    asleep: metrics::Gauge,
}

impl Gauges {
    fn new() -> Gauges {
        Gauges {
            bytes: metrics::gauge!(crate::metrics::RECENT_BYTES),
            evicted: metrics::counter!(crate::metrics::RECENT_EVICTED),
            asleep: metrics::gauge!(crate::metrics::STREAMS_ASLEEP),
        }
    }
}

/// Bounds of the node's fan-out.
#[derive(Debug, Clone, Copy)]
pub struct FanoutConfig {
    /// How many events a listener may fall behind before it is caught up,
    /// from the node's recent frames (16 × this, at most 4 MiB per channel)
    /// or else from history.
    pub capacity: usize,
    /// Bytes of recent frames the node keeps over all channels.
    pub recent_budget: usize,
    /// Bytes of history a stream catches up with at a time; the next page
    /// is read once the client has taken this one.
    pub page_bytes: usize,
}

/// The channel → slot table; the bus's sink on this node.
pub struct Fanout {
    slots: Mutex<Slots>,
    capacity: usize,
    recent_frames: usize,
    recent_budget: usize,
    page_bytes: usize,
    gauges: Gauges,
    /// Whether the task that looks over the sleepers runs.
    checking: AtomicBool,
    /// Sleepers a delivery woke, for that task to start (see
    /// [`asleep::Taken::hand_over`]).
    waking: Mutex<asleep::Taken>,
    wake_now: Arc<tokio::sync::Notify>,
}

impl Slot {
    fn new(capacity: usize) -> Slot {
        let ring = FIRST_RING.min(capacity);
        Slot {
            tx: None,
            ring,
            recent: Recent::default(),
            listeners: 0,
            watched: Watched::Starting(Arc::new(OnceCell::new())),
            live: None,
            reading: None,
            parked: Vec::new(),
        }
    }

    /// Swaps a small ring that a listener is about to overflow for a larger
    /// one. The swap is announced last on the old ring, with a receiver of
    /// the new one per listener made now: nothing sent afterwards is missed.
    /// Without it the listener would lag and catch up from the cache, once
    /// per burst, on a channel that is evidently busy.
    fn grow_if_filling(&mut self, capacity: usize) {
        // `len` counts what the slowest receiver has not read; one place is
        // kept for the announcement itself.
        let Some(old) = &self.tx else {
            return;
        };
        if self.ring >= capacity || old.len() + 2 < self.ring {
            return;
        }
        let ring = (self.ring * GROWTH).min(capacity);
        let tx = broadcast::channel(ring).0;
        let receivers = (0..old.receiver_count()).map(|_| tx.subscribe()).collect();
        let grown = Arc::new(Grown {
            tx: tx.clone(),
            receivers: Mutex::new(receivers),
        });
        let _ = old.send(Delivery::Grown(grown));
        self.tx = Some(tx);
        self.ring = ring;
    }

    /// The channel's ring, made if every listener was asleep.
    fn sender(&mut self) -> &broadcast::Sender<Delivery> {
        let ring = self.ring;
        self.tx.get_or_insert_with(|| broadcast::channel(ring).0)
    }

    /// Sends to the listeners awake, if any.
    fn send(&self, delivery: Delivery) {
        // No receivers left is not an error: the last listener just went.
        if let Some(tx) = &self.tx {
            let _ = tx.send(delivery);
        }
    }

    /// Drops the ring once no listener is awake, back to the first size.
    fn let_ring_go(&mut self, capacity: usize) {
        if self.tx.as_ref().is_some_and(|tx| tx.receiver_count() == 0) {
            self.tx = None;
            self.ring = FIRST_RING.min(capacity);
        }
    }
}

impl Fanout {
    pub fn new(config: FanoutConfig) -> Arc<Fanout> {
        Arc::new(Fanout {
            slots: Mutex::new(Slots::default()),
            capacity: config.capacity.max(1),
            recent_frames: config.capacity.max(1) * 16,
            recent_budget: config.recent_budget,
            page_bytes: config.page_bytes.max(1),
            gauges: Gauges::new(),
            checking: AtomicBool::new(false),
            waking: Mutex::new(asleep::Taken::default()),
            wake_now: Arc::new(tokio::sync::Notify::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Sink for Fanout {
    fn deliver(&self, channel: &Channel, entry: Entry) {
        // On the embedded bus this runs inside the publish, so the span is
        // the bus step's child. Valkey carries no trace context: there it
        // starts its own trace, found by `event.id`.
        let span = tracing::info_span!(
            target: crate::telemetry::TARGET,
            "fanout",
            channel.prefix = channel.prefix(),
            event.name = &*entry.event,
            event.id = %entry.id,
            listeners = tracing::field::Empty,
        )
        .entered();
        let frame = Arc::new(Frame::encode(&entry));
        let mut guard = self.lock();
        let slots = &mut *guard;
        let Some(slot) = slots.map.get_mut(channel) else {
            return;
        };
        if !span.is_disabled() {
            let awake = slot.tx.as_ref().map_or(0, |tx| tx.receiver_count());
            span.record("listeners", awake + slot.parked.len());
        }
        slot.live = slot.live.max(Some(frame.id));
        slot.grow_if_filling(self.capacity);
        // Sleepers listen again from this delivery on.
        let mut taken = asleep::Taken::default();
        slot.wake_all(&mut taken);
        // Sent under the lock so the cache and the broadcast agree on
        // order.
        slot.send(Delivery::Frame(frame.clone()));
        let max_frames = self.recent_frames;
        account(
            &mut slots.recent_bytes,
            slots.oldest.as_mut(),
            channel,
            &mut slot.recent,
            |r| r.push(frame, max_frames),
        );
        slots.fit(self.recent_budget, &self.gauges);
        drop(guard);
        taken.hand_over(self);
    }

    fn resync(&self, channel: &Channel) {
        let mut slots = self.lock();
        // The node may have missed events: its cache no longer covers
        // anything, so listeners check against the bus.
        slots.recent(channel, |r| *r = Recent::default());
        let Some(slot) = slots.map.get_mut(channel) else {
            return;
        };
        slot.live = None;
        let mut taken = asleep::Taken::default();
        slot.wake_all(&mut taken);
        slot.send(Delivery::Resync);
        drop(slots);
        taken.hand_over(self);
    }
}

/// What a lagging listener catches up with: one page.
pub struct CatchUp {
    /// Set when history cannot cover the position; the frames then follow
    /// `gap.resume_from`.
    pub gap: Option<Gap>,
    pub page: Page,
}

impl CatchUp {
    fn cached(page: Page) -> CatchUp {
        metrics::counter!(crate::metrics::CATCH_UPS, "source" => "cache").increment(1);
        CatchUp { gap: None, page }
    }
}

/// The node's hub: local listeners over the shared bus.
#[derive(Clone)]
pub struct Hub {
    bus: Arc<dyn Bus>,
    fanout: Arc<Fanout>,
}

/// One local listener of one channel; leaving is dropping it, or
/// [`Hub::leave`] after [`Listener::keep`].
pub struct Listener {
    channel: Channel,
    /// `None` once kept: the holder leaves the channel itself.
    hub: Option<Hub>,
}

impl Listener {
    /// Stops this listener from leaving its channel when dropped: the
    /// caller calls [`Hub::leave`] itself (a subscription, which holds the
    /// hub and its channels anyway, rather than 64 bytes more a channel).
    pub fn keep(mut self) {
        self.hub = None;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.take() {
            hub.leave(&self.channel);
        }
    }
}

impl Hub {
    /// Leaves `channel` once, for a listener that was kept.
    pub fn leave(&self, channel: &Channel) {
        let mut slots = self.fanout.lock();
        let last = match slots.map.get_mut(channel) {
            Some(slot) => {
                slot.listeners -= 1;
                slot.listeners == 0
            }
            None => false,
        };
        if last {
            slots.recent(channel, |r| *r = Recent::default());
            let watched = slots
                .map
                .remove(channel)
                .is_some_and(|slot| slot.watched.started());
            metrics::gauge!(crate::metrics::CHANNELS_WATCHED).set(slots.map.len() as f64);
            self.fanout.gauges.bytes.set(slots.recent_bytes as f64);
            drop(slots);
            if !watched {
                return;
            }
            let bus = self.bus.clone();
            let channel = channel.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = bus.unwatch(&channel).await {
                        tracing::warn!(%channel, error = %e, "unwatch failed");
                    }
                });
            }
        }
    }
}

impl Hub {
    pub fn new(bus: Arc<dyn Bus>, fanout: Arc<Fanout>) -> Hub {
        Hub { bus, fanout }
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// Where a stream that starts live on `channel` begins: the newest
    /// position the node has seen, else the bus's head. One read per channel
    /// rather than one per stream.
    pub async fn live_position(&self, channel: &Channel) -> Result<StreamId, BusError> {
        let known = self.fanout.lock().get(channel).and_then(|slot| slot.live);
        match known {
            Some(position) => Ok(position),
            None => self.bus.head(channel).await,
        }
    }

    /// The bytes of history a stream catches up with at a time.
    pub fn page_bytes(&self) -> usize {
        self.fanout.page_bytes
    }

    /// One page of the frames after `position` from the node's cache, when
    /// it covers that position.
    fn recent_after(
        &self,
        channel: &Channel,
        position: StreamId,
        page_bytes: usize,
    ) -> Option<Page> {
        self.fanout
            .lock()
            .get(channel)?
            .recent
            .after(position, page_bytes)
    }

    /// One page of what follows `position` in the channel (at most
    /// `page_bytes`, at least one frame): from the node's recent frames when
    /// they cover it, else from the bus's history — one read per channel at
    /// a time, whose frames then serve the others waiting.
    pub async fn catch_up(
        &self,
        channel: &Channel,
        position: StreamId,
        page_bytes: usize,
    ) -> Result<CatchUp, BusError> {
        let reading = {
            let mut slots = self.fanout.lock();
            match slots.map.get_mut(channel) {
                Some(slot) => match slot.recent.after(position, page_bytes) {
                    Some(page) => return Ok(CatchUp::cached(page)),
                    None => Some(slot.reading.get_or_insert_default().clone()),
                },
                None => None,
            }
        };
        let Some(reading) = reading else {
            return self.read_history(channel, position, page_bytes).await;
        };
        // A task of its own: the caller is a stream that may stop being
        // polled mid-read (its writer blocked on a client that does not
        // read), and must not hold the channel's read lock while it waits.
        let hub = self.clone();
        let channel = channel.clone();
        let read = tokio::spawn(async move {
            let _one_at_a_time = reading.lock_owned().await;
            if let Some(page) = hub.recent_after(&channel, position, page_bytes) {
                return Ok(CatchUp::cached(page));
            }
            let read = hub.read_history(&channel, position, page_bytes).await?;
            let mut slots = hub.fanout.lock();
            // Kept for the channel's other listeners (a restarted node's
            // browsers on one busy channel all resume from about the same
            // place). A channel's only listener will not read this page
            // again: caching it for each of 10,000 channels after a restart
            // was ~17 MB of the storm's peak (change 42).
            let shared = slots.get(&channel).is_some_and(|s| s.listeners > 1);
            if read.gap.is_none() && shared {
                let max_frames = hub.fanout.recent_frames;
                let page = Page {
                    frames: read.page.frames.clone(),
                    more: read.page.more,
                };
                slots.recent(&channel, |r| r.backfill(position, page, max_frames));
                slots.fit(hub.fanout.recent_budget, &hub.fanout.gauges);
            }
            Ok(read)
        });
        read.await
            .unwrap_or_else(|e| Err(BusError::Unavailable(format!("history read failed: {e}"))))
    }

    async fn read_history(
        &self,
        channel: &Channel,
        position: StreamId,
        page_bytes: usize,
    ) -> Result<CatchUp, BusError> {
        metrics::counter!(crate::metrics::CATCH_UPS, "source" => "bus").increment(1);
        let history = self.bus.read_after(channel, position, page_bytes).await?;
        let from = history.gap.map_or(position, |g| g.resume_from);
        Ok(CatchUp {
            gap: history.gap,
            page: Page {
                frames: history
                    .entries
                    .iter()
                    .filter(|e| e.id > from)
                    .map(|e| Arc::new(Frame::encode(e)))
                    .collect(),
                more: history.more,
            },
        })
    }

    /// Starts listening to a channel. When this returns, every event
    /// published afterwards reaches the receiver.
    pub async fn listen(
        &self,
        channel: &Channel,
    ) -> Result<(Listener, broadcast::Receiver<Delivery>), BusError> {
        let (rx, watched) = {
            let mut slots = self.fanout.lock();
            let capacity = self.fanout.capacity;
            let slot = slots
                .map
                .entry(channel.clone())
                .or_insert_with(|| Box::new(Slot::new(capacity)));
            slot.listeners += 1;
            let watched = match &slot.watched {
                Watched::Starting(cell) => Some(cell.clone()),
                Watched::Started => None,
            };
            let pair = (slot.sender().subscribe(), watched);
            metrics::gauge!(crate::metrics::CHANNELS_WATCHED).set(slots.map.len() as f64);
            pair
        };
        // From here on the listener is counted, so dropping it on error
        // releases the slot.
        let listener = Listener {
            channel: channel.clone(),
            hub: Some(self.clone()),
        };
        if let Some(watched) = watched {
            watched
                .get_or_try_init(|| async {
                    let head = self.bus.watch(channel).await?;
                    if let Some(slot) = self.fanout.lock().map.get_mut(channel) {
                        slot.live = slot.live.max(Some(head));
                    }
                    Ok::<(), BusError>(())
                })
                .await?;
            // Listeners still waiting hold the cell; new ones need not.
            if let Some(slot) = self.fanout.lock().map.get_mut(channel) {
                if matches!(&slot.watched, Watched::Starting(cell) if Arc::ptr_eq(cell, &watched)) {
                    slot.watched = Watched::Started;
                }
            }
        }
        Ok((listener, rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ms: u64) -> Arc<Frame> {
        Arc::new(Frame::test(ms))
    }

    fn ids(page: Option<Page>) -> Option<Vec<u64>> {
        page.map(|p| p.frames.iter().map(|f| f.id.ms).collect())
    }

    #[test]
    fn the_node_wide_budget_evicts_the_oldest_frames_of_any_channel() {
        let fanout = Fanout::new(FanoutConfig {
            capacity: 64,
            recent_budget: 0,
            page_bytes: 1,
        });
        let size = frame(1).len();
        let mut slots = Slots::default();
        let (a, b) = (channel("a"), channel("b"));
        for c in [&a, &b] {
            slots.map.insert(
                c.clone(),
                Box::new(Slot {
                    listeners: 1,
                    ..Slot::new(1)
                }),
            );
        }
        // a gets 1, 4; b gets 2, 3: the oldest ids go first, whatever
        // the channel.
        for (c, ms) in [(&a, 1), (&b, 2), (&b, 3), (&a, 4)] {
            slots.recent(c, |r| r.push(frame(ms), 100));
        }
        assert_eq!(slots.recent_bytes, 4 * size);
        slots.fit(2 * size, &fanout.gauges);
        assert_eq!(slots.recent_bytes, 2 * size);
        assert_eq!(
            ids(slots
                .get(&a)
                .unwrap()
                .recent
                .after(StreamId::new(1, 0), usize::MAX)),
            Some(vec![4])
        );
        assert_eq!(
            ids(slots
                .get(&b)
                .unwrap()
                .recent
                .after(StreamId::new(2, 0), usize::MAX)),
            Some(vec![3])
        );
        // Clearing a channel's cache takes it out of the account.
        slots.recent(&a, |r| *r = Recent::default());
        assert_eq!(slots.recent_bytes, size);
        assert_eq!(slots.oldest.as_ref().map(BTreeSet::len), Some(1));
        // Well under the budget the index goes; past half, it is rebuilt
        // from the slots and evicts the oldest again.
        slots.fit(8 * size, &fanout.gauges);
        assert!(slots.oldest.is_none());
        for (c, ms) in [(&a, 5), (&b, 6)] {
            slots.recent(c, |r| r.push(frame(ms), 100));
        }
        slots.fit(2 * size, &fanout.gauges);
        assert_eq!(slots.recent_bytes, 2 * size);
        assert_eq!(
            ids(slots
                .get(&b)
                .unwrap()
                .recent
                .after(StreamId::new(3, 0), usize::MAX)),
            Some(vec![6]),
            "b's 3 was the oldest"
        );
    }

    fn channel(resource: &str) -> Channel {
        Channel::parse(&format!(
            "t:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:{resource}"
        ))
        .unwrap()
    }
}
