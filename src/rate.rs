//! Per-publisher rate limits: a GCRA limit per key (the publisher token's
//! `sub`; tokens without one share a key), from `governor`. Its keyed state
//! is one atomic per publisher in a sharded map, so publishers on other
//! cores never wait on one lock, and a publish allocates nothing.
//!
//! Limits count this node's publishes; a producer spread over N nodes gets
//! up to N times the rate.

use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter as Gcra};

/// How often publishers whose limit is back to full are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// Events per second and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_sec: NonZeroU32,
    pub burst: NonZeroU32,
}

/// The key: a publisher token's `sub`, if it has one.
type Publisher = Option<String>;

/// Keyed rate limits.
pub struct RateLimiter<C: Clock = DefaultClock> {
    rate: Rate,
    gcra: Gcra<Publisher, DashMapStateStore<Publisher>, C, NoOpMiddleware<C::Instant>>,
}

/// Over the limit; the next event is accepted after this wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

impl RateLimiter {
    /// A limiter that forgets idle publishers in the background for as
    /// long as it is in use (it must be made inside the runtime).
    pub fn new(rate: Rate) -> Arc<RateLimiter> {
        let limiter = Arc::new(RateLimiter::with_clock(rate, DefaultClock::default()));
        tokio::spawn(forget_idle(Arc::downgrade(&limiter)));
        limiter
    }
}

impl<C: Clock> RateLimiter<C> {
    fn with_clock(rate: Rate, clock: C) -> Self {
        let quota = Quota::per_second(rate.per_sec).allow_burst(rate.burst);
        RateLimiter {
            rate,
            gcra: Gcra::new(quota, DashMapStateStore::default(), clock),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes one event's worth of `publisher`'s limit.
    pub fn take(&self, publisher: &Publisher) -> Result<(), Throttled> {
        self.gcra
            .check_key(publisher)
            .map_err(|not_until| Throttled {
                retry_after: not_until.wait_time_from(self.gcra.clock().now()),
            })
    }

    /// Forgets publishers whose limit is back to full: they are the same
    /// as new ones.
    fn forget(&self) {
        self.gcra.retain_recent();
        self.gcra.shrink_to_fit();
    }
}

async fn forget_idle(limiter: Weak<RateLimiter>) {
    let mut every = tokio::time::interval(FORGET_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        match limiter.upgrade() {
            Some(limiter) => limiter.forget(),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limiter(per_sec: u32, burst: u32) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let rate = Rate {
            per_sec: NonZeroU32::new(per_sec).expect("a rate"),
            burst: NonZeroU32::new(burst).expect("a burst"),
        };
        (RateLimiter::with_clock(rate, clock.clone()), clock)
    }

    #[test]
    fn a_publisher_gets_its_burst_then_its_rate() {
        let (limiter, clock) = limiter(10, 3);
        let a = Some("a".to_owned());
        for _ in 0..3 {
            assert_eq!(limiter.take(&a), Ok(()));
        }
        let refused = limiter.take(&a).map_err(|t| t.retry_after);
        assert_eq!(refused, Err(Duration::from_millis(100)));
        assert_eq!(limiter.take(&Some("b".into())), Ok(()), "keys are separate");
        assert_eq!(limiter.take(&None), Ok(()), "no `sub` is a key too");
        clock.advance(Duration::from_millis(100));
        assert_eq!(limiter.take(&a), Ok(()));
        clock.advance(Duration::from_millis(50));
        assert_eq!(
            limiter.take(&a).map_err(|t| t.retry_after),
            Err(Duration::from_millis(50))
        );
        // Idle time refills up to the burst, not beyond.
        clock.advance(Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(limiter.take(&a), Ok(()));
        }
        assert!(limiter.take(&a).is_err());
    }

    #[test]
    fn publishers_back_to_full_are_forgotten() {
        let (limiter, clock) = limiter(10, 2);
        for i in 0..100 {
            assert_eq!(limiter.take(&Some(i.to_string())), Ok(()));
        }
        assert_eq!(limiter.gcra.len(), 100);
        limiter.forget();
        assert_eq!(limiter.gcra.len(), 100, "not yet back to full");
        // governor keeps a key one emission interval past full.
        clock.advance(Duration::from_millis(200));
        limiter.forget();
        assert_eq!(limiter.gcra.len(), 0);
    }
}
