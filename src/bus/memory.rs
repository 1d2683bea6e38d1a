//! The embedded bus: one node, history in memory.
//!
//! Every channel's history is a bounded deque; publishing assigns the id,
//! stores the entry and hands it to the sink under one lock, so delivery
//! order is id order and a reader of history plus live events sees no gap.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::{Bus, BusError, Entry, Gap, GapReason, Outgoing, Published, Replay, Retention, Sink};
use crate::channel::{Channel, ChannelMap};
use crate::cursor::StreamId;
use crate::revocation::Revocation;

#[derive(Default)]
struct ChannelState {
    entries: VecDeque<(Instant, Entry)>,
    /// Newest id ever assigned; ids only grow.
    last: StreamId,
    /// Newest id dropped from history; a reader before it has missed events.
    trimmed_through: StreamId,
    keys: HashMap<String, StreamId>,
    key_expiry: VecDeque<(Instant, String)>,
}

impl ChannelState {
    fn trim(&mut self, retention: &Retention, now: Instant) {
        while self.entries.len() > retention.max_len
            || self
                .entries
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > retention.max_age)
        {
            if let Some((_, e)) = self.entries.pop_front() {
                self.trimmed_through = e.id;
            }
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

/// The embedded, single-node bus.
pub struct MemoryBus {
    retention: Retention,
    channels: Mutex<ChannelMap<ChannelState>>,
    sink: Arc<dyn Sink>,
    publishes: std::sync::atomic::AtomicU32,
}

impl MemoryBus {
    pub fn new(retention: Retention, sink: Arc<dyn Sink>) -> MemoryBus {
        MemoryBus {
            retention,
            channels: Mutex::new(ChannelMap::default()),
            sink,
            publishes: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Forgets channels with nothing retained, so memory follows live
    /// channels rather than every channel ever used. A later resume with a
    /// cursor of a forgotten channel gets `bridge.reset` (unknown position),
    /// never a silent gap.
    fn sweep(channels: &mut ChannelMap<ChannelState>, retention: &Retention, now: Instant) {
        channels.retain(|_, state| {
            state.trim(retention, now);
            !state.entries.is_empty() || !state.keys.is_empty()
        });
    }

    fn lock(&self) -> MutexGuard<'_, ChannelMap<ChannelState>> {
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
            Self::sweep(&mut channels, &self.retention, now);
        }
        let state = channels.entry(event.channel.clone()).or_default();
        state.trim(&self.retention, now);
        if let Some(key) = &event.idempotency_key {
            if let Some(&id) = state.keys.get(key) {
                return Ok(Published {
                    id,
                    duplicate: true,
                });
            }
        }
        let id = state.next_id();
        let entry = Entry {
            id,
            event: event.event,
            data: event.data,
        };
        state.entries.push_back((now, entry.clone()));
        if let Some(key) = event.idempotency_key {
            state.keys.insert(key.clone(), id);
            state.key_expiry.push_back((now, key));
        }
        state.trim(&self.retention, now);
        self.sink.deliver(&event.channel, entry);
        Ok(Published {
            id,
            duplicate: false,
        })
    }

    async fn head(&self, channel: &Channel) -> Result<StreamId, BusError> {
        Ok(self.lock().get(channel).map(|s| s.last).unwrap_or_default())
    }

    async fn read_after(&self, channel: &Channel, after: StreamId) -> Result<Replay, BusError> {
        let now = Instant::now();
        let mut channels = self.lock();
        let Some(state) = channels.get_mut(channel) else {
            return Ok(Replay {
                gap: (after != StreamId::ZERO).then_some(Gap {
                    reason: GapReason::Unknown,
                    resume_from: StreamId::ZERO,
                }),
                entries: Vec::new(),
            });
        };
        state.trim(&self.retention, now);
        if after > state.last {
            return Ok(Replay {
                gap: Some(Gap {
                    reason: GapReason::Unknown,
                    resume_from: state.last,
                }),
                entries: Vec::new(),
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
        Ok(Replay {
            gap,
            entries: state
                .entries
                .range(start..)
                .map(|(_, e)| e.clone())
                .collect(),
        })
    }

    async fn watch(&self, channel: &Channel) -> Result<StreamId, BusError> {
        // The sink sees every publish on this node already.
        self.head(channel).await
    }

    async fn unwatch(&self, _channel: &Channel) -> Result<(), BusError> {
        Ok(())
    }

    async fn revoke(&self, order: &Revocation) -> Result<u64, BusError> {
        self.sink.revoke(order);
        Ok(1)
    }

    async fn ready(&self) -> bool {
        true
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
        fn revoke(&self, _order: &Revocation) {}
    }

    fn ch(r: &str) -> Channel {
        Channel::parse(&format!("t:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:{r}")).unwrap()
    }

    fn out(c: &Channel, key: Option<&str>) -> Outgoing {
        Outgoing {
            channel: c.clone(),
            event: "a.b".into(),
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
        let bus = MemoryBus::new(retention, sink.clone());
        let c = ch("a");
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(bus.publish(out(&c, None)).await.unwrap().id);
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(bus.head(&c).await.unwrap(), ids[4]);
        let ids_of = |r: &Replay| r.entries.iter().map(|e| e.id).collect::<Vec<_>>();
        let covered = bus.read_after(&c, ids[1]).await.unwrap();
        assert_eq!((covered.gap, ids_of(&covered)), (None, ids[2..].to_vec()));
        // ids[0] is covered by nothing: ids[1] was trimmed.
        let trimmed = bus.read_after(&c, ids[0]).await.unwrap();
        assert_eq!(
            trimmed.gap,
            Some(Gap {
                reason: GapReason::Trimmed,
                resume_from: ids[1]
            })
        );
        assert_eq!(ids_of(&trimmed), ids[2..].to_vec());
        let future = StreamId::new(ids[4].ms + 1, 0);
        let unknown = bus.read_after(&c, future).await.unwrap();
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
        let bus = MemoryBus::new(retention, sink);
        let old = ch("old");
        let id = bus.publish(out(&old, Some("k"))).await.unwrap().id;
        tokio::time::sleep(Duration::from_millis(30)).await;
        for _ in 0..SWEEP_EVERY {
            bus.publish(out(&ch("busy"), None)).await.unwrap();
        }
        assert!(!bus.lock().contains_key(&old));
        // Resuming from the forgotten channel is a reset, not a silent gap.
        let replay = bus.read_after(&old, id).await.unwrap();
        assert_eq!(replay.gap.map(|g| g.reason), Some(GapReason::Unknown));
    }

    #[tokio::test]
    async fn old_events_age_out() {
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        let retention = Retention {
            max_age: Duration::from_millis(20),
            ..Retention::default()
        };
        let bus = MemoryBus::new(retention, sink);
        let c = ch("a");
        let first = bus.publish(out(&c, None)).await.unwrap().id;
        tokio::time::sleep(Duration::from_millis(40)).await;
        let replay = bus.read_after(&c, StreamId::ZERO).await.unwrap();
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
