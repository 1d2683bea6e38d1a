//! Node-local fan-out: one broadcast slot per watched channel, shared by all
//! of this node's listeners of that channel.
//!
//! The bus hands each live event to [`Fanout`] once; it is encoded as SSE
//! bytes once and every listener gets a reference to the same bytes.

mod subscription;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OnceCell, broadcast};

use crate::bus::{Bus, BusError, Entry, Gap, Sink};
use crate::channel::{Channel, ChannelMap};
use crate::cursor::StreamId;
use crate::revocation::Revocation;
use crate::streams::Streams;
use crate::wire;

pub use subscription::{Item, Subscription};

/// An event encoded once as an SSE frame.
#[derive(Debug)]
pub struct Frame {
    pub id: StreamId,
    /// `id: <id>\nevent: <name>\ndata: <json>\n\n`
    bytes: bytes::Bytes,
    /// Where `event:` starts in `bytes`.
    body_at: usize,
}

impl Frame {
    pub fn encode(entry: &Entry) -> Frame {
        // 41 bytes: the longest `<ms>-<seq>`, two u64s and a hyphen.
        let mut buf = Vec::with_capacity(41 + entry.event.len() + entry.data.len() + 24);
        wire::put_stream_id(&mut buf, entry.id);
        let body_at = buf.len();
        wire::put_event(&mut buf, &entry.event);
        wire::put_data_and_end(&mut buf, &entry.data);
        Frame {
            id: entry.id,
            bytes: buf.into(),
            body_at,
        }
    }

    /// The whole frame with the channel's own id (one-channel streams).
    pub fn with_own_id(&self) -> bytes::Bytes {
        self.bytes.clone()
    }

    /// The frame without its `id:` line, for streams that send their own
    /// cursor.
    pub fn body(&self) -> bytes::Bytes {
        self.bytes.slice(self.body_at..)
    }
}

/// What a channel's slot broadcasts to its listeners.
#[derive(Debug, Clone)]
pub enum Delivery {
    Frame(Arc<Frame>),
    /// Check the position against history: the node may have missed events.
    Resync,
}

/// The node's recent frames of one channel: what lagging listeners catch
/// up from without going to the bus (one copy per node, not one read per
/// listener). It holds every frame the node delivered after `floor`.
#[derive(Default)]
struct Recent {
    frames: VecDeque<Arc<Frame>>,
    bytes: usize,
    /// Positions at or after this are covered; `None` until the first frame
    /// and after a resync.
    floor: Option<StreamId>,
}

/// Bounds of each channel's recent-frame cache.
const RECENT_MAX_BYTES: usize = 4 << 20;

impl Recent {
    fn push(&mut self, frame: Arc<Frame>, max_frames: usize) {
        self.floor.get_or_insert(frame.id);
        self.bytes += frame.bytes.len();
        self.frames.push_back(frame);
        self.evict(max_frames);
    }

    /// Drops the oldest frames beyond the bounds; the floor follows them.
    fn evict(&mut self, max_frames: usize) {
        while self.frames.len() > max_frames || self.bytes > RECENT_MAX_BYTES {
            match self.frames.pop_front() {
                Some(old) => {
                    self.bytes -= old.bytes.len();
                    self.floor = Some(old.id);
                }
                None => break,
            }
        }
    }

    /// Adds the frames history returned after `position` (oldest first),
    /// when they reach what the cache holds, so the cache then covers
    /// `position` too.
    fn backfill(&mut self, position: StreamId, older: Vec<Arc<Frame>>, max_frames: usize) {
        let reaches = match (self.floor, older.last()) {
            (None, _) => true,
            (Some(floor), Some(last)) => last.id >= floor,
            (Some(_), None) => false,
        };
        if !reaches {
            return;
        }
        let newest_older = older.last().map(|f| f.id);
        let newer: Vec<Arc<Frame>> = self
            .frames
            .drain(..)
            .filter(|f| newest_older.is_none_or(|n| f.id > n))
            .collect();
        *self = Recent {
            floor: Some(position),
            ..Recent::default()
        };
        for frame in older.into_iter().chain(newer) {
            self.bytes += frame.bytes.len();
            self.frames.push_back(frame);
        }
        self.evict(max_frames);
    }

    fn after(&self, position: StreamId) -> Option<Vec<Arc<Frame>>> {
        if position < self.floor? {
            return None;
        }
        let start = self.frames.partition_point(|f| f.id <= position);
        Some(self.frames.range(start..).cloned().collect())
    }
}

struct Slot {
    tx: broadcast::Sender<Delivery>,
    recent: Recent,
    listeners: usize,
    /// Set once the bus delivers this channel to the node.
    watched: Arc<OnceCell<()>>,
    /// The channel's newest position this node has seen: where a stream
    /// that starts live begins, without asking the bus. `None` until the
    /// watch started, and after a resync (the node may have missed events).
    live: Option<StreamId>,
    /// One history read per channel at a time: listeners that fell behind
    /// together wait for one read instead of each sending its own.
    reading: Arc<tokio::sync::Mutex<()>>,
}

/// The channel → slot table; the bus's sink on this node.
pub struct Fanout {
    slots: Mutex<ChannelMap<Slot>>,
    capacity: usize,
    recent_frames: usize,
    /// The node's open streams, which revocation orders close.
    streams: Arc<Streams>,
}

impl Fanout {
    /// `capacity` bounds how many events a listener may fall behind before
    /// it is caught up, from the node's recent frames (16 × `capacity`, at
    /// most 4 MiB per channel) or else from history.
    pub fn new(capacity: usize, streams: Arc<Streams>) -> Arc<Fanout> {
        Arc::new(Fanout {
            slots: Mutex::new(ChannelMap::default()),
            capacity: capacity.max(1),
            recent_frames: capacity.max(1) * 16,
            streams,
        })
    }

    fn lock(&self) -> MutexGuard<'_, ChannelMap<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Sink for Fanout {
    fn deliver(&self, channel: &Channel, entry: Entry) {
        let frame = Arc::new(Frame::encode(&entry));
        let mut slots = self.lock();
        let Some(slot) = slots.get_mut(channel) else {
            return;
        };
        slot.recent.push(frame.clone(), self.recent_frames);
        slot.live = slot.live.max(Some(frame.id));
        // Sent under the lock so the cache and the broadcast agree on
        // order. No receivers left is not an error: the last listener just
        // went.
        let _ = slot.tx.send(Delivery::Frame(frame));
    }

    fn resync(&self, channel: &Channel) {
        let mut slots = self.lock();
        let Some(slot) = slots.get_mut(channel) else {
            return;
        };
        // The node may have missed events: its cache no longer covers
        // anything, so listeners check against the bus.
        slot.recent = Recent::default();
        slot.live = None;
        let _ = slot.tx.send(Delivery::Resync);
    }

    fn revoke(&self, order: &Revocation) {
        let closed = self.streams.revoke(order);
        tracing::info!(closed, reason = %order.reason, "revocation order applied");
        metrics::counter!(crate::metrics::STREAMS_REVOKED).increment(closed as u64);
    }
}

/// What a lagging listener catches up with.
pub struct CatchUp {
    /// Set when history cannot cover the position; the frames then follow
    /// `gap.resume_from`.
    pub gap: Option<Gap>,
    pub frames: Vec<Arc<Frame>>,
}

impl CatchUp {
    fn cached(frames: Vec<Arc<Frame>>) -> CatchUp {
        metrics::counter!(crate::metrics::CATCH_UPS, "source" => "cache").increment(1);
        CatchUp { gap: None, frames }
    }
}

/// The node's hub: local listeners over the shared bus.
#[derive(Clone)]
pub struct Hub {
    bus: Arc<dyn Bus>,
    fanout: Arc<Fanout>,
}

/// One local listener of one channel; leaving is dropping it.
pub struct Listener {
    channel: Channel,
    hub: Hub,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let mut slots = self.hub.fanout.lock();
        let last = match slots.get_mut(&self.channel) {
            Some(slot) => {
                slot.listeners -= 1;
                slot.listeners == 0
            }
            None => false,
        };
        if last {
            let watched = slots
                .remove(&self.channel)
                .is_some_and(|slot| slot.watched.initialized());
            metrics::gauge!(crate::metrics::CHANNELS_WATCHED).set(slots.len() as f64);
            drop(slots);
            if !watched {
                return;
            }
            let bus = self.hub.bus.clone();
            let channel = self.channel.clone();
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

    /// The node's open streams.
    pub fn streams(&self) -> &Arc<Streams> {
        &self.fanout.streams
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

    /// The frames after `position` from the node's cache, when it covers
    /// that position.
    pub fn recent_after(&self, channel: &Channel, position: StreamId) -> Option<Vec<Arc<Frame>>> {
        self.fanout.lock().get(channel)?.recent.after(position)
    }

    /// What follows `position` in the channel: from the node's recent
    /// frames when they cover it, else from the bus's history — one read per
    /// channel at a time, whose frames then serve the others waiting.
    pub async fn catch_up(
        &self,
        channel: &Channel,
        position: StreamId,
    ) -> Result<CatchUp, BusError> {
        let reading = {
            let slots = self.fanout.lock();
            match slots.get(channel) {
                Some(slot) => match slot.recent.after(position) {
                    Some(frames) => return Ok(CatchUp::cached(frames)),
                    None => Some(slot.reading.clone()),
                },
                None => None,
            }
        };
        let Some(reading) = reading else {
            return self.read_history(channel, position).await;
        };
        let _one_at_a_time = reading.lock().await;
        if let Some(frames) = self.recent_after(channel, position) {
            return Ok(CatchUp::cached(frames));
        }
        let read = self.read_history(channel, position).await?;
        if read.gap.is_none() {
            if let Some(slot) = self.fanout.lock().get_mut(channel) {
                slot.recent
                    .backfill(position, read.frames.clone(), self.fanout.recent_frames);
            }
        }
        Ok(read)
    }

    async fn read_history(
        &self,
        channel: &Channel,
        position: StreamId,
    ) -> Result<CatchUp, BusError> {
        metrics::counter!(crate::metrics::CATCH_UPS, "source" => "bus").increment(1);
        let history = self.bus.read_after(channel, position).await?;
        let from = history.gap.map_or(position, |g| g.resume_from);
        Ok(CatchUp {
            gap: history.gap,
            frames: history
                .entries
                .iter()
                .filter(|e| e.id > from)
                .map(|e| Arc::new(Frame::encode(e)))
                .collect(),
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
            let slot = slots.entry(channel.clone()).or_insert_with(|| Slot {
                tx: broadcast::channel(self.fanout.capacity).0,
                recent: Recent::default(),
                listeners: 0,
                watched: Arc::new(OnceCell::new()),
                live: None,
                reading: Arc::new(tokio::sync::Mutex::new(())),
            });
            slot.listeners += 1;
            let pair = (slot.tx.subscribe(), slot.watched.clone());
            metrics::gauge!(crate::metrics::CHANNELS_WATCHED).set(slots.len() as f64);
            pair
        };
        // From here on the listener is counted, so dropping it on error
        // releases the slot.
        let listener = Listener {
            channel: channel.clone(),
            hub: self.clone(),
        };
        watched
            .get_or_try_init(|| async {
                let head = self.bus.watch(channel).await?;
                if let Some(slot) = self.fanout.lock().get_mut(channel) {
                    slot.live = slot.live.max(Some(head));
                }
                Ok::<(), BusError>(())
            })
            .await?;
        Ok((listener, rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ms: u64) -> Arc<Frame> {
        Arc::new(Frame::encode(&Entry {
            id: StreamId::new(ms, 0),
            event: "a.b".into(),
            data: "{}".into(),
        }))
    }

    fn ids(frames: Option<Vec<Arc<Frame>>>) -> Option<Vec<u64>> {
        frames.map(|f| f.iter().map(|f| f.id.ms).collect())
    }

    #[test]
    fn recent_frames_cover_only_positions_since_their_floor() {
        let mut r = Recent::default();
        assert_eq!(ids(r.after(StreamId::ZERO)), None, "empty covers nothing");
        for ms in 10..15 {
            r.push(frame(ms), 3);
        }
        // Kept 12, 13, 14; 11 was evicted last, so positions >= 11 are covered.
        assert_eq!(ids(r.after(StreamId::new(11, 0))), Some(vec![12, 13, 14]));
        assert_eq!(ids(r.after(StreamId::new(13, 0))), Some(vec![14]));
        assert_eq!(ids(r.after(StreamId::new(14, 0))), Some(vec![]));
        assert_eq!(
            ids(r.after(StreamId::new(10, 5))),
            None,
            "12's predecessor unknown"
        );
        // History frames that reach the floor extend the cache backwards.
        let mut back = Recent::default();
        back.push(frame(20), 10);
        back.push(frame(21), 10);
        back.backfill(
            StreamId::new(15, 0),
            vec![frame(18), frame(19), frame(20)],
            10,
        );
        assert_eq!(
            ids(back.after(StreamId::new(15, 0))),
            Some(vec![18, 19, 20, 21])
        );
        // History that stops short of the floor leaves the cache alone.
        back.backfill(StreamId::new(1, 0), vec![frame(2)], 10);
        assert_eq!(ids(back.after(StreamId::new(1, 0))), None);
        let mut first = Recent::default();
        first.push(frame(7), 3);
        assert_eq!(ids(first.after(StreamId::new(7, 0))), Some(vec![]));
        assert_eq!(ids(first.after(StreamId::new(6, 0))), None);
    }
}
