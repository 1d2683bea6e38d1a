//! The embedded bus: one node, history in memory.
//!
//! Every channel's history is a bounded deque; publishing assigns the id,
//! stores the entry and hands it to the sink under one lock, so delivery
//! order is id order and a reader of history plus live events sees no gap.
//!
//! Besides each channel's bounds (length, age), all channels together hold
//! at most `max_bytes` of history: past it the oldest entries of any
//! channel go first, so one tenant's producer cannot exhaust the node. A
//! reader whose position was dropped that way is told so (`Trimmed`).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::{
    Bus, BusError, Entry, Gap, GapReason, Orders, Outgoing, Published, Replay, Retention, Sink,
    entry_bytes,
};
use crate::channel::{Channel, ChannelMap};
use crate::cursor::StreamId;
use crate::revocation::Revocation;

#[derive(Default)]
struct ChannelState {
    entries: VecDeque<(Instant, Entry)>,
    /// Bytes of `entries`, as pages count them.
    bytes: usize,
    /// Newest id ever assigned; ids only grow.
    last: StreamId,
    /// Newest id dropped from history; a reader before it has missed events.
    trimmed_through: StreamId,
    keys: HashMap<String, StreamId>,
    key_expiry: VecDeque<(Instant, String)>,
}

impl ChannelState {
    fn push(&mut self, at: Instant, entry: Entry) {
        self.bytes += entry_bytes(&entry.event, &entry.data);
        self.entries.push_back((at, entry));
    }

    /// Drops the oldest entry; a reader before it has missed events.
    fn pop_oldest(&mut self) {
        if let Some((_, e)) = self.entries.pop_front() {
            self.bytes -= entry_bytes(&e.event, &e.data);
            self.trimmed_through = e.id;
        }
    }

    fn oldest(&self) -> Option<StreamId> {
        self.entries.front().map(|(_, e)| e.id)
    }

    fn trim(&mut self, retention: &Retention, now: Instant) {
        while self.entries.len() > retention.max_len
            || self
                .entries
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > retention.max_age)
        {
            self.pop_oldest();
        }
        while let Some((at, _)) = self.key_expiry.front() {
            if now.duration_since(*at) <= retention.idempotency_window {
                break;
            }
            if let Some((_, key)) = self.key_expiry.pop_front() {
                self.keys.remove(&key);
            }
        }
    }

    fn next_id(&mut self) -> StreamId {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        // Like Valkey: a clock that steps back keeps the last millisecond.
        let id = if now_ms > self.last.ms {
            StreamId::new(now_ms, 0)
        } else {
            StreamId::new(self.last.ms, self.last.seq + 1)
        };
        self.last = id;
        id
    }
}

/// Publishes between sweeps of channels whose history has aged out.
const SWEEP_EVERY: u32 = 4096;

/// Every channel's history, and the node-wide account of it.
#[derive(Default)]
struct Channels {
    map: ChannelMap<ChannelState>,
    /// Bytes of every channel's entries together.
    bytes: usize,
    /// Every channel that holds entries, by the id of its oldest one: where
    /// the node-wide bound drops first.
    oldest: BTreeSet<(StreamId, Channel)>,
}

impl Channels {
    /// Changes one channel's state (made if missing), keeping the node-wide
    /// account true; every change to a channel's entries goes through here.
    fn change<R>(&mut self, channel: &Channel, f: impl FnOnce(&mut ChannelState) -> R) -> R {
        let state = match self.map.get_mut(channel) {
            Some(state) => state,
            None => self.map.entry(channel.clone()).or_default(),
        };
        let (oldest, bytes) = (state.oldest(), state.bytes);
        let out = f(state);
        let (now_oldest, now_bytes) = (state.oldest(), state.bytes);
        self.bytes = self.bytes - bytes + now_bytes;
        if oldest != now_oldest {
            if let Some(id) = oldest {
                self.oldest.remove(&(id, channel.clone()));
            }
            if let Some(id) = now_oldest {
                self.oldest.insert((id, channel.clone()));
            }
        }
        out
    }

    /// Drops the oldest entries of any channel until all fit `max_bytes`.
    fn fit(&mut self, max_bytes: usize, gauges: &Gauges) {
        while self.bytes > max_bytes {
            let Some((_, channel)) = self.oldest.first().cloned() else {
                break;
            };
            gauges.evicted.increment(1);
            self.change(&channel, ChannelState::pop_oldest);
        }
        gauges.bytes.set(self.bytes as f64);
    }

    /// Forgets channels with nothing retained, so memory follows live
    /// channels rather than every channel ever used. A later resume with a
    /// cursor of a forgotten channel gets `bridge.reset` (unknown position),
    /// never a silent gap.
    fn sweep(&mut self, retention: &Retention, now: Instant) {
        let names: Vec<Channel> = self.map.keys().cloned().collect();
        for channel in &names {
            self.change(channel, |state| state.trim(retention, now));
        }
        self.map
            .retain(|_, state| !state.entries.is_empty() || !state.keys.is_empty());
    }
}

/// Metric handles, looked up once rather than per publish.
struct Gauges {
    bytes: metrics::Gauge,
    evicted: metrics::Counter,
}

/// The embedded, single-node bus.
pub struct MemoryBus {
    retention: Retention,
    /// Bound on all channels' history together, in bytes.
    max_bytes: usize,
    channels: Mutex<Channels>,
    sink: Arc<dyn Sink>,
    orders: Arc<dyn Orders>,
    publishes: std::sync::atomic::AtomicU32,
    gauges: Gauges,
}

impl MemoryBus {
    pub fn new(
        retention: Retention,
        max_bytes: usize,
        sink: Arc<dyn Sink>,
        orders: Arc<dyn Orders>,
    ) -> MemoryBus {
        MemoryBus {
            retention,
            max_bytes,
            channels: Mutex::new(Channels::default()),
            sink,
            orders,
            publishes: std::sync::atomic::AtomicU32::new(0),
            gauges: Gauges {
                bytes: metrics::gauge!(crate::metrics::HISTORY_BYTES),
                evicted: metrics::counter!(crate::metrics::HISTORY_EVICTED),
            },
        }
    }

    fn lock(&self) -> MutexGuard<'_, Channels> {
        // A panic while holding the lock cannot leave a channel half-updated
        // in a way later readers would misread, so keep serving.
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, event: Outgoing) -> Result<Published, BusError> {
        let now = Instant::now();
        let mut channels = self.lock();
        let n = self
            .publishes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            channels.sweep(&self.retention, now);
        }
        let retention = &self.retention;
        let Outgoing {
            channel,
            event,
            data,
            idempotency_key,
        } = event;
        let stored = channels.change(&channel, |state| {
            state.trim(retention, now);
            if let Some(key) = &idempotency_key {
                if let Some(&id) = state.keys.get(key) {
                    return Err(id);
                }
            }
            let id = state.next_id();
            let entry = Entry { id, event, data };
            state.push(now, entry.clone());
            if let Some(key) = idempotency_key {
                state.keys.insert(key.clone(), id);
                state.key_expiry.push_back((now, key));
            }
            state.trim(retention, now);
            Ok(entry)
        });
        let entry = match stored {
            Ok(entry) => entry,
            Err(id) => {
                return Ok(Published {
                    id,
                    duplicate: true,
                });
            }
        };
        channels.fit(self.max_bytes, &self.gauges);
        let id = entry.id;
        self.sink.deliver(&channel, entry);
        Ok(Published {
            id,
            duplicate: false,
        })
    }

    async fn head(&self, channel: &Channel) -> Result<StreamId, BusError> {
        Ok(self
            .lock()
            .map
            .get(channel)
            .map(|s| s.last)
            .unwrap_or_default())
    }

    async fn read_after(
        &self,
        channel: &Channel,
        after: StreamId,
        page_bytes: usize,
    ) -> Result<Replay, BusError> {
        let now = Instant::now();
        let mut channels = self.lock();
        if channels.map.contains_key(channel) {
            channels.change(channel, |state| state.trim(&self.retention, now));
        }
        let Some(state) = channels.map.get(channel) else {
            return Ok(Replay {
                gap: (after != StreamId::ZERO).then_some(Gap {
                    reason: GapReason::Unknown,
                    resume_from: StreamId::ZERO,
                }),
                ..Replay::default()
            });
        };
        if after > state.last {
            return Ok(Replay {
                gap: Some(Gap {
                    reason: GapReason::Unknown,
                    resume_from: state.last,
                }),
                ..Replay::default()
            });
        }
        let (gap, from) = if after < state.trimmed_through {
            let gap = Gap {
                reason: GapReason::Trimmed,
                resume_from: state.trimmed_through,
            };
            (Some(gap), state.trimmed_through)
        } else {
            (None, after)
        };
        let start = state.entries.partition_point(|(_, e)| e.id <= from);
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        for (_, e) in state.entries.range(start..) {
            let size = entry_bytes(&e.event, &e.data);
            if !entries.is_empty() && bytes + size > page_bytes {
                more = true;
                break;
            }
            bytes += size;
            entries.push(e.clone());
        }
        Ok(Replay { gap, entries, more })
    }

    async fn watch(&self, channel: &Channel) -> Result<StreamId, BusError> {
        // The sink sees every publish on this node already.
        self.head(channel).await
    }

    async fn unwatch(&self, _channel: &Channel) -> Result<(), BusError> {
        Ok(())
    }

    async fn revoke(&self, order: &Revocation) -> Result<u64, BusError> {
        self.orders.apply(order);
        Ok(1)
    }

    async fn readiness(&self) -> super::Readiness {
        super::Readiness {
            commands: true,
            subscriptions: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Collect(Mutex<Vec<(Channel, StreamId)>>);
    impl Sink for Collect {
        fn deliver(&self, channel: &Channel, entry: Entry) {
            self.0.lock().unwrap().push((channel.clone(), entry.id));
        }
        fn resync(&self, _channel: &Channel) {}
    }

    struct NoOrders;
    impl Orders for NoOrders {
        fn apply(&self, _order: &Revocation) {}
    }

    fn ch(r: &str) -> Channel {
        Channel::parse(&format!("t:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:{r}")).unwrap()
    }

    fn out(c: &Channel, key: Option<&str>) -> Outgoing {
        Outgoing {
            channel: c.clone(),
            event: crate::schema::EventName::published("a.b").expect("a name"),
            data: "{}".into(),
            idempotency_key: key.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn ids_grow_history_is_bounded_and_keys_dedupe() {
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        let retention = Retention {
            max_len: 3,
            ..Retention::default()
        };
        let bus = MemoryBus::new(retention, usize::MAX, sink.clone(), Arc::new(NoOrders));
        let c = ch("a");
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(bus.publish(out(&c, None)).await.unwrap().id);
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(bus.head(&c).await.unwrap(), ids[4]);
        let ids_of = |r: &Replay| r.entries.iter().map(|e| e.id).collect::<Vec<_>>();
        let covered = bus.read_after(&c, ids[1], usize::MAX).await.unwrap();
        assert_eq!((covered.gap, ids_of(&covered)), (None, ids[2..].to_vec()));
        // ids[0] is covered by nothing: ids[1] was trimmed.
        let trimmed = bus.read_after(&c, ids[0], usize::MAX).await.unwrap();
        assert_eq!(
            trimmed.gap,
            Some(Gap {
                reason: GapReason::Trimmed,
                resume_from: ids[1]
            })
        );
        assert_eq!(ids_of(&trimmed), ids[2..].to_vec());
        let future = StreamId::new(ids[4].ms + 1, 0);
        let unknown = bus.read_after(&c, future, usize::MAX).await.unwrap();
        assert_eq!(
            unknown.gap,
            Some(Gap {
                reason: GapReason::Unknown,
                resume_from: ids[4]
            })
        );
        assert!(unknown.entries.is_empty());
        let first = bus.publish(out(&c, Some("k"))).await.unwrap();
        let again = bus.publish(out(&c, Some("k"))).await.unwrap();
        assert_eq!((again.id, again.duplicate), (first.id, true));
        // The same key on another channel is another event.
        assert!(
            !bus.publish(out(&ch("b"), Some("k")))
                .await
                .unwrap()
                .duplicate
        );
        assert_eq!(sink.0.lock().unwrap().len(), 7);
    }

    #[tokio::test]
    async fn channels_whose_history_aged_out_are_forgotten() {
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        let retention = Retention {
            max_age: Duration::from_millis(10),
            idempotency_window: Duration::from_millis(10),
            ..Retention::default()
        };
        let bus = MemoryBus::new(retention, usize::MAX, sink, Arc::new(NoOrders));
        let old = ch("old");
        let id = bus.publish(out(&old, Some("k"))).await.unwrap().id;
        tokio::time::sleep(Duration::from_millis(30)).await;
        for _ in 0..SWEEP_EVERY {
            bus.publish(out(&ch("busy"), None)).await.unwrap();
        }
        assert!(!bus.lock().map.contains_key(&old));
        // Resuming from the forgotten channel is a reset, not a silent gap.
        let replay = bus.read_after(&old, id, usize::MAX).await.unwrap();
        assert_eq!(replay.gap.map(|g| g.reason), Some(GapReason::Unknown));
    }

    #[tokio::test]
    async fn old_events_age_out() {
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        let retention = Retention {
            max_age: Duration::from_millis(20),
            ..Retention::default()
        };
        let bus = MemoryBus::new(retention, usize::MAX, sink, Arc::new(NoOrders));
        let c = ch("a");
        let first = bus.publish(out(&c, None)).await.unwrap().id;
        tokio::time::sleep(Duration::from_millis(40)).await;
        let replay = bus
            .read_after(&c, StreamId::ZERO, usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            replay.gap,
            Some(Gap {
                reason: GapReason::Trimmed,
                resume_from: first
            })
        );
        assert!(replay.entries.is_empty());
    }
}
