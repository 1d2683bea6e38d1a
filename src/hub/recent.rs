//! A node's recent frames of one channel, and the node-wide account that
//! keeps all channels' caches within one budget (oldest frames first).

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use super::frame::Frame;
use crate::channel::Channel;
use crate::cursor::StreamId;

/// The node's recent frames of one channel: what lagging listeners catch
/// up from without going to the bus (one copy per node, not one read per
/// listener). It holds every frame the node delivered after `floor`.
#[derive(Default)]
pub(super) struct Recent {
    frames: VecDeque<Arc<Frame>>,
    bytes: usize,
    /// Positions at or after this are covered; `None` until the first frame
    /// and after a resync.
    floor: Option<StreamId>,
}

/// Bounds of each channel's recent-frame cache.
const RECENT_MAX_BYTES: usize = 4 << 20;

impl Recent {
    pub(super) fn push(&mut self, frame: Arc<Frame>, max_frames: usize) {
        self.floor.get_or_insert(frame.id);
        self.bytes += frame.len();
        self.frames.push_back(frame);
        self.evict(max_frames);
    }

    /// The id of the oldest frame held.
    pub(super) fn oldest(&self) -> Option<StreamId> {
        self.frames.front().map(|f| f.id)
    }

    /// Drops the oldest frame; the floor follows it.
    pub(super) fn pop_oldest(&mut self) {
        if let Some(old) = self.frames.pop_front() {
            self.bytes -= old.len();
            self.floor = Some(old.id);
        }
    }

    /// Drops the oldest frames beyond the bounds.
    fn evict(&mut self, max_frames: usize) {
        while !self.frames.is_empty()
            && (self.frames.len() > max_frames || self.bytes > RECENT_MAX_BYTES)
        {
            self.pop_oldest();
        }
    }

    /// Adds a page of the frames history returned after `position` (oldest
    /// first), when they reach what the cache holds, so the cache then
    /// covers `position` too.
    pub(super) fn backfill(&mut self, position: StreamId, older: Page, max_frames: usize) {
        let Page {
            frames: older,
            more,
        } = older;
        let reaches = match (self.floor, older.last()) {
            // An empty cache is covered from `position` on only by a page
            // that reached the channel's end.
            (None, _) => !more,
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
            self.bytes += frame.len();
            self.frames.push_back(frame);
        }
        self.evict(max_frames);
    }

    /// The frames after `position`, one page of them, when the cache covers
    /// that position.
    pub(super) fn after(&self, position: StreamId, page_bytes: usize) -> Option<Page> {
        if position < self.floor? {
            return None;
        }
        let start = self.frames.partition_point(|f| f.id <= position);
        let mut page = Page::default();
        let mut bytes = 0;
        for frame in self.frames.range(start..) {
            if !page.frames.is_empty() && bytes + frame.len() > page_bytes {
                page.more = true;
                break;
            }
            bytes += frame.len();
            page.frames.push(frame.clone());
        }
        Some(page)
    }
}

/// Frames of one channel in id order, as many as a page holds.
#[derive(Default)]
pub struct Page {
    pub frames: Vec<Arc<Frame>>,
    /// More follow the last frame: the page was full.
    pub more: bool,
}

/// Changes `recent`, the cache of `channel`, and brings the node-wide
/// account (`bytes`, `oldest`) up to date: apart from `Slots::recent` so
/// that a caller already holding the slot need not look it up again.
pub(super) fn account<R>(
    bytes: &mut usize,
    oldest: Option<&mut BTreeSet<(StreamId, Channel)>>,
    channel: &Channel,
    recent: &mut Recent,
    change: impl FnOnce(&mut Recent) -> R,
) -> R {
    let (was_oldest, was_bytes) = (recent.oldest(), recent.bytes);
    let out = change(recent);
    let now_oldest = recent.oldest();
    *bytes = *bytes - was_bytes + recent.bytes;
    let Some(oldest) = oldest else {
        return out;
    };
    if was_oldest != now_oldest {
        if let Some(id) = was_oldest {
            oldest.remove(&(id, channel.clone()));
        }
        if let Some(id) = now_oldest {
            oldest.insert((id, channel.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ms: u64) -> Arc<Frame> {
        Arc::new(Frame::test(ms))
    }

    fn page(frames: Vec<Arc<Frame>>, more: bool) -> Page {
        Page { frames, more }
    }

    fn ids(page: Option<Page>) -> Option<Vec<u64>> {
        page.map(|p| p.frames.iter().map(|f| f.id.ms).collect())
    }

    #[test]
    fn recent_frames_cover_only_positions_since_their_floor() {
        let mut r = Recent::default();
        assert_eq!(
            ids(r.after(StreamId::ZERO, usize::MAX)),
            None,
            "empty covers nothing"
        );
        for ms in 10..15 {
            r.push(frame(ms), 3);
        }
        // Kept 12, 13, 14; 11 was evicted last, so positions >= 11 are covered.
        assert_eq!(
            ids(r.after(StreamId::new(11, 0), usize::MAX)),
            Some(vec![12, 13, 14])
        );
        assert_eq!(
            ids(r.after(StreamId::new(13, 0), usize::MAX)),
            Some(vec![14])
        );
        assert_eq!(ids(r.after(StreamId::new(14, 0), usize::MAX)), Some(vec![]));
        assert_eq!(
            ids(r.after(StreamId::new(10, 5), usize::MAX)),
            None,
            "12's predecessor unknown"
        );
        // History frames that reach the floor extend the cache backwards.
        let mut back = Recent::default();
        back.push(frame(20), 10);
        back.push(frame(21), 10);
        back.backfill(
            StreamId::new(15, 0),
            page(vec![frame(18), frame(19), frame(20)], false),
            10,
        );
        assert_eq!(
            ids(back.after(StreamId::new(15, 0), usize::MAX)),
            Some(vec![18, 19, 20, 21])
        );
        // History that stops short of the floor leaves the cache alone.
        back.backfill(StreamId::new(1, 0), page(vec![frame(2)], false), 10);
        assert_eq!(ids(back.after(StreamId::new(1, 0), usize::MAX)), None);
        // An empty cache takes a page only when it reached the channel's
        // end: otherwise it would claim to cover what the page left out.
        let mut empty = Recent::default();
        empty.backfill(StreamId::new(1, 0), page(vec![frame(2)], true), 10);
        assert_eq!(ids(empty.after(StreamId::new(2, 0), usize::MAX)), None);
        empty.backfill(StreamId::new(1, 0), page(vec![frame(2)], false), 10);
        assert_eq!(
            ids(empty.after(StreamId::new(1, 0), usize::MAX)),
            Some(vec![2])
        );
        let mut first = Recent::default();
        first.push(frame(7), 3);
        assert_eq!(
            ids(first.after(StreamId::new(7, 0), usize::MAX)),
            Some(vec![])
        );
        assert_eq!(ids(first.after(StreamId::new(6, 0), usize::MAX)), None);
    }

    #[test]
    fn cached_frames_come_a_page_at_a_time() {
        let mut r = Recent::default();
        for ms in 10..20 {
            r.push(frame(ms), 100);
        }
        let size = frame(11).len();
        let first = r.after(StreamId::new(10, 0), 3 * size).expect("covered");
        assert_eq!(first.frames.len(), 3);
        assert!(first.more);
        let rest = r.after(StreamId::new(13, 0), 100 * size).expect("covered");
        assert_eq!(rest.frames.len(), 6);
        assert!(!rest.more);
        // A page always holds at least one frame, however small the bound.
        assert_eq!(
            r.after(StreamId::new(10, 0), 1)
                .expect("covered")
                .frames
                .len(),
            1
        );
    }
}
