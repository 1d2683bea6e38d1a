//! What a node remembers of each channel's retention, so a publish step
//! need not ask Valkey for it: a lower bound of the oldest entry's time
//! (the step reads the stream's head only once that bound falls behind the
//! age horizon) and when this node last refreshed the stream's idle expiry.
//!
//! Both stay safe however stale or forgotten they are. Stream ids only
//! grow, and entries leave from the front (or the whole stream goes and a
//! new one starts later), so a bound that was once true of a channel stays
//! a lower bound; at worst a step reads the head once more. An expiry is
//! refreshed by every node that publishes at least every `refresh_every`,
//! and by any step that creates the stream, so a stream expires after
//! between `2 × age - refresh_every` and `2 × age` without a publish.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::channel::{Channel, ChannelMap};

/// Past this many channels the memory starts again: forgetting costs one
/// head read and one expiry refresh per channel, nothing more.
const MAX_CHANNELS: usize = 65_536;

#[derive(Clone, Copy, Default)]
struct Hint {
    oldest_ms: u64,
    refreshed: Option<Instant>,
}

/// What a publish step is told about its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct StepHint {
    /// A lower bound of the oldest entry's time (ms); 0 when unknown.
    pub oldest_ms: u64,
    /// Refresh the stream's idle expiry in this step.
    pub refresh_expiry: bool,
}

pub(super) struct Hints {
    refresh_every: Duration,
    by_channel: Mutex<ChannelMap<Hint>>,
}

impl Hints {
    /// Expiry refreshes every eighth of the age bound: a quiet stream then
    /// lingers at least 1.875 × the age bound (it is set to twice).
    pub fn new(max_age: Duration) -> Hints {
        Hints {
            refresh_every: max_age / 8,
            by_channel: Mutex::new(ChannelMap::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ChannelMap<Hint>> {
        self.by_channel.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hints for a batch's channels, in order.
    pub fn steps<'a>(
        &self,
        channels: impl Iterator<Item = &'a Channel>,
        now: Instant,
    ) -> Vec<StepHint> {
        let map = self.lock();
        channels
            .map(|c| match map.get(c) {
                Some(h) => StepHint {
                    oldest_ms: h.oldest_ms,
                    refresh_expiry: h
                        .refreshed
                        .is_none_or(|t| now.saturating_duration_since(t) >= self.refresh_every),
                },
                None => StepHint {
                    oldest_ms: 0,
                    refresh_expiry: true,
                },
            })
            .collect()
    }

    /// Records what a step reported: its channel's bound and, when it
    /// refreshed the expiry, when.
    pub fn record(&self, channel: &Channel, oldest_ms: u64, refreshed: Option<Instant>) {
        let mut map = self.lock();
        if map.len() >= MAX_CHANNELS && !map.contains_key(channel) {
            map.clear();
        }
        let hint = map.entry(channel.clone()).or_default();
        // Batches in flight together answer in any order: keep the
        // furthest of each.
        hint.oldest_ms = hint.oldest_ms.max(oldest_ms);
        if let Some(t) = refreshed {
            hint.refreshed = Some(hint.refreshed.map_or(t, |r| r.max(t)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str) -> Channel {
        Channel::parse(&format!(
            "scans:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:{name}"
        ))
        .unwrap()
    }

    #[test]
    fn an_unknown_channel_reads_its_head_and_refreshes() {
        let hints = Hints::new(Duration::from_secs(80));
        let c = channel("a");
        let now = Instant::now();
        let fresh = StepHint {
            oldest_ms: 0,
            refresh_expiry: true,
        };
        assert_eq!(hints.steps([&c].into_iter(), now), [fresh]);
        hints.record(&c, 1_000, Some(now));
        let step = hints.steps([&c].into_iter(), now + Duration::from_secs(9))[0];
        assert_eq!(step.oldest_ms, 1_000);
        assert!(!step.refresh_expiry, "refreshed 9 s ago, every 10 s");
        assert!(hints.steps([&c].into_iter(), now + Duration::from_secs(10))[0].refresh_expiry);
    }

    #[test]
    fn replies_out_of_order_keep_the_furthest() {
        let hints = Hints::new(Duration::from_secs(80));
        let c = channel("a");
        let now = Instant::now();
        hints.record(&c, 2_000, Some(now + Duration::from_secs(5)));
        hints.record(&c, 1_000, Some(now));
        hints.record(&c, 1_500, None);
        let step = hints.steps([&c].into_iter(), now + Duration::from_secs(14))[0];
        assert_eq!(step.oldest_ms, 2_000);
        assert!(!step.refresh_expiry);
    }

    #[test]
    fn a_full_memory_starts_again() {
        let hints = Hints::new(Duration::from_secs(80));
        let now = Instant::now();
        let first = channel("c0");
        for i in 0..MAX_CHANNELS {
            hints.record(&channel(&format!("c{i}")), 7, Some(now));
        }
        assert_eq!(hints.steps([&first].into_iter(), now)[0].oldest_ms, 7);
        hints.record(&channel("one-more"), 7, Some(now));
        assert_eq!(hints.lock().len(), 1);
        assert_eq!(hints.steps([&first].into_iter(), now)[0].oldest_ms, 0);
    }
}
