//! The bus carries published events between bridge nodes and keeps each
//! channel's recent history for resume.
//!
//! Two implementations share these semantics: [`memory::MemoryBus`] (single
//! node, the embedded default) and, for several nodes, Valkey. The bus knows
//! nothing of HTTP or gRPC: it stores and forwards named JSON payloads.

pub mod memory;
pub mod valkey;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::channel::Channel;
use crate::cursor::StreamId;
use crate::revocation::Revocation;
use crate::schema::EventName;

/// One stored event of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: StreamId,
    /// The `resource.verb` event name.
    pub event: EventName,
    /// The payload as one line of JSON.
    pub data: Bytes,
}

/// An event to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub channel: Channel,
    pub event: EventName,
    pub data: Bytes,
    /// Scoped to the channel; `None` when the request sent none (an empty
    /// key in the request means none).
    pub idempotency_key: Option<String>,
}

/// The outcome of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub id: StreamId,
    /// The key had been seen within its window: `id` is the first event's,
    /// and nothing new was published.
    pub duplicate: bool,
}

/// Why history cannot cover a requested range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// Events after the position were trimmed (length or age bound).
    Trimmed,
    /// The position is not one this channel's history knows (e.g. ahead of
    /// its newest event after history was lost).
    Unknown,
    /// The history the position belongs to is gone (e.g. Valkey restarted
    /// without persistence); what the channel holds now is replayed.
    Lost,
}

impl fmt::Display for GapReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GapReason::Trimmed => "history_trimmed",
            GapReason::Unknown => "unknown_position",
            GapReason::Lost => "history_lost",
        })
    }
}

/// History cannot cover a requested range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub reason: GapReason,
    /// The position the reader continues from: just before the oldest
    /// retained event when history was trimmed, the newest position when
    /// the requested one is unknown.
    pub resume_from: StreamId,
}

/// What a channel's history holds after a position: one page of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Replay {
    /// Set when events after the requested position are lost.
    pub gap: Option<Gap>,
    /// The retained events after the position (after `gap.resume_from`
    /// when there is a gap), oldest first, as many as the page holds.
    pub entries: Vec<Entry>,
    /// History may hold more after the last entry: the page was full.
    pub more: bool,
}

/// The size of an entry as a page counts it: its name and payload.
pub fn entry_bytes(event: &str, data: &[u8]) -> usize {
    event.len() + data.len()
}

/// Bus failures; all of them are worth retrying later.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    #[error("the event bus is unavailable: {0}")]
    Unavailable(String),
}

/// Receives live events for the channels a node watches. Called in each
/// channel's publish order.
pub trait Sink: Send + Sync + 'static {
    fn deliver(&self, channel: &Channel, entry: Entry);

    /// The node may have missed events of `channel` that history cannot
    /// supply (e.g. Valkey lost them): every listener must check its own
    /// position against history, and report the gap.
    fn resync(&self, channel: &Channel);
}

/// Receives the revocation orders that reach this node (from any node,
/// this one included): whoever owns the node's streams closes the ones an
/// order covers.
pub trait Orders: Send + Sync + 'static {
    fn apply(&self, order: &Revocation);
}

/// Bounds of each channel's history.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Events kept per channel.
    pub max_len: usize,
    /// Events older than this are dropped.
    pub max_age: Duration,
    /// How long an idempotency key is remembered.
    pub idempotency_window: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_len: 1000,
            max_age: Duration::from_secs(3600),
            idempotency_window: Duration::from_secs(300),
        }
    }
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Appends to the channel's history and delivers to every watching node.
    async fn publish(&self, event: Outgoing) -> Result<Published, BusError>;

    /// Publishes several events in order (one round trip where the bus can),
    /// with one outcome per event, in the same order.
    async fn publish_batch(&self, events: Vec<Outgoing>) -> Vec<Result<Published, BusError>> {
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            out.push(self.publish(e).await);
        }
        out
    }

    /// The newest position of the channel ([`StreamId::ZERO`] when empty).
    async fn head(&self, channel: &Channel) -> Result<StreamId, BusError>;

    /// The retained events after `after`, and the gap when history cannot
    /// cover all of it: one page, of at most `page_bytes` of entries (at
    /// least one entry, however large), so a reader never holds a whole
    /// history at once.
    async fn read_after(
        &self,
        channel: &Channel,
        after: StreamId,
        page_bytes: usize,
    ) -> Result<Replay, BusError>;

    /// Starts delivering the channel's live events to this node's sink. When
    /// it returns, every publish after the returned position is delivered.
    async fn watch(&self, channel: &Channel) -> Result<StreamId, BusError>;

    /// Stops delivering the channel's events to this node.
    async fn unwatch(&self, channel: &Channel) -> Result<(), BusError>;

    /// Hands a revocation order to every node's sink, this one included;
    /// returns how many nodes received it.
    async fn revoke(&self, order: &Revocation) -> Result<u64, BusError>;

    /// Which of the bus's parts can serve requests now.
    async fn readiness(&self) -> Readiness;

    /// Whether the bus can serve requests now.
    async fn ready(&self) -> bool {
        self.readiness().await.ready()
    }
}

/// What `/readyz` reports of the bus: commands (publishes, history reads)
/// and subscriptions (live delivery) answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub commands: bool,
    pub subscriptions: bool,
}

impl Readiness {
    pub fn ready(self) -> bool {
        self.commands && self.subscriptions
    }
}
