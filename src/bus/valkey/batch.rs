//! How a publish batch is split into script steps: by channel, each
//! channel's events in publish order, channels in order of first
//! appearance; and on Valkey Cluster into runs by hash slot as well, since
//! a script run may only touch the keys of one slot there.

use std::collections::HashMap;

use super::commands::channel_slot;
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

/// Sorts `groups` by their channel's slot (stably: within a slot, in order
/// of first appearance) and returns each slot with its range of groups.
pub(super) fn by_slot(
    events: &[Outgoing],
    groups: &mut [Group<usize>],
) -> Vec<(u16, std::ops::Range<usize>)> {
    // Each group's slot hashed once: sorted with the groups, then read.
    let mut keyed: Vec<(u16, Group<usize>)> = groups
        .iter_mut()
        .map(|g| (channel_slot(&events[g[0]].channel), std::mem::take(g)))
        .collect();
    keyed.sort_by_key(|(slot, _)| *slot);
    let mut runs: Vec<(u16, std::ops::Range<usize>)> = Vec::new();
    for (i, ((slot, g), out)) in keyed.into_iter().zip(groups.iter_mut()).enumerate() {
        *out = g;
        match runs.last_mut() {
            Some((s, range)) if *s == slot => range.end = i + 1,
            _ => runs.push((slot, i..i + 1)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(r: &str) -> Channel {
        Channel::parse(&format!("s:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:{r}")).unwrap()
    }

    fn out(c: &Channel) -> Outgoing {
        Outgoing {
            channel: c.clone(),
            event: crate::schema::EventName::published("a.b").expect("a name"),
            data: "{}".into(),
            idempotency_key: None,
        }
    }

    #[test]
    fn events_group_by_channel_in_order() {
        let (a, b, c) = (ch("a"), ch("b"), ch("c"));
        let events = [out(&b), out(&a), out(&b), out(&c), out(&a)];
        let groups: Vec<Vec<usize>> = by_channel(&events)
            .into_iter()
            .map(|g| g.to_vec())
            .collect();
        assert_eq!(groups, vec![vec![0, 2], vec![1, 4], vec![3]]);
        assert!(by_channel(&[]).is_empty());
    }

    #[test]
    fn groups_run_once_per_slot() {
        let channels: Vec<Channel> = (0..40).map(|i| ch(&format!("r{i}"))).collect();
        let events: Vec<Outgoing> = channels.iter().chain(&channels).map(out).collect();
        let mut groups = by_channel(&events);
        let runs = by_slot(&events, &mut groups);
        let mut seen = std::collections::HashSet::new();
        for (slot, range) in &runs {
            assert!(seen.insert(*slot), "one run per slot");
            for g in &groups[range.clone()] {
                assert_eq!(channel_slot(&events[g[0]].channel), *slot);
                assert_eq!(g.len(), 2, "a channel's events stay together");
                assert!(g[0] < g[1], "in publish order");
            }
        }
        assert_eq!(runs.last().map(|r| r.1.end), Some(40));
    }
}
