//! The node's command connection to the current primary, as a handle the
//! publisher, the history reads and the bus share. Behind Sentinel a
//! failover swaps in a connection to the new primary ([`super::sentinel`]);
//! every command after the swap goes there.

use std::sync::{Arc, RwLock};

use redis::aio::ConnectionManager;

#[derive(Clone)]
pub(super) struct Primary(Arc<RwLock<ConnectionManager>>);

impl Primary {
    pub(super) fn new(conn: ConnectionManager) -> Primary {
        Primary(Arc::new(RwLock::new(conn)))
    }

    /// The connection to send a command on (a cheap clone of a
    /// multiplexed connection).
    pub(super) fn get(&self) -> ConnectionManager {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Points every later command at another primary.
    pub(super) fn set(&self, conn: ConnectionManager) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = conn;
    }
}
