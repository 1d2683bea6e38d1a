//! What a node remembers of each channel's retention, so a publish step
//! need not ask Valkey for it: a lower bound of the oldest entry's time
//! (the step reads the stream's head only once that bound falls behind the
//! age horizon), when this node last refreshed the stream's idle expiry,
//! and how long the stream may be (the step measures it, and trims to the
//! length bound, only when that may be due).
//!
//! All stay safe however stale or forgotten they are. Stream ids only
//! grow, and entries leave from the front (or the whole stream goes and a
//! new one starts later), so a bound that was once true of a channel stays
//! a lower bound; at worst a step reads the head once more. An expiry is
//! refreshed by every node that publishes at least every `refresh_every`,
//! and by any step that creates the stream, so a stream expires after
//! between `2 × age - refresh_every` and `2 × age` without a publish.
//!
//! The length is the last measured one plus every event this node has
//! sent since: a node alone on a channel measures whenever the stream may
//! pass the bound, so the stream holds at most `max_len` (plus, for a
//! moment, what batches in flight together add: the count is taken when a
//! batch is sent, a length when it runs). What other nodes add it does not
//! see; every node therefore also measures once it has sent an eighth of
//! the bound since its last measure, and every measure trims to exactly
//! `max_len`. A stream keeps at least its last `max_len` events (trims
//! never go below it) and with several publishing nodes may hold up to
//! about an eighth of the bound more per node until the next measure.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::channel::{Channel, ChannelMap};

/// Past this many channels the memory starts again: forgetting costs one
/// head read, one expiry refresh and one length measure per channel,
/// nothing more.
const MAX_CHANNELS: usize = 65_536;

#[derive(Clone, Copy, Default)]
struct Hint {
    oldest_ms: u64,
    refreshed: Option<Instant>,
    /// Events this node has sent to the channel, ever (counted when sent;
    /// a duplicate adds nothing to the stream, so the count only errs
    /// high).
    sent: u64,
    /// The last measured length and the `sent` count it covers.
    measured: Option<(u64, u64)>,
}

impl Hint {
    /// Whether the step about to run must measure the length: `sent`
    /// already counts its events.
    fn must_measure(&self, max_len: u64, slack: u64) -> bool {
        match self.measured {
            None => true,
            Some((len, at)) => {
                let since = self.sent.saturating_sub(at);
                len.saturating_add(since) > max_len || since > slack
            }
        }
    }
}

/// What a publish step is told about its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct StepHint {
    /// A lower bound of the oldest entry's time (ms); 0 when unknown.
    pub oldest_ms: u64,
    /// Refresh the stream's idle expiry in this step.
    pub refresh_expiry: bool,
    /// Measure the stream's length in this step, trimming to the bound.
    pub measure_len: bool,
    /// The node's `sent` count with this step's events: what a length the
    /// step reports covers.
    pub sent: u64,
}

pub(super) struct Hints {
    refresh_every: Duration,
    max_len: u64,
    /// Events a node adds between measures even when the stream looks
    /// short: the bound on what it may add unseen by the others.
    slack: u64,
    by_channel: Mutex<ChannelMap<Hint>>,
}

impl Hints {
    /// Expiry refreshes every eighth of the age bound: a quiet stream then
    /// lingers at least 1.875 × the age bound (it is set to twice).
    pub fn new(max_age: Duration, max_len: usize) -> Hints {
        let max_len = max_len.max(1) as u64;
        Hints {
            refresh_every: max_age / 8,
            max_len,
            slack: max_len / 8,
            by_channel: Mutex::new(ChannelMap::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ChannelMap<Hint>> {
        self.by_channel.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hints for a batch's channels, in order, given each channel's
    /// count of events in the batch; counts them as sent.
    pub fn steps<'a>(
        &self,
        channels: impl Iterator<Item = (&'a Channel, usize)>,
        now: Instant,
    ) -> Vec<StepHint> {
        let mut map = self.lock();
        channels
            .map(|(c, events)| {
                let hint = match map.get_mut(c) {
                    Some(h) => h,
                    None => fresh(&mut map, c),
                };
                hint.sent = hint.sent.saturating_add(events as u64);
                StepHint {
                    oldest_ms: hint.oldest_ms,
                    refresh_expiry: hint
                        .refreshed
                        .is_none_or(|t| now.saturating_duration_since(t) >= self.refresh_every),
                    measure_len: hint.must_measure(self.max_len, self.slack),
                    sent: hint.sent,
                }
            })
            .collect()
    }

    /// Records what a step reported: its channel's bound, when it
    /// refreshed the expiry, and the length it measured.
    pub fn record(&self, channel: &Channel, step: &StepHint, report: Report) {
        let mut map = self.lock();
        let hint = match map.get_mut(channel) {
            Some(h) => h,
            None => fresh(&mut map, channel),
        };
        // Batches in flight together answer in any order: keep the
        // furthest of each.
        hint.oldest_ms = hint.oldest_ms.max(report.oldest_ms);
        if let Some(t) = report.refreshed {
            hint.refreshed = Some(hint.refreshed.map_or(t, |r| r.max(t)));
        }
        if let Some(len) = report.len {
            // A forgotten hint starts its count again: what the step
            // measured then covers everything counted so far.
            let at = step.sent.min(hint.sent);
            if hint.measured.is_none_or(|(_, seen)| at >= seen) {
                hint.measured = Some((len, at));
            }
        }
    }
}

/// A new hint for a channel the memory does not hold (found by a lookup
/// first: most steps find theirs, without a clone of the name); a full
/// memory starts again.
fn fresh<'m>(map: &'m mut ChannelMap<Hint>, channel: &Channel) -> &'m mut Hint {
    if map.len() >= MAX_CHANNELS {
        map.clear();
    }
    map.entry(channel.clone()).or_default()
}

/// What a step reported for its channel.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Report {
    pub oldest_ms: u64,
    /// When the step refreshed the idle expiry.
    pub refreshed: Option<Instant>,
    /// The length the step left the stream at, when it knew it.
    pub len: Option<u64>,
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

    fn step(hints: &Hints, c: &Channel, events: usize, now: Instant) -> StepHint {
        hints.steps([(c, events)].into_iter(), now)[0]
    }

    fn report(oldest_ms: u64, refreshed: Option<Instant>, len: Option<u64>) -> Report {
        Report {
            oldest_ms,
            refreshed,
            len,
        }
    }

    #[test]
    fn an_unknown_channel_reads_its_head_refreshes_and_measures() {
        let hints = Hints::new(Duration::from_secs(80), 1000);
        let c = channel("a");
        let now = Instant::now();
        let first = step(&hints, &c, 1, now);
        assert_eq!(
            first,
            StepHint {
                oldest_ms: 0,
                refresh_expiry: true,
                measure_len: true,
                sent: 1,
            }
        );
        hints.record(&c, &first, report(1_000, Some(now), Some(1)));
        let s = step(&hints, &c, 1, now + Duration::from_secs(9));
        assert_eq!(s.oldest_ms, 1_000);
        assert!(!s.refresh_expiry, "refreshed 9 s ago, every 10 s");
        assert!(!s.measure_len, "2 of 1000");
        assert!(step(&hints, &c, 1, now + Duration::from_secs(10)).refresh_expiry);
    }

    #[test]
    fn replies_out_of_order_keep_the_furthest() {
        let hints = Hints::new(Duration::from_secs(80), 1000);
        let c = channel("a");
        let now = Instant::now();
        let early = step(&hints, &c, 1, now);
        let late = step(&hints, &c, 1, now);
        hints.record(
            &c,
            &late,
            report(2_000, Some(now + Duration::from_secs(5)), Some(7)),
        );
        hints.record(&c, &early, report(1_000, Some(now), Some(6)));
        hints.record(&c, &early, report(1_500, None, None));
        let s = step(&hints, &c, 1, now + Duration::from_secs(14));
        assert_eq!(s.oldest_ms, 2_000);
        assert!(!s.refresh_expiry);
        assert_eq!(hints.lock()[&c].measured, Some((7, 2)), "the later measure");
    }

    /// Alone on a channel, a node measures exactly when its count says the
    /// stream may pass the bound.
    #[test]
    fn the_length_is_measured_when_it_may_pass_the_bound() {
        let hints = Hints::new(Duration::from_secs(80), 100);
        let c = channel("a");
        let now = Instant::now();
        let first = step(&hints, &c, 10, now);
        assert!(first.measure_len, "nothing known");
        hints.record(&c, &first, report(1, None, Some(90)));
        // 90 + 10 is the bound itself: no trim due.
        let s = step(&hints, &c, 10, now);
        assert!(!s.measure_len);
        let s = step(&hints, &c, 1, now);
        assert!(s.measure_len, "90 + 11 may pass 100");
        hints.record(&c, &s, report(1, None, Some(100)));
        assert!(step(&hints, &c, 1, now).measure_len, "at the bound");
    }

    /// Others' events are not counted: a node measures at least every
    /// eighth of the bound it sends.
    #[test]
    fn the_length_is_measured_every_eighth_of_the_bound() {
        let hints = Hints::new(Duration::from_secs(80), 1000);
        let c = channel("a");
        let now = Instant::now();
        let first = step(&hints, &c, 1, now);
        hints.record(&c, &first, report(1, None, Some(1)));
        let measures = (2..=400)
            .filter(|_| {
                let s = step(&hints, &c, 1, now);
                if s.measure_len {
                    hints.record(&c, &s, report(1, None, Some(1)));
                }
                s.measure_len
            })
            .count();
        assert_eq!(measures, 3, "every 126 events of 400");
    }

    /// A length or count no real stream reaches still only means "measure".
    #[test]
    fn an_absurd_length_asks_for_a_measure() {
        let hints = Hints::new(Duration::from_secs(80), 1000);
        let c = channel("a");
        let now = Instant::now();
        let first = step(&hints, &c, 1, now);
        hints.record(&c, &first, report(1, None, Some(u64::MAX)));
        assert!(step(&hints, &c, usize::MAX, now).measure_len);
        assert!(step(&hints, &c, 1, now).measure_len);
    }

    #[test]
    fn a_full_memory_starts_again() {
        let hints = Hints::new(Duration::from_secs(80), 1000);
        let now = Instant::now();
        let first = channel("c0");
        for i in 0..MAX_CHANNELS {
            let c = channel(&format!("c{i}"));
            let s = step(&hints, &c, 1, now);
            hints.record(&c, &s, report(7, Some(now), Some(1)));
        }
        let s = step(&hints, &first, 1, now);
        assert_eq!(s.oldest_ms, 7);
        assert!(!s.measure_len);
        step(&hints, &channel("one-more"), 1, now);
        assert_eq!(hints.lock().len(), 1);
        let s = step(&hints, &first, 1, now);
        assert_eq!(s.oldest_ms, 0);
        assert!(s.measure_len);
    }
}
