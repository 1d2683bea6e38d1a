//! One Valkey command's bound: every command waits at most the node's
//! timeout, and any failure becomes a retryable [`BusError`].

use std::future::Future;
use std::time::Duration;

use crate::bus::BusError;

/// Reconnect backoff of both of a node's Valkey connections (commands and
/// subscriptions): the first retry after `MIN`, doubling up to `MAX`.
pub(super) const RECONNECT_MIN: Duration = Duration::from_millis(50);
pub(super) const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// A bus failure with `e` as its detail.
pub(super) fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// Runs `f`, waiting at most `timeout`; `what` names it in the error.
pub(super) async fn bounded<T, E: std::fmt::Display>(
    timeout: Duration,
    what: &str,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, BusError> {
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(unavailable(format_args!("{what}: {e}"))),
        Err(_) => Err(unavailable(format_args!(
            "{what}: no answer within {timeout:?}"
        ))),
    }
}
