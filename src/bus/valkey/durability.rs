//! When a publish is acknowledged (`--valkey-durability`). Valkey
//! acknowledges a write once it is in the primary's memory; a crash or a
//! failover before it reaches the disk or a replica loses it. The stricter
//! modes send a wait after the publish script, on the same connection (so
//! it covers the script's writes), and only a confirmed batch is
//! acknowledged. A wait that times out is `UNAVAILABLE`; the events may
//! still be stored, so a retry must carry the same idempotency key to
//! publish them once.

use std::time::Duration;

use redis::Value;

use crate::bus::BusError;

/// What a publish acknowledgement promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Durability {
    /// Acknowledged when the primary has it in memory.
    #[default]
    None,
    /// Acknowledged when the primary has fsynced it to its append-only
    /// file (`WAITAOF 1 0`).
    Aof,
    /// Acknowledged when at least one replica has it (`WAIT 1`).
    Replica,
}

impl Durability {
    /// The wait to send after the script, if any.
    pub(super) fn wait(self, timeout: Duration) -> Option<redis::Cmd> {
        let ms = timeout.as_millis().max(1) as u64;
        match self {
            Durability::None => None,
            Durability::Aof => Some(redis::cmd("WAITAOF").arg(1).arg(0).arg(ms).clone()),
            Durability::Replica => Some(redis::cmd("WAIT").arg(1).arg(ms).clone()),
        }
    }

    /// Whether the wait's reply confirms the batch.
    pub(super) fn confirmed(self, reply: &Value, timeout: Duration) -> Result<(), BusError> {
        let short = |what: &str| {
            BusError::Unavailable(format!(
                "{what} within {timeout:?} (--valkey-durability {}); the events may be stored",
                self.name()
            ))
        };
        match (self, reply) {
            (Durability::None, _) => Ok(()),
            (Durability::Aof, Value::Array(counts)) => match counts.first() {
                Some(Value::Int(local)) if *local >= 1 => Ok(()),
                _ => Err(short("not fsynced to the append-only file")),
            },
            (Durability::Replica, Value::Int(replicas)) if *replicas >= 1 => Ok(()),
            (Durability::Replica, Value::Int(_)) => Err(short("no replica confirmed it")),
            (_, Value::ServerError(e)) => Err(BusError::Unavailable(format!(
                "the durability wait failed: {}",
                e.details().unwrap_or(e.code())
            ))),
            (_, other) => Err(BusError::Unavailable(format!(
                "unexpected reply to the durability wait: {other:?}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Durability::None => "none",
            Durability::Aof => "aof",
            Durability::Replica => "replica",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(100);

    #[test]
    fn only_a_confirming_reply_acknowledges() {
        let aof = Durability::Aof;
        assert!(
            aof.confirmed(&Value::Array(vec![Value::Int(1), Value::Int(0)]), T)
                .is_ok()
        );
        assert!(
            aof.confirmed(&Value::Array(vec![Value::Int(0), Value::Int(2)]), T)
                .is_err()
        );
        assert!(
            aof.confirmed(&Value::Int(1), T).is_err(),
            "not WAITAOF's shape"
        );
        let replica = Durability::Replica;
        assert!(replica.confirmed(&Value::Int(2), T).is_ok());
        let err = replica.confirmed(&Value::Int(0), T).err();
        assert!(
            matches!(&err, Some(BusError::Unavailable(m)) if m.contains("may be stored")),
            "{err:?}"
        );
        assert!(Durability::None.confirmed(&Value::Nil, T).is_ok());
        assert!(Durability::None.wait(T).is_none());
    }
}
