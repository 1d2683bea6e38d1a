//! Per-publisher rate limits: a token bucket per key (the publisher
//! token's `sub`), refilled continuously.
//!
//! Limits count this node's publishes; a producer spread over N nodes gets
//! up to N times the rate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before full (idle) ones are forgotten.
const PRUNE_ABOVE: usize = 10_000;

/// Events per second and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: f64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Keyed token buckets.
pub struct RateLimiter {
    rate: Rate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Over the limit; the next event is accepted after this wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

impl RateLimiter {
    pub fn new(rate: Rate) -> RateLimiter {
        RateLimiter {
            rate: Rate {
                per_sec: rate.per_sec.max(f64::MIN_POSITIVE),
                burst: rate.burst.max(1.0),
            },
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes one event's token for `key`.
    pub fn take(&self, key: &str) -> Result<(), Throttled> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &str, now: Instant) -> Result<(), Throttled> {
        let Rate { per_sec, burst } = self.rate;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec < burst
            });
        }
        let bucket = match buckets.get_mut(key) {
            Some(b) => b,
            None => buckets.entry(key.to_owned()).or_insert(Bucket {
                tokens: burst,
                at: now,
            }),
        };
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * per_sec;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / per_sec;
            Err(Throttled {
                retry_after: Duration::from_secs_f64(wait),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(Rate {
            per_sec: 10.0,
            burst: 3.0,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take_at("a", t0), Ok(()));
        }
        let refused = limiter.take_at("a", t0).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        assert_eq!(limiter.take_at("b", t0), Ok(()), "keys are separate");
        assert_eq!(
            limiter.take_at("a", t0 + Duration::from_millis(100)),
            Ok(())
        );
        assert!(
            limiter
                .take_at("a", t0 + Duration::from_millis(150))
                .is_err()
        );
        // Idle time refills up to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.take_at("a", later), Ok(()));
        }
        assert!(limiter.take_at("a", later).is_err());
    }
}
