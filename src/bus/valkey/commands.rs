//! The node's command connection, as a handle the publisher, the history
//! reads and the bus share: to one primary (standalone, or the one Sentinel
//! names, swapped after a failover: [`super::sentinel`]), or to each
//! channel's slot owner on a cluster ([`super::cluster::router`]).

use std::sync::{Arc, RwLock};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::cluster::router::{Routed, Router};
use super::cluster::slot::SLOTS;
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
    super::cluster::slot::slot(channel.as_str().as_bytes()) % SLOTS
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
