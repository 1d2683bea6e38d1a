//! Who owns which slots: the primaries of a Valkey Cluster and their slot
//! ranges, read from `CLUSTER SLOTS`.

use std::fmt;

use redis::Value;

use super::slot::SLOTS;

/// A cluster node's address as the cluster announces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(in crate::bus::valkey) struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl NodeAddr {
    /// `host:port`, as in a `MOVED` or `ASK` redirect. An empty host (the
    /// node does not know its own address) is the one that answered.
    pub fn parse(text: &str, answered_by: &NodeAddr) -> Option<NodeAddr> {
        let (host, port) = text.rsplit_once(':')?;
        let port = port.parse().ok()?;
        let host = if host.is_empty() || host == "?" {
            answered_by.host.clone()
        } else {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        };
        Some(NodeAddr { host, port })
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The slot ranges and their primaries, sorted by range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(in crate::bus::valkey) struct Topology {
    ranges: Vec<(u16, u16, NodeAddr)>,
}

impl Topology {
    /// From a `CLUSTER SLOTS` reply given by `answered_by`; `None` when the
    /// reply is not one.
    pub fn parse(reply: &Value, answered_by: &NodeAddr) -> Option<Topology> {
        let Value::Array(ranges) = reply else {
            return None;
        };
        let mut out = Vec::with_capacity(ranges.len());
        for range in ranges {
            let Value::Array(parts) = range else {
                return None;
            };
            let int = |v: Option<&Value>| match v {
                Some(Value::Int(n)) => u16::try_from(*n).ok(),
                _ => None,
            };
            let (start, end) = (int(parts.first())?, int(parts.get(1))?);
            let Some(Value::Array(primary)) = parts.get(2) else {
                return None;
            };
            let host = match primary.first()? {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                Value::Nil => String::new(),
                _ => return None,
            };
            let port = int(primary.get(1))?;
            let host = if host.is_empty() || host == "?" {
                answered_by.host.clone()
            } else {
                host
            };
            if start > end || end >= SLOTS {
                return None;
            }
            out.push((start, end, NodeAddr { host, port }));
        }
        out.sort_by_key(|r| r.0);
        Some(Topology { ranges: out })
    }

    /// The primary that owns `slot`.
    pub fn owner(&self, slot: u16) -> Option<&NodeAddr> {
        let i = self.ranges.partition_point(|r| r.0 <= slot);
        let (_, end, node) = self.ranges.get(i.checked_sub(1)?)?;
        (slot <= *end).then_some(node)
    }

    /// Every primary, once each.
    pub fn primaries(&self) -> Vec<NodeAddr> {
        let mut nodes: Vec<NodeAddr> = self.ranges.iter().map(|r| r.2.clone()).collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// The slot ranges no primary owns, as `a-b` text (empty when the
    /// cluster covers every slot).
    pub fn uncovered(&self) -> Vec<String> {
        let mut gaps = Vec::new();
        let mut next: u32 = 0;
        for (start, end, _) in &self.ranges {
            if u32::from(*start) > next {
                gaps.push(format!("{next}-{}", start - 1));
            }
            next = next.max(u32::from(*end) + 1);
        }
        if next < u32::from(SLOTS) {
            gaps.push(format!("{next}-{}", SLOTS - 1));
        }
        gaps
    }

    /// Points `slot` at `node` (a `MOVED` redirect), before the next full
    /// refresh.
    pub fn moved(&mut self, slot: u16, node: NodeAddr) {
        if self.owner(slot) == Some(&node) {
            return;
        }
        let mut ranges = Vec::with_capacity(self.ranges.len() + 2);
        for (start, end, owner) in self.ranges.drain(..) {
            if start <= slot && slot <= end {
                if start < slot {
                    ranges.push((start, slot - 1, owner.clone()));
                }
                if slot < end {
                    ranges.push((slot + 1, end, owner));
                }
            } else {
                ranges.push((start, end, owner));
            }
        }
        ranges.push((slot, slot, node));
        ranges.sort_by_key(|r| r.0);
        self.ranges = ranges;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16) -> NodeAddr {
        NodeAddr {
            host: "127.0.0.1".into(),
            port,
        }
    }

    fn range(start: i64, end: i64, host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::Int(start),
            Value::Int(end),
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ]),
            // A replica, which routing ignores.
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(9),
                Value::BulkString(b"id2".to_vec()),
            ]),
        ])
    }

    #[test]
    fn slots_map_to_their_primary() {
        let reply = Value::Array(vec![
            range(10923, 16383, "127.0.0.1", 3),
            range(0, 5460, "127.0.0.1", 1),
            range(5461, 10922, "", 2),
        ]);
        let t = Topology::parse(&reply, &node(1)).unwrap();
        assert_eq!(t.owner(0), Some(&node(1)));
        assert_eq!(t.owner(5460), Some(&node(1)));
        assert_eq!(
            t.owner(5461),
            Some(&node(2)),
            "an empty host is the answering one"
        );
        assert_eq!(t.owner(16383), Some(&node(3)));
        assert_eq!(t.primaries(), vec![node(1), node(2), node(3)]);
        assert!(t.uncovered().is_empty());
        assert!(Topology::parse(&Value::Int(1), &node(1)).is_none());
        assert!(Topology::parse(&Value::Array(vec![range(5, 2, "h", 1)]), &node(1)).is_none());
    }

    #[test]
    fn gaps_and_redirects() {
        let reply = Value::Array(vec![range(100, 200, "127.0.0.1", 1)]);
        let mut t = Topology::parse(&reply, &node(1)).unwrap();
        assert_eq!(t.uncovered(), vec!["0-99", "201-16383"]);
        assert_eq!(t.owner(50), None);
        t.moved(150, node(2));
        assert_eq!(t.owner(149), Some(&node(1)));
        assert_eq!(t.owner(150), Some(&node(2)));
        assert_eq!(t.owner(151), Some(&node(1)));
        t.moved(100, node(2));
        assert_eq!(t.owner(100), Some(&node(2)));
        assert_eq!(t.owner(101), Some(&node(1)));
        assert_eq!(
            NodeAddr::parse(":7001", &node(1)),
            Some(node(7001)),
            "a redirect without a host"
        );
        assert_eq!(NodeAddr::parse("::1:5", &node(1)).map(|n| n.port), Some(5));
        assert_eq!(NodeAddr::parse("h", &node(1)), None);
    }
}
