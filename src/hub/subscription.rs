//! One client's view of several channels: history after its cursor, then
//! live events, in order, with no gap and no duplicate.
//!
//! The order of operations is what makes that hold: listen first (so nothing
//! published from now on can be missed), then read history after the cursor,
//! then take live events, dropping any at or before each channel's position.
//! A listener that falls behind its bounded buffer is caught up from history
//! the same way, or told the range is gone.
//!
//! Catching up goes a page at a time: the next page is read only once the
//! client has taken everything queued, so a client that does not read costs
//! one page, whatever the history holds.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use smallvec::SmallVec;
use tokio::sync::broadcast;
use tokio_stream::StreamMap;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::{Delivery, Frame, Hub, Listener};
use crate::bus::{BusError, GapReason};
use crate::channel::{Channel, ChannelSet};
use crate::cursor::{self, Positions, StreamId};

/// What a subscription yields.
#[derive(Debug, Clone)]
pub enum Item {
    /// An event of `channels()[channel]`; `live` when it came as it was
    /// published, not replayed from the cache or history.
    Event {
        channel: usize,
        frame: Arc<Frame>,
        live: bool,
    },
    /// History cannot cover these channels' missed range; the stream goes
    /// on from their newest position.
    Reset {
        channels: Vec<usize>,
        reason: GapReason,
    },
}

/// Live deliveries: one channel's receiver itself (most streams, and the
/// cheaper to poll on every event), or several channels' merged.
enum Live {
    One(broadcast::Receiver<Delivery>),
    Many(StreamMap<usize, BroadcastStream<Delivery>>),
    /// Asleep in the channel's slot (see [`super::Sleeper`]): no receiver
    /// until the slot wakes the stream with one.
    Asleep,
}

impl Live {
    /// The next delivery and the index of its channel; `None` once the
    /// hub closed every channel.
    async fn next(&mut self) -> Option<(usize, Result<Delivery, BroadcastStreamRecvError>)> {
        match self {
            Live::One(rx) => match rx.recv().await {
                Ok(delivery) => Some((0, Ok(delivery))),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Some((0, Err(BroadcastStreamRecvError::Lagged(missed))))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            },
            Live::Many(merged) => merged.next().await,
            // Never polled asleep: the stream has no task then.
            Live::Asleep => std::future::pending().await,
        }
    }

    /// Listens to channel `i` through `rx` from now on (its ring grew).
    fn replace(&mut self, i: usize, rx: broadcast::Receiver<Delivery>) {
        match self {
            Live::One(old) => *old = rx,
            Live::Many(merged) => {
                merged.insert(i, BroadcastStream::new(rx));
            }
            Live::Asleep => *self = Live::One(rx),
        }
    }
}

pub struct Subscription {
    hub: Hub,
    channels: ChannelSet,
    /// Inline for one channel, as most streams have: no allocation.
    positions: SmallVec<[StreamId; 1]>,
    live: Live,
    /// What a catch-up left to yield or to read; `None` while the stream
    /// keeps up, as most do most of the time. Behind a pointer: it is 56
    /// bytes that every stream, awake or asleep, would otherwise carry.
    backlog: Option<Box<Backlog>>,
}

#[derive(Default)]
struct Backlog {
    pending: VecDeque<Item>,
    /// Channels whose catch-up is not finished: history holds more after
    /// what was queued. Their next page is read once `pending` is empty,
    /// before any live event.
    unfinished: Vec<usize>,
}

/// A subscription listens to each of its channels until dropped.
impl Drop for Subscription {
    fn drop(&mut self) {
        for channel in &self.channels {
            self.hub.leave(channel);
        }
    }
}

impl Subscription {
    /// Subscribes to `channels`. With `resume`, a cursor decoded for these
    /// channels, replay starts after its positions; without, the stream
    /// starts live.
    pub async fn open(
        hub: &Hub,
        channels: ChannelSet,
        resume: Option<Positions>,
    ) -> Result<Subscription, BusError> {
        let mut listeners = Vec::with_capacity(channels.len());
        let mut receivers = Vec::with_capacity(channels.len());
        for channel in &channels {
            let (listener, rx) = hub.listen(channel).await?;
            receivers.push(rx);
            listeners.push(listener);
        }
        // From here the subscription leaves its channels when dropped.
        listeners.into_iter().for_each(Listener::keep);
        let live = match <[_; 1]>::try_from(receivers) {
            Ok([rx]) => Live::One(rx),
            Err(receivers) => Live::Many(
                receivers
                    .into_iter()
                    .map(BroadcastStream::new)
                    .enumerate()
                    .collect(),
            ),
        };
        let mut sub = Subscription {
            hub: hub.clone(),
            channels,
            positions: SmallVec::new(),
            live,
            backlog: None,
        };
        match resume {
            None => {
                for channel in &sub.channels {
                    // Boxed, as catching up is: an open waiting to listen
                    // should not hold room for the steps after it.
                    let head = Box::pin(sub.hub.live_position(channel)).await?;
                    sub.positions.push(head);
                }
            }
            Some(positions) => {
                sub.positions = SmallVec::from_vec(positions.into_vec());
                let all: Vec<usize> = (0..sub.channels.len()).collect();
                Box::pin(sub.catch_up(&all)).await?;
            }
        }
        Ok(sub)
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// Whether the subscription may sleep: one channel, listened to live,
    /// with nothing queued or left to catch up with.
    pub fn is_quiet(&self) -> bool {
        matches!(self.live, Live::One(_)) && self.backlog.is_none()
    }

    /// Lets go of the live receiver when nothing waits in it; for
    /// [`super::Sleeper::let_go`], under the hub's lock.
    pub fn let_go(&mut self) -> bool {
        match &self.live {
            Live::One(rx) if rx.is_empty() && self.is_quiet() => {
                self.live = Live::Asleep;
                true
            }
            _ => false,
        }
    }

    /// Listens again, from `rx`, after sleeping.
    pub fn listen_again(&mut self, rx: broadcast::Receiver<Delivery>) {
        self.live.replace(0, rx);
    }

    /// The cursor of everything yielded so far.
    pub fn cursor(&self) -> String {
        cursor::encode(&self.channels, &self.positions)
    }

    /// Queues a page of what follows each listed channel's position —
    /// from the node's recent frames when they cover it, else from the bus's
    /// history — in id order across channels, and resets for the channels
    /// history cannot cover. Channels with more to read are left in
    /// `unfinished`.
    async fn catch_up(&mut self, which: &[usize]) -> Result<(), BusError> {
        // The page is shared by the channels read together.
        let page_bytes = (self.hub.page_bytes() / which.len().max(1)).max(1);
        let mut replay: Vec<(StreamId, usize, Arc<Frame>)> = Vec::new();
        let mut gaps: Vec<(usize, GapReason)> = Vec::new();
        let mut unfinished: Vec<usize> = Vec::new();
        // The earliest end of a page that stopped short: frames after it
        // wait for the next pages, so the channels interleave in id order.
        let mut horizon: Option<(StreamId, usize)> = None;
        // Every read first, every change after: a stream may drop this
        // future at any await (its timer fired), and must then find itself
        // as it was, to read the same pages again.
        let mut pages = Vec::with_capacity(which.len());
        for &i in which {
            let caught = self
                .hub
                .catch_up(&self.channels[i], self.positions[i], page_bytes)
                .await?;
            pages.push((i, caught));
        }
        for (i, caught) in pages {
            if let Some(gap) = caught.gap {
                self.positions[i] = gap.resume_from;
                gaps.push((i, gap.reason));
            }
            if caught.page.more {
                if let Some(last) = caught.page.frames.last() {
                    unfinished.push(i);
                    let end = (last.id, i);
                    horizon = Some(horizon.map_or(end, |h| h.min(end)));
                }
            }
            let from = self.positions[i];
            replay.extend(
                caught
                    .page
                    .frames
                    .into_iter()
                    .filter(|f| f.id > from)
                    .map(|f| (f.id, i, f)),
            );
        }
        // One reset per reason, naming every channel it covers, ahead of
        // anything else queued.
        for reason in [GapReason::Trimmed, GapReason::Unknown, GapReason::Lost] {
            let channels: Vec<usize> = gaps
                .iter()
                .filter(|(_, r)| *r == reason)
                .map(|(i, _)| *i)
                .collect();
            if !channels.is_empty() {
                let backlog = self.backlog.get_or_insert_default();
                backlog.pending.push_back(Item::Reset { channels, reason });
            }
        }
        replay.sort_by_key(|(id, i, _)| (*id, *i));
        if let Some(horizon) = horizon {
            let cut = replay.partition_point(|(id, i, _)| (*id, *i) <= horizon);
            for &(_, i, _) in &replay[cut..] {
                if !unfinished.contains(&i) {
                    unfinished.push(i);
                }
            }
            replay.truncate(cut);
        }
        let backlog = self.backlog.get_or_insert_default();
        backlog.unfinished = unfinished;
        backlog
            .pending
            .extend(replay.into_iter().map(|(_, channel, frame)| Item::Event {
                channel,
                frame,
                live: false,
            }));
        if backlog.pending.is_empty() && backlog.unfinished.is_empty() {
            self.backlog = None;
        }
        Ok(())
    }

    fn must_catch_up(&mut self, i: usize) {
        let backlog = self.backlog.get_or_insert_default();
        if !backlog.unfinished.contains(&i) {
            backlog.unfinished.push(i);
        }
    }

    /// The next item, waiting for live events when nothing is queued.
    /// Cancel-safe: dropped at any await, the subscription has lost
    /// nothing, and the next call goes on from where this one was.
    /// `None` only if the hub shut the channels down.
    pub async fn next(&mut self) -> Option<Result<Item, BusError>> {
        loop {
            if let Some(backlog) = self.backlog.as_mut() {
                if let Some(item) = backlog.pending.pop_front() {
                    if let Item::Event { channel, frame, .. } = &item {
                        if frame.id <= self.positions[*channel] {
                            continue;
                        }
                        self.positions[*channel] = frame.id;
                    }
                    return Some(Ok(item));
                }
                if backlog.unfinished.is_empty() {
                    self.backlog = None;
                } else {
                    // Left in `unfinished` until the page is queued (see
                    // `catch_up`). Boxed: catching up is rare, and its
                    // state would otherwise enlarge every idle stream.
                    let which = backlog.unfinished.clone();
                    if let Err(e) = Box::pin(self.catch_up(&which)).await {
                        return Some(Err(e));
                    }
                    continue;
                }
            }
            match self.live.next().await? {
                (i, Ok(Delivery::Frame(frame))) => {
                    if frame.id > self.positions[i] {
                        self.positions[i] = frame.id;
                        return Some(Ok(Item::Event {
                            channel: i,
                            frame,
                            live: true,
                        }));
                    }
                }
                // Each catch-up below is marked in `unfinished` and read at
                // the top of the loop, not awaited here: the delivery that
                // asked for it is gone once taken, and the catch-up must
                // survive this future being dropped.
                (i, Ok(Delivery::Grown(grown))) => {
                    let (rx, in_time) = grown.receiver();
                    self.live.replace(i, rx);
                    if !in_time {
                        // Made after the swap: what was sent in between
                        // comes from the cache.
                        self.must_catch_up(i);
                    }
                }
                (i, Ok(Delivery::Resync)) => self.must_catch_up(i),
                (i, Err(BroadcastStreamRecvError::Lagged(missed))) => {
                    tracing::debug!(channel = %self.channels[i], missed, "listener lagged; catching up from history");
                    self.must_catch_up(i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::bus::memory::MemoryBus;
    use crate::bus::{Bus, Orders, Outgoing, Retention};
    use crate::hub::{Fanout, FanoutConfig};
    use crate::revocation::Revocation;

    struct NoOrders;
    impl Orders for NoOrders {
        fn apply(&self, _order: &Revocation) {}
    }

    /// A hub on the embedded bus whose catch-up pages hold one frame.
    fn hub(history: usize) -> (Hub, Arc<MemoryBus>) {
        let fanout = Fanout::new(FanoutConfig {
            capacity: 4,
            recent_budget: 0,
            page_bytes: 1,
        });
        let retention = Retention {
            max_len: history,
            ..Retention::default()
        };
        let bus = Arc::new(MemoryBus::new(
            retention,
            usize::MAX,
            fanout.clone(),
            Arc::new(NoOrders),
        ));
        (Hub::new(bus.clone(), fanout), bus)
    }

    fn ch(r: &str) -> Channel {
        Channel::parse(&format!("t:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:{r}")).unwrap()
    }

    async fn publish(bus: &MemoryBus, c: &Channel) -> StreamId {
        bus.publish(Outgoing {
            channel: c.clone(),
            event: crate::schema::EventName::published("a.b").expect("a name"),
            data: "{}".into(),
            idempotency_key: None,
        })
        .await
        .unwrap()
        .id
    }

    /// The next event's channel and id, failing rather than waiting long.
    async fn next_event(sub: &mut Subscription) -> (usize, StreamId) {
        match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
            Ok(Some(Ok(Item::Event { channel, frame, .. }))) => (channel, frame.id),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// A hub whose full ring is `capacity`, with no cache to catch up from.
    fn hub_with_ring(capacity: usize) -> (Hub, Arc<MemoryBus>) {
        let fanout = Fanout::new(FanoutConfig {
            capacity,
            recent_budget: 0,
            page_bytes: 1 << 20,
        });
        let bus = Arc::new(MemoryBus::new(
            Retention::default(),
            usize::MAX,
            fanout.clone(),
            Arc::new(NoOrders),
        ));
        (Hub::new(bus.clone(), fanout), bus)
    }

    /// A channel starts on a small ring; a burst its listeners have not read
    /// grows it, and every listener, on one channel or several, gets every
    /// event live and in order: none lagged, none caught up from history.
    #[tokio::test]
    async fn a_subscription_leaves_its_channels_when_dropped_and_only_then() {
        let (hub, _bus) = hub(8);
        let (a, b) = (ch("a"), ch("b"));
        let watched = |hub: &Hub| hub.fanout.lock().map.len();
        let both = Subscription::open(&hub, ChannelSet::new(vec![a.clone(), b.clone()]), None)
            .await
            .unwrap();
        let one = Subscription::open(&hub, ChannelSet::new(vec![a.clone()]), None)
            .await
            .unwrap();
        assert_eq!(watched(&hub), 2);
        drop(both);
        // `a` still has a listener; `b` has none.
        assert_eq!(watched(&hub), 1);
        assert!(
            hub.fanout
                .lock()
                .map
                .get(&a)
                .is_some_and(|s| s.listeners == 1)
        );
        drop(one);
        assert_eq!(watched(&hub), 0);
    }

    #[tokio::test]
    async fn a_burst_grows_the_ring_and_no_listener_misses_a_live_event() {
        let (hub, bus) = hub_with_ring(256);
        let (a, b) = (ch("grow-a"), ch("grow-b"));
        let mut one = Subscription::open(&hub, ChannelSet::new(vec![a.clone()]), None)
            .await
            .unwrap();
        let mut many = Subscription::open(&hub, ChannelSet::new(vec![a.clone(), b.clone()]), None)
            .await
            .unwrap();
        let mut sent = Vec::new();
        for _ in 0..100 {
            sent.push(publish(&bus, &a).await);
        }
        for sub in [&mut one, &mut many] {
            for want in &sent {
                match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
                    Ok(Some(Ok(Item::Event { frame, live, .. }))) => {
                        assert_eq!(frame.id, *want);
                        assert!(live, "{want}: delivered live, not caught up");
                    }
                    other => panic!("expected {want}, got {other:?}"),
                }
            }
        }
        // The other channel of the merged stream still delivers.
        let later = publish(&bus, &b).await;
        assert_eq!(next_event(&mut many).await, (1, later));
    }

    /// A page read from history is kept for the channel's other listeners,
    /// and not for a channel's only one (after a restart, 10,000 channels'
    /// pages that nobody reads again).
    #[tokio::test]
    async fn a_resumed_page_is_cached_only_when_the_channel_is_shared() {
        let fanout = Fanout::new(FanoutConfig {
            capacity: 16,
            recent_budget: 1 << 20,
            page_bytes: 1 << 20,
        });
        let bus = Arc::new(MemoryBus::new(
            Retention::default(),
            usize::MAX,
            fanout.clone(),
            Arc::new(NoOrders),
        ));
        let hub = Hub::new(bus.clone(), fanout);
        let (alone, shared) = (ch("alone"), ch("shared"));
        let mut first = HashMap::new();
        for c in [&alone, &shared] {
            first.insert(c.clone(), publish(&bus, c).await);
            publish(&bus, c).await;
        }
        let resume = |c: &Channel| {
            let set = ChannelSet::new(vec![c.clone()]);
            let start = cursor::encode(&set, &[first[c]]);
            (set.clone(), cursor::decode(&start, &set).unwrap())
        };
        let (set, from) = resume(&alone);
        let _one = Subscription::open(&hub, set, Some(from)).await.unwrap();
        assert!(hub.recent_after(&alone, first[&alone], 1 << 20).is_none());
        let _listening = Subscription::open(&hub, ChannelSet::new(vec![shared.clone()]), None)
            .await
            .unwrap();
        let (set, from) = resume(&shared);
        let _two = Subscription::open(&hub, set, Some(from)).await.unwrap();
        assert!(hub.recent_after(&shared, first[&shared], 1 << 20).is_some());
    }

    #[tokio::test]
    async fn a_paged_resume_merges_channels_in_id_order_then_goes_live() {
        let (hub, bus) = hub(1000);
        let (a, b, c) = (ch("a"), ch("b"), ch("c"));
        // Interleaved history over three channels, a page holding one frame.
        let mut published = Vec::new();
        for round in 0..5 {
            for (i, channel) in [&a, &b, &c].into_iter().enumerate() {
                if (round + i) % 2 == 0 {
                    published.push((publish(&bus, channel).await, i));
                }
            }
        }
        let set = ChannelSet::new(vec![c.clone(), a.clone(), b.clone()]);
        let start = cursor::encode(&set, &[StreamId::ZERO; 3]);
        let resume = cursor::decode(&start, &set).unwrap();
        let mut sub = Subscription::open(&hub, set, Some(resume)).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..published.len() {
            let (channel, id) = next_event(&mut sub).await;
            seen.push((id, channel));
        }
        // Every event once, merged across channels in id order (ids of
        // different channels may be equal: then by channel).
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        published.sort();
        assert_eq!(seen, published);
        // Live events follow the replay with no gap and no duplicate.
        let live = publish(&bus, &b).await;
        assert_eq!(next_event(&mut sub).await, (1, live));
        // The cursor resumes exactly there.
        let cursor = sub.cursor();
        drop(sub);
        let after = publish(&bus, &a).await;
        let set = ChannelSet::new(vec![a.clone(), b.clone(), c.clone()]);
        let resume = cursor::decode(&cursor, &set).unwrap();
        let mut again = Subscription::open(&hub, set, Some(resume)).await.unwrap();
        assert_eq!(next_event(&mut again).await, (0, after));
    }

    #[tokio::test]
    async fn a_resume_into_trimmed_history_is_reset_before_anything_else() {
        let (hub, bus) = hub(3);
        let a = ch("a");
        let first = publish(&bus, &a).await;
        let mut kept = Vec::new();
        for _ in 0..5 {
            kept.push(publish(&bus, &a).await);
        }
        let set = ChannelSet::new(vec![a.clone()]);
        let resume = cursor::decode(&first.to_string(), &set).unwrap();
        let mut sub = Subscription::open(&hub, set, Some(resume)).await.unwrap();
        match sub.next().await {
            Some(Ok(Item::Reset { channels, reason })) => {
                assert_eq!(channels, vec![0]);
                assert_eq!(reason, GapReason::Trimmed);
            }
            other => panic!("expected a reset, got {other:?}"),
        }
        for id in &kept[2..] {
            assert_eq!(next_event(&mut sub).await, (0, *id));
        }
    }

    /// A test's sleeper: reports how it was woken, and with what first.
    struct Held {
        sub: Subscription,
        woke: Option<tokio::sync::oneshot::Sender<(bool, Option<Delivery>)>>,
        /// A keep-alive due at the next look; `true`: the channel resyncs
        /// while it is written.
        keep: Option<bool>,
    }

    impl crate::hub::Sleeper for Held {
        fn let_go(&mut self) -> bool {
            self.sub.let_go()
        }

        fn wake(mut self: Box<Self>, rx: Option<broadcast::Receiver<Delivery>>) {
            let given = rx.is_some();
            if let Some(rx) = rx {
                self.sub.listen_again(rx);
            }
            let first = match &mut self.sub.live {
                Live::One(rx) => rx.try_recv().ok(),
                _ => None,
            };
            if let Some(woke) = self.woke.take() {
                let _ = woke.send((given, first));
            }
        }

        fn check(&mut self, _now: tokio::time::Instant) -> crate::hub::Check {
            match self.keep {
                Some(_) => crate::hub::Check::KeepAlive,
                None => crate::hub::Check::Stay,
            }
        }

        fn keep_alive(mut self: Box<Self>, rx: broadcast::Receiver<Delivery>) {
            self.sub.listen_again(rx);
            let hub = self.sub.hub().clone();
            let channel = self.sub.channels()[0].clone();
            if self.keep.take() == Some(true) {
                crate::bus::Sink::resync(&*hub.fanout, &channel);
            }
            hub.park(&channel, self);
        }
    }

    async fn open_one(hub: &Hub, c: &Channel) -> Subscription {
        Subscription::open(hub, ChannelSet::new(vec![c.clone()]), None)
            .await
            .unwrap()
    }

    async fn asleep(
        hub: &Hub,
        c: &Channel,
    ) -> tokio::sync::oneshot::Receiver<(bool, Option<Delivery>)> {
        let sub = open_one(hub, c).await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        hub.park(
            c,
            Box::new(Held {
                sub,
                woke: Some(tx),
                keep: None,
            }),
        );
        rx
    }

    async fn woken(
        rx: tokio::sync::oneshot::Receiver<(bool, Option<Delivery>)>,
    ) -> (bool, Option<Delivery>) {
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("woken in time")
            .expect("woken")
    }

    /// A channel whose only listener sleeps holds no ring; its next event
    /// wakes the sleeper with a receiver that has that event first.
    #[tokio::test]
    async fn the_next_event_wakes_a_sleeper_with_that_event_first() {
        let (hub, bus) = hub(8);
        let a = ch("sleeps");
        let woke = asleep(&hub, &a).await;
        {
            let slots = hub.fanout.lock();
            let slot = slots.map.get(&a).expect("the channel's slot");
            assert_eq!(slot.parked.len(), 1);
            assert!(slot.tx.is_none(), "no ring while every listener sleeps");
        }
        let id = publish(&bus, &a).await;
        match woken(woke).await {
            (true, Some(Delivery::Frame(f))) => assert_eq!(f.id, id),
            other => panic!("expected the event first, got {other:?}"),
        }
    }

    /// A resync (the node may have missed events) wakes sleepers too: they
    /// must check their position against history.
    #[tokio::test]
    async fn a_resync_wakes_a_sleeper() {
        let (hub, _bus) = hub(8);
        let a = ch("resyncs");
        let woke = asleep(&hub, &a).await;
        crate::bus::Sink::resync(&*hub.fanout, &a);
        assert!(matches!(woken(woke).await, (true, Some(Delivery::Resync))));
    }

    /// A stream whose receiver already holds an event does not sleep: it is
    /// woken at once, still listening from its own receiver.
    #[tokio::test]
    async fn a_stream_with_an_event_waiting_is_not_put_to_sleep() {
        let (hub, bus) = hub(8);
        let a = ch("busy");
        let sub = open_one(&hub, &a).await;
        let id = publish(&bus, &a).await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        hub.park(
            &a,
            Box::new(Held {
                sub,
                woke: Some(tx),
                keep: None,
            }),
        );
        match woken(rx).await {
            (false, Some(Delivery::Frame(f))) => assert_eq!(f.id, id),
            other => panic!("expected its own receiver with the event, got {other:?}"),
        }
        assert!(
            hub.fanout
                .lock()
                .map
                .get(&a)
                .is_none_or(|s| s.parked.is_empty())
        );
    }

    /// A sleeper whose keep-alive is due leaves its slot listening, writes
    /// it outside the hub's lock, and sleeps again: its channel holds no
    /// ring afterwards.
    #[tokio::test]
    async fn a_sleeper_sleeps_again_after_its_keep_alive() {
        let (hub, _bus) = hub(8);
        let a = ch("keeps");
        let (sub, woke) = (open_one(&hub, &a).await, None);
        hub.park(
            &a,
            Box::new(Held {
                sub,
                woke,
                keep: Some(false),
            }),
        );
        hub.fanout.check_sleepers(tokio::time::Instant::now());
        let slots = hub.fanout.lock();
        let slot = slots.map.get(&a).expect("the channel's slot");
        assert_eq!(slot.parked.len(), 1, "asleep again");
        assert!(slot.tx.is_none(), "no ring while every listener sleeps");
    }

    /// What the channel sends while a keep-alive is written reaches the
    /// stream: it was subscribed before it left its slot, and wakes with it.
    #[tokio::test]
    async fn a_delivery_during_a_keep_alive_wakes_the_sleeper() {
        let (hub, _bus) = hub(8);
        let a = ch("keeps-busy");
        let sub = open_one(&hub, &a).await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        hub.park(
            &a,
            Box::new(Held {
                sub,
                woke: Some(tx),
                keep: Some(true),
            }),
        );
        hub.fanout.check_sleepers(tokio::time::Instant::now());
        assert!(matches!(woken(rx).await, (false, Some(Delivery::Resync))));
    }
}
