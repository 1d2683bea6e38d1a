//! Valkey Cluster: `redis+cluster://h1:p1,h2:p2` (`rediss+cluster://` for
//! TLS) names seed nodes; the node reads the slot map from them and keeps
//! it current ([`topology`], [`router`]).
//!
//! Every name of a channel hashes to the channel's slot ([`slot`]), so one
//! script run may touch a channel's history, idempotency keys and shard
//! channel together. A publish batch runs one script per slot, all runs at
//! once, each on its slot's primary ([`router`] follows redirects).
//!
//! Subscriptions are sharded (`SSUBSCRIBE`), one command per channel, each
//! on a connection to the primary that owns the channel's slot ([`shards`]).
//! When a slot migrates (the server sends `sunsubscribe`) or its primary
//! dies and a replica takes over, the channel is subscribed on the new
//! owner and refilled from its history stream, as after any reconnect.
//! Revocation orders go on a sharded control channel that every node
//! subscribes, routed like any other.

pub(super) mod router;
pub(super) mod shards;
pub(super) mod slot;
pub(super) mod topology;
