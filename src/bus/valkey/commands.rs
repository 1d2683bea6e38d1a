//! The node's command connection, as a handle the publisher, the history
//! reads and the bus share: to one primary (standalone, or the one Sentinel
//! names, swapped after a failover: [`super::sentinel`]), or to each
//! channel's slot owner on a cluster ([`super::cluster::router`]).

use std::sync::{Arc, RwLock};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::cluster::router::{Routed, Router};
use crate::channel::Channel;

#[derive(Clone)]
pub(super) enum Commands {
    Primary(Arc<RwLock<ConnectionManager>>),
    Cluster(Arc<Router>),
}

impl Commands {
    pub(super) fn primary(conn: ConnectionManager) -> Commands {
        Commands::Primary(Arc::new(RwLock::new(conn)))
    }

    /// The connection for commands on `channel`'s keys (a cheap clone).
    pub(super) fn for_channel(&self, channel: &Channel) -> Conn {
        // A channel's names all carry the channel itself as their hash tag
        // (`keys`), so its slot is the channel's own.
        self.for_slot(channel_slot(channel))
    }

    pub(super) fn for_slot(&self, slot: u16) -> Conn {
        match self {
            Commands::Primary(conn) => {
                Conn::Direct(conn.read().unwrap_or_else(|p| p.into_inner()).clone())
            }
            Commands::Cluster(router) => Conn::Routed(router.routed(slot)),
        }
    }

    /// Points every later command at another primary (Sentinel).
    pub(super) fn set(&self, conn: ConnectionManager) {
        if let Commands::Primary(current) = self {
            *current.write().unwrap_or_else(|p| p.into_inner()) = conn;
        }
    }
}

/// The slot of a channel's names.
pub(super) fn channel_slot(channel: &Channel) -> u16 {
    super::cluster::slot::slot(channel.as_str().as_bytes())
}

/// A connection to send commands on.
#[derive(Clone)]
pub(super) enum Conn {
    Direct(ConnectionManager),
    Routed(Routed),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Direct(c) => c.req_packed_command(cmd),
            Conn::Routed(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Direct(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Routed(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::valkey::cluster::slot::slot;
    use crate::bus::valkey::keys::{Name, SHARDED_CONTROL};

    #[test]
    fn a_channel_s_slot_is_the_slot_of_each_of_its_names() {
        for r in ["a", "b", "scan-42", "x.y~z"] {
            let c = Channel::parse(&format!("scans:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:{r}"))
                .expect("a channel");
            for name in [
                Name::History(&c),
                Name::Idempotency(&c, "key-1"),
                Name::Shard(&c),
            ] {
                assert_eq!(
                    slot(name.to_string().as_bytes()),
                    channel_slot(&c),
                    "{name}"
                );
            }
        }
        assert_eq!(slot(SHARDED_CONTROL.as_bytes()), slot(b"control"));
    }
}
