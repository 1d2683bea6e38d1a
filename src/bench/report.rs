//! What a run prints: one JSON object per run, whose keys `scripts/bench`
//! and `docs/benchmarks.md` read. Typed, so a scenario cannot misspell one.

use serde::Serialize;

use super::args::{BenchArgs, Scenario};

/// The figures of one run under the header every run shares.
#[derive(Serialize)]
pub(super) struct Report<F> {
    pub(super) scenario: Scenario,
    pub(super) bus: &'static str,
    #[serde(flatten)]
    pub(super) figures: F,
}

/// The load a bridge scenario was run with.
#[derive(Serialize)]
pub(super) struct Load {
    pub(super) subscribers: usize,
    pub(super) events: usize,
    pub(super) payload_bytes: usize,
}

impl Load {
    pub(super) fn of(args: &BenchArgs) -> Self {
        Self {
            subscribers: args.subscribers,
            events: args.events,
            payload_bytes: args.payload,
        }
    }
}

/// What the subscribers received.
#[derive(Serialize)]
pub(super) struct Deliveries {
    pub(super) deliveries: u64,
    pub(super) lost: u64,
    pub(super) deliveries_per_sec: f64,
    pub(super) latency_ms: Latency,
}

/// Publish-to-read latency percentiles, in ms.
#[derive(Serialize, Debug, PartialEq)]
pub(super) struct Latency {
    pub(super) p50: f64,
    pub(super) p90: f64,
    pub(super) p99: f64,
    pub(super) max: f64,
}

impl Latency {
    /// From samples in µs, sorted ascending.
    pub(super) fn of(sorted_us: &[u64]) -> Self {
        let at = |p: f64| {
            if sorted_us.is_empty() {
                return 0.0;
            }
            let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
            sorted_us[i] as f64 / 1000.0
        };
        Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_pick_the_nearest_rank_in_ms() {
        let us: Vec<u64> = (1..=101).map(|i| i * 1000).collect();
        assert_eq!(
            Latency::of(&us),
            Latency {
                p50: 51.0,
                p90: 91.0,
                p99: 100.0,
                max: 101.0
            }
        );
        assert_eq!(Latency::of(&[]).max, 0.0);
    }

    #[test]
    fn the_header_and_figures_make_one_flat_object() {
        #[derive(Serialize)]
        struct Figures {
            #[serde(flatten)]
            load: Load,
            resume_ms: f64,
        }
        let report = Report {
            scenario: Scenario::Resume,
            bus: "embedded",
            figures: Figures {
                load: Load {
                    subscribers: 1,
                    events: 2,
                    payload_bytes: 3,
                },
                resume_ms: 4.5,
            },
        };
        let json = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({
                "scenario": "resume", "bus": "embedded", "subscribers": 1,
                "events": 2, "payload_bytes": 3, "resume_ms": 4.5,
            })
        );
    }
}
