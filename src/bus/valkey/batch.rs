//! How a publish batch is split into script steps: here by channel, each
//! channel's events in publish order, channels in order of first
//! appearance. This is the seam where Valkey Cluster will group the
//! channels by hash slot as well (one script run per slot), since a run may
//! only touch keys of one slot there.

use std::collections::HashMap;

use crate::bus::Outgoing;
use crate::channel::Channel;

/// A channel's share of a batch: a handful of items at most, kept inline
/// (two heap allocations per channel of every batch otherwise).
pub(super) type Group<T> = smallvec::SmallVec<[T; 4]>;

/// The indices of `events` by channel: one group per channel, each in
/// publish order; groups in order of their channel's first event.
pub(super) fn by_channel(events: &[Outgoing]) -> Vec<Group<usize>> {
    // Sized for the batch up front: grown from empty it rehashed its way
    // up on every batch of many channels.
    let mut groups: Vec<Group<usize>> = Vec::with_capacity(events.len());
    let mut index: HashMap<&Channel, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(events.len(), Default::default());
    for (i, e) in events.iter().enumerate() {
        match index.get(&e.channel) {
            Some(&g) => groups[g].push(i),
            None => {
                index.insert(&e.channel, groups.len());
                groups.push(smallvec::smallvec![i]);
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_group_by_channel_in_order() {
        let ch = |r: &str| {
            Channel::parse(&format!("s:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:{r}")).unwrap()
        };
        let out = |c: &Channel| Outgoing {
            channel: c.clone(),
            event: crate::schema::EventName::published("a.b").expect("a name"),
            data: "{}".into(),
            idempotency_key: None,
        };
        let (a, b, c) = (ch("a"), ch("b"), ch("c"));
        let events = [out(&b), out(&a), out(&b), out(&c), out(&a)];
        let groups: Vec<Vec<usize>> = by_channel(&events)
            .into_iter()
            .map(|g| g.to_vec())
            .collect();
        assert_eq!(groups, vec![vec![0, 2], vec![1, 4], vec![3]]);
        assert!(by_channel(&[]).is_empty());
    }
}
