//! Valkey names of a channel. All of a channel's names share one hash tag
//! (`{<channel>}`), so they live in one slot and one script step may touch
//! them together, on a standalone server and on Cluster alike:
//!
//! - `sseb:{c}:h` — the history stream;
//! - `sseb:{c}:k:<key>` — an idempotency key's first id;
//! - `sseb:{c}` — the shard channel its events are published on.

use crate::channel::Channel;

/// The node-wide pub/sub channel of revocation orders (classic pub/sub:
/// on a cluster it reaches every node).
pub(super) const CONTROL: &str = "sseb:control";

/// The revocation orders' channel on a cluster: a shard channel (one slot,
/// followed through migrations and failovers like any other), which every
/// node subscribes.
pub(super) const SHARDED_CONTROL: &str = "sseb:{control}";

/// A channel's Valkey names. A publish writes them straight into the
/// command's buffer (one string allocation fewer per name and event).
#[derive(Clone, Copy)]
pub(super) enum Name<'a> {
    History(&'a Channel),
    Idempotency(&'a Channel, &'a str),
    Shard(&'a Channel),
}

impl<'a> Name<'a> {
    /// The name's pieces, in order: written straight into a command's buffer
    /// (two names go into every publish, and `write!` cost more than the
    /// copying) or into a `String`.
    fn parts(&self) -> [&'a str; 4] {
        match *self {
            Name::History(c) => ["sseb:{", c.as_str(), "}:h", ""],
            Name::Idempotency(c, key) => ["sseb:{", c.as_str(), "}:k:", key],
            Name::Shard(c) => ["sseb:{", c.as_str(), "}", ""],
        }
    }
}

impl std::fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.parts().iter().try_for_each(|part| f.write_str(part))
    }
}

impl redis::ToRedisArgs for Name<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut arg = out.writer_for_next_arg();
        for part in self.parts() {
            // Writing into the command's own buffer cannot fail.
            let _ = arg.write_all(part.as_bytes());
        }
    }
}

pub(super) fn history_key(channel: &Channel) -> String {
    Name::History(channel).to_string()
}

pub(super) fn shard_channel(channel: &Channel) -> String {
    Name::Shard(channel).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_channel_share_one_hash_tag() {
        let c = Channel::parse("scans:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:r").unwrap();
        let tag = format!("{{{c}}}");
        let idempotency = Name::Idempotency(&c, "k").to_string();
        for k in [history_key(&c), idempotency.clone(), shard_channel(&c)] {
            assert!(k.contains(&tag), "{k}");
            assert_eq!(k.matches('{').count(), 1);
        }
        assert_eq!(history_key(&c), format!("sseb:{tag}:h"));
        assert_eq!(idempotency, format!("sseb:{tag}:k:k"));
        assert_eq!(shard_channel(&c), format!("sseb:{tag}"));
        // What goes into commands is the same bytes.
        for name in [
            Name::History(&c),
            Name::Idempotency(&c, "k"),
            Name::Shard(&c),
        ] {
            let args = redis::ToRedisArgs::to_redis_args(&name);
            assert_eq!(args, vec![name.to_string().into_bytes()]);
        }
        // The shard channel is the history key without its `:h`, which the
        // publish script relies on.
        assert_eq!(
            history_key(&c).strip_suffix(":h"),
            Some(shard_channel(&c).as_str())
        );
    }
}
