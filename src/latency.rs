//! Publish → SSE-write latency, per event name: how long after the bus
//! stamped an event its frame was handed to each live stream.
//!
//! The bus's id is the publish time (`<ms>-<seq>`), so nothing travels
//! with the event: the stream subtracts the id's milliseconds from the
//! clock when it writes the frame. Resolution is a millisecond; on Valkey
//! the id is the Valkey server's clock, so skew between hosts shows here.
//!
//! Not the `metrics` crate's histogram: its recorder keeps every sample
//! (8 bytes) until the next fold, and a fan-out writes millions of frames a
//! second. These are fixed buckets of atomics, rendered into `/metrics`
//! beside the recorder's text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use crate::cursor::StreamId;
use crate::schema::EventName;

/// The metric's name.
pub const NAME: &str = "sse_bridge_delivery_latency_seconds";

/// Upper bounds of the buckets, in milliseconds (`le`, inclusive).
const BOUNDS_MS: [u64; 14] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000,
];

/// One event name's histogram.
#[derive(Debug, Default)]
pub struct Latency {
    /// Samples per bucket (not cumulative); the last is `+Inf`.
    counts: [AtomicU64; BOUNDS_MS.len() + 1],
    sum_ms: AtomicU64,
}

impl Latency {
    /// Records one frame of `id` written now.
    pub fn record(&self, id: StreamId) {
        self.record_ms(now_ms().saturating_sub(id.ms));
    }

    fn record_ms(&self, ms: u64) {
        let i = BOUNDS_MS.partition_point(|&b| b < ms);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    fn render(&self, event: &str, out: &mut String) {
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = match BOUNDS_MS.get(i) {
                Some(&ms) => format!("{}", ms as f64 / 1000.0),
                None => "+Inf".to_owned(),
            };
            let _ = writeln!(
                out,
                "{NAME}_bucket{{event=\"{event}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        let _ = writeln!(out, "{NAME}_sum{{event=\"{event}\"}} {sum}");
        let _ = writeln!(out, "{NAME}_count{{event=\"{event}\"}} {cumulative}");
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The process's histograms by event name. Event names come from the
/// catalogue (or, on Valkey, from the bus, which carries only names a
/// catalogue issued), so the table stays as small as the catalogue, and a
/// scan comparing pointers first beats hashing the name.
type Table = RwLock<Vec<(EventName, Arc<Latency>)>>;

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

fn find(table: &[(EventName, Arc<Latency>)], event: &EventName) -> Option<Arc<Latency>> {
    table
        .iter()
        .find(|(name, _)| EventName::same(name, event))
        .or_else(|| table.iter().find(|(name, _)| name == event))
        .map(|(_, latency)| latency.clone())
}

/// The histogram of `event`, made on first use. Looked up once per frame
/// encoded, not per write.
pub fn of(event: &EventName) -> Arc<Latency> {
    if let Some(found) = find(&table().read().unwrap_or_else(|p| p.into_inner()), event) {
        return found;
    }
    let mut table = table().write().unwrap_or_else(|p| p.into_inner());
    find(&table, event).unwrap_or_else(|| {
        let latency = Arc::new(Latency::default());
        table.push((event.clone(), latency.clone()));
        latency
    })
}

/// Appends every histogram in the Prometheus text format.
pub fn render(out: &mut String) {
    let table = table().read().unwrap_or_else(|p| p.into_inner());
    if table.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP {NAME} Time from the bus accepting an event to its frame being written to a live stream."
    );
    let _ = writeln!(out, "# TYPE {NAME} histogram");
    let mut names: Vec<_> = table.iter().collect();
    names.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    for (event, latency) in names {
        latency.render(event, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_the_first_bucket_that_holds_them() {
        let l = Latency::default();
        for ms in [0, 1, 2, 3, 40_000] {
            l.record_ms(ms);
        }
        let mut out = String::new();
        l.render("a.b", &mut out);
        let line = |le: &str| {
            out.lines()
                .find(|l| l.contains(&format!("le=\"{le}\"")))
                .unwrap_or_else(|| panic!("no le={le} in {out}"))
                .rsplit(' ')
                .next()
                .expect("a value")
                .to_owned()
        };
        // 0 and 1 ms are at most 1 ms; 2 adds one; 3 waits for 5 ms.
        assert_eq!(line("0.001"), "2");
        assert_eq!(line("0.002"), "3");
        assert_eq!(line("0.005"), "4");
        assert_eq!(line("30"), "4");
        assert_eq!(line("+Inf"), "5");
        assert!(out.contains(&format!("{NAME}_count{{event=\"a.b\"}} 5")));
        assert!(out.contains(&format!("{NAME}_sum{{event=\"a.b\"}} 40.006")));
    }

    #[test]
    fn one_histogram_per_name() {
        let name = |n: &str| EventName::published(n).expect("a name");
        // Two allocations of one name still share a histogram.
        assert!(Arc::ptr_eq(
            &of(&name("test.same")),
            &of(&name("test.same"))
        ));
        assert!(!Arc::ptr_eq(
            &of(&name("test.same")),
            &of(&name("test.other"))
        ));
    }
}
