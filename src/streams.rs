//! The node's open streams: limits per tenant and per subject, and the
//! revocation orders that close them.
//!
//! Every SSE stream holds a [`Ticket`] while it is open; dropping the ticket
//! releases its place. Limits count this node's streams: a deployment of N
//! nodes behind a balancer admits about N times as many per tenant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::auth::Subscriber;
use crate::bus::Orders;
use crate::channel::ChannelSet;
use crate::revocation::Revocation;

/// How long a node remembers an order, to refuse tokens issued before it.
/// Tokens older than this that are still valid come back in; access tokens
/// live far shorter.
const REMEMBER_SECS: u64 = 24 * 3600;

/// Bounds on open streams; 0 disables one.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamLimits {
    pub per_tenant: usize,
    pub per_subject: usize,
}

/// Why a stream may not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error(
        "tenant has {max} open streams on this node, the most allowed; close one or retry later"
    )]
    Tenant { max: usize },
    #[error(
        "this user (token `sub`) has {max} open streams on this node, the most allowed; close one (e.g. another tab) or retry later"
    )]
    Subject { max: usize },
    #[error("token was revoked ({reason}); reconnect with a token issued after the revocation")]
    Revoked { reason: String },
}

struct Open {
    tenant: Uuid,
    /// The same string as its key in `per_subject`.
    subject: Option<Arc<str>>,
    channels: ChannelSet,
    end: Option<oneshot::Sender<End>>,
}

/// Why the node ends a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// A revocation order covers it; the order's reason.
    Revoked(String),
    /// The node is shutting down: reconnect elsewhere.
    Shutdown,
}

#[derive(Default)]
struct Inner {
    next: u64,
    open: HashMap<u64, Open>,
    per_tenant: HashMap<Uuid, usize>,
    per_subject: HashMap<(Uuid, Arc<str>), usize>,
    revoked: Vec<Revocation>,
    /// Set at shutdown: streams opened from now on end at once.
    closing: bool,
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// The open streams of this node.
pub struct Streams {
    inner: Mutex<Inner>,
    limits: StreamLimits,
}

/// A stream's place; closing the stream is dropping it.
///
/// The node's shutdown reaches a stream through its ticket too, rather than
/// through a watch every stream would poll: one receiver and its wait per
/// open stream fewer (change 44).
pub struct Ticket {
    id: u64,
    streams: Arc<Streams>,
    end: oneshot::Receiver<End>,
}

impl Ticket {
    /// Resolves when the node ends the stream: a revocation order covers
    /// it, or the node shuts down.
    pub async fn ended(&mut self) -> End {
        match (&mut self.end).await {
            Ok(end) => end,
            // The registry never drops a sender before the ticket.
            Err(_) => std::future::pending().await,
        }
    }

    /// Whether the node has ended the stream, without waiting: for a
    /// stream asleep, which has no task to wait in.
    pub fn has_ended(&self) -> bool {
        !self.end.is_empty()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut inner = self.streams.lock();
        if let Some(open) = inner.open.remove(&self.id) {
            decrement(&mut inner.per_tenant, &open.tenant);
            if let Some(subject) = open.subject {
                decrement(&mut inner.per_subject, &(open.tenant, subject));
            }
        }
    }
}

impl Streams {
    pub fn new(limits: StreamLimits) -> Arc<Streams> {
        Arc::new(Streams {
            inner: Mutex::new(Inner::default()),
            limits,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for a stream of `who` over `channels`, unless a limit
    /// is reached or an order revoked the token.
    pub fn open(
        self: &Arc<Self>,
        who: &Subscriber,
        channels: &ChannelSet,
    ) -> Result<Ticket, OpenError> {
        let mut inner = self.lock();
        let subject = who.subject.as_deref();
        // A token without `iat` cannot show it came after an order.
        let issued = who.issued_at.unwrap_or(0);
        if let Some(order) = inner
            .revoked
            .iter()
            .find(|r| issued < r.at && r.matches(who.tenant, subject, channels))
        {
            return Err(OpenError::Revoked {
                reason: order.reason.to_string(),
            });
        }
        let max = self.limits.per_tenant;
        if max > 0 && inner.per_tenant.get(&who.tenant).copied().unwrap_or(0) >= max {
            return Err(OpenError::Tenant { max });
        }
        let subject_key = subject.map(|s| (who.tenant, Arc::<str>::from(s)));
        let max = self.limits.per_subject;
        if let Some(key) = &subject_key {
            if max > 0 && inner.per_subject.get(key).copied().unwrap_or(0) >= max {
                return Err(OpenError::Subject { max });
            }
        }
        *inner.per_tenant.entry(who.tenant).or_default() += 1;
        let subject = subject_key.map(|key| {
            let (_, subject) = &key;
            let subject = subject.clone();
            *inner.per_subject.entry(key).or_default() += 1;
            subject
        });
        let id = inner.next;
        inner.next += 1;
        let (tx, rx) = oneshot::channel();
        let end = match inner.closing {
            true => {
                let _ = tx.send(End::Shutdown);
                None
            }
            false => Some(tx),
        };
        inner.open.insert(
            id,
            Open {
                tenant: who.tenant,
                subject,
                channels: channels.clone(),
                end,
            },
        );
        Ok(Ticket {
            id,
            streams: self.clone(),
            end: rx,
        })
    }

    /// Ends every open stream, and any opened from now on, with
    /// [`End::Shutdown`].
    pub fn close_all(&self) {
        let mut inner = self.lock();
        inner.closing = true;
        for open in inner.open.values_mut() {
            if let Some(tx) = open.end.take() {
                let _ = tx.send(End::Shutdown);
            }
        }
    }

    /// Closes this node's matching streams and remembers the order; returns
    /// how many streams it closed.
    pub fn revoke(&self, order: &Revocation) -> usize {
        let mut inner = self.lock();
        let mut closed = 0;
        for open in inner.open.values_mut() {
            if order.matches(open.tenant, open.subject.as_deref(), &open.channels) {
                if let Some(tx) = open.end.take() {
                    let _ = tx.send(End::Revoked(order.reason.to_string()));
                    closed += 1;
                }
            }
        }
        let horizon = crate::clock::now_secs().saturating_sub(REMEMBER_SECS);
        inner.revoked.retain(|r| r.at >= horizon);
        inner.revoked.push(order.clone());
        closed
    }
}

impl Orders for Streams {
    fn apply(&self, order: &Revocation) {
        let closed = self.revoke(order);
        tracing::info!(closed, reason = %order.reason, "revocation order applied");
        metrics::counter!(crate::metrics::STREAMS_REVOKED).increment(closed as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::Target;

    const T: &str = "0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80";

    fn who(subject: &str, issued_at: u64) -> Subscriber {
        Subscriber {
            tenant: crate::channel::parse_tenant(T).unwrap(),
            subject: Some(subject.into()),
            exp: u64::MAX,
            issued_at: Some(issued_at),
        }
    }

    #[test]
    fn limits_count_open_streams_and_free_places_on_drop() {
        let streams = Streams::new(StreamLimits {
            per_tenant: 3,
            per_subject: 2,
        });
        let a1 = streams.open(&who("a", 1), &ChannelSet::default()).unwrap();
        let _a2 = streams.open(&who("a", 1), &ChannelSet::default()).unwrap();
        assert_eq!(
            streams.open(&who("a", 1), &ChannelSet::default()).err(),
            Some(OpenError::Subject { max: 2 })
        );
        let _b1 = streams.open(&who("b", 1), &ChannelSet::default()).unwrap();
        assert_eq!(
            streams.open(&who("c", 1), &ChannelSet::default()).err(),
            Some(OpenError::Tenant { max: 3 })
        );
        drop(a1);
        assert!(streams.open(&who("a", 1), &ChannelSet::default()).is_ok());
    }

    #[tokio::test]
    async fn orders_close_matching_streams_and_refuse_older_tokens() {
        let streams = Streams::new(StreamLimits::default());
        let mut a = streams.open(&who("a", 10), &ChannelSet::default()).unwrap();
        let _b = streams.open(&who("b", 10), &ChannelSet::default()).unwrap();
        let order = Revocation {
            target: Target::Subject {
                subject: "a".into(),
                tenant: None,
            },
            reason: crate::revocation::Reason::parse("logout").unwrap(),
            at: 20,
        };
        assert_eq!(streams.revoke(&order), 1);
        assert_eq!(a.ended().await, End::Revoked("logout".into()));
        assert!(matches!(
            streams.open(&who("a", 19), &ChannelSet::default()),
            Err(OpenError::Revoked { .. })
        ));
        assert!(streams.open(&who("a", 20), &ChannelSet::default()).is_ok());
        assert!(streams.open(&who("b", 5), &ChannelSet::default()).is_ok());
    }

    #[tokio::test]
    async fn shutdown_ends_open_streams_and_those_opened_after() {
        let streams = Streams::new(StreamLimits::default());
        let mut open = streams.open(&who("a", 1), &ChannelSet::default()).unwrap();
        let mut untouched = tokio::spawn(async move { open.ended().await });
        // Nothing ends a stream before the node closes.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), &mut untouched)
                .await
                .is_err()
        );
        streams.close_all();
        assert_eq!(untouched.await.unwrap(), End::Shutdown);
        let mut late = streams.open(&who("b", 1), &ChannelSet::default()).unwrap();
        assert_eq!(late.ended().await, End::Shutdown);
    }
}
