//! Wall-clock time as tokens and orders state it: seconds since 1970.
//! Tokens carry `exp`/`iat` on this clock, so it is the system clock, not a
//! monotonic one; a clock before 1970 reads as 0.

use std::time::{SystemTime, UNIX_EPOCH};

/// Whole seconds since 1970.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Seconds since 1970 with their fraction, for NumericDate comparisons.
pub fn now_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
