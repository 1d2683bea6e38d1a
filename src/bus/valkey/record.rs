//! The event record, in its two Valkey shapes:
//!
//! - in the history stream, field `m` holds `<event>\n<json>` ([`Record`]
//!   writes it into the publish command, [`parse_entry`] reads it back);
//! - on the shard channel, the publish script sends a channel's events of a
//!   batch as one message, `<id>\n<event>\n<json>` records joined by `\n`
//!   ([`parse_messages`] reads it).
//!
//! Neither part of a record holds a raw line break: event names are
//! `resource.verb` from the catalogue, and the JSON is compact (a line
//! break inside a string is escaped), so each `\n` splits.

use std::collections::HashMap;

use bytes::Bytes;
use redis::Value;

use super::batch::Group;
use crate::bus::{Entry, Outgoing};
use crate::cursor::StreamId;
use crate::schema::EventName;

/// An event as the publish script takes it and the history stream keeps it
/// (field `m`): `<event>\n<json>`, written straight into the command.
/// Neither part holds a raw line break (event names are `resource.verb`;
/// the JSON is compact), so the first one splits them.
pub(super) struct Record<'a>(pub &'a Outgoing);

impl redis::ToRedisArgs for Record<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = arg.write_all(self.0.event.as_bytes());
        let _ = arg.write_all(b"\n");
        let _ = arg.write_all(&self.0.data);
    }
}

pub(super) fn parse_id(v: &Value) -> Option<StreamId> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

pub(super) fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// Parses one `XRANGE` entry: `[id, [field, value, ...]]`, its fields as a
/// flat array (RESP2) or a map (RESP3). An entry holds its record in `m`;
/// entries written before records were one field hold `e` (event) and `d`
/// (JSON), and are still read.
pub(super) fn parse_entry(v: &Value) -> Option<Entry> {
    let Value::Array(parts) = v else { return None };
    let id = parse_id(parts.first()?)?;
    // One of the two shapes is empty; chained rather than collected, since a
    // resume reads thousands of entries.
    let (flat, map): (&[Value], &[(Value, Value)]) = match parts.get(1)? {
        Value::Array(fields) => (fields, &[]),
        Value::Map(fields) => (&[], fields),
        _ => return None,
    };
    let pairs = flat
        .chunks_exact(2)
        .map(|pair| (&pair[0], &pair[1]))
        .chain(map.iter().map(|(k, v)| (k, v)));
    let (mut event, mut data) = (None, None);
    for (k, v) in pairs {
        match (as_bytes(k)?, as_bytes(v)?) {
            (b"m", record) => {
                let split = memchr::memchr(b'\n', record)?;
                event = Some(&record[..split]);
                data = Some(&record[split + 1..]);
            }
            (b"e", v) => event = Some(v),
            (b"d", v) => data = Some(v),
            _ => {}
        }
    }
    Some(Entry {
        id,
        event: EventName::stored(std::str::from_utf8(event?).ok()?).ok()?,
        data: Bytes::copy_from_slice(data?),
    })
}

/// Event names as the pump has seen them, shared: every delivered event
/// carries its name, and a new name per event was an allocation and a
/// copy. Names come from the catalogue, so there are few; a bus that
/// carried ever new ones would only make the map start over.
#[derive(Default)]
pub(super) struct EventNames(HashMap<Box<[u8]>, EventName, foldhash::fast::RandomState>);

impl EventNames {
    const MAX: usize = 1024;

    pub(super) fn get(&mut self, name: &[u8]) -> Option<EventName> {
        if let Some(known) = self.0.get(name) {
            return Some(known.clone());
        }
        let text = EventName::stored(std::str::from_utf8(name).ok()?).ok()?;
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        self.0.insert(name.into(), text.clone());
        Some(text)
    }
}

/// Parses a pub/sub payload: one or more `<id>\n<event>\n<json>` records
/// joined by `\n` (JSON and event names hold no raw line break). Each
/// entry's data is a slice of the payload, not a copy.
pub(super) fn parse_messages(payload: &Bytes, names: &mut EventNames) -> Option<Group<Entry>> {
    // Inline: most messages carry one event (one per channel per batch).
    let mut entries = Group::new();
    let mut parts = memchr::memchr_iter(b'\n', payload)
        .chain([payload.len()])
        .scan(0, |start, end| {
            let part = &payload[*start..end];
            *start = end + 1;
            Some(part)
        });
    while let Some(id) = parts.next() {
        let id = StreamId::parse_bytes(id).ok()?;
        let event = names.get(parts.next()?)?;
        let data = payload.slice_ref(parts.next()?);
        entries.push(Entry { id, event, data });
    }
    (!entries.is_empty()).then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shard-channel message as the publish script writes it.
    fn message(entries: &[Entry]) -> Bytes {
        let records: Vec<Vec<u8>> = entries
            .iter()
            .map(|e| {
                [
                    e.id.to_string().as_bytes(),
                    b"\n",
                    e.event.as_bytes(),
                    b"\n",
                    &e.data,
                ]
                .concat()
            })
            .collect();
        Bytes::from(records.join(&b'\n'))
    }

    fn entry(id: StreamId, event: &str, data: &'static str) -> Entry {
        Entry {
            id,
            event: EventName::stored(event).expect("a name"),
            data: Bytes::from_static(data.as_bytes()),
        }
    }

    #[test]
    fn messages_round_trip() {
        let mut names = EventNames::default();
        let batch = [
            entry(StreamId::new(17, 3), "scan.progress", r#"{"a":"x\ny"}"#),
            entry(StreamId::new(17, 4), "scan.end", "{}"),
            entry(StreamId::new(u64::MAX, u64::MAX), "m.d", r#"{"s":""}"#),
        ];
        for n in 1..=batch.len() {
            let parsed = parse_messages(&message(&batch[..n]), &mut names).expect("parses");
            assert_eq!(parsed.as_slice(), &batch[..n]);
        }
    }

    #[test]
    fn history_records_round_trip() {
        let out = Outgoing {
            channel: crate::channel::Channel::parse("scans:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:r")
                .unwrap(),
            event: EventName::published("scan.progress").expect("a name"),
            data: Bytes::from_static(br#"{"checked":1}"#),
            idempotency_key: None,
        };
        let written = redis::ToRedisArgs::to_redis_args(&Record(&out));
        let [record] = written.as_slice() else {
            panic!("one argument")
        };
        let stored = Value::Array(vec![
            Value::BulkString(b"9-1".to_vec()),
            Value::Array(vec![
                Value::BulkString(b"m".to_vec()),
                Value::BulkString(record.clone()),
            ]),
        ]);
        let read = parse_entry(&stored).expect("parses");
        assert_eq!(
            read,
            entry(StreamId::new(9, 1), "scan.progress", r#"{"checked":1}"#)
        );
    }

    #[test]
    fn messages_carry_one_or_more_records() {
        let mut names = EventNames::default();
        let one = parse_messages(
            &Bytes::from_static(b"17-3\nscan.progress\n{\"a\":\"x\\ny\"}"),
            &mut names,
        )
        .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].id, StreamId::new(17, 3));
        assert_eq!(&*one[0].event, "scan.progress");
        assert_eq!(&one[0].data[..], b"{\"a\":\"x\\ny\"}");
        let two = parse_messages(
            &Bytes::from_static(b"1-0\na.b\n{}\n1-1\nc.d\n[]"),
            &mut names,
        )
        .unwrap();
        assert_eq!(two.iter().map(|e| e.id.seq).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(&*two[1].event, "c.d");
        // A name seen before is the same shared string; the map stays bounded.
        let again = parse_messages(&Bytes::from_static(b"2-0\nscan.progress\n{}"), &mut names);
        assert!(EventName::same(&again.unwrap()[0].event, &one[0].event));
        for i in 0..=EventNames::MAX {
            names.get(format!("n.{i}").as_bytes());
        }
        assert!(names.0.len() <= EventNames::MAX);
        assert!(names.get(b"\xff").is_none());
        for bad in [
            &b"nope"[..],
            b"1-1\nonly-two",
            b"1-0\na.b\n{}\n1-1\nc.d",
            b"",
        ] {
            assert!(
                parse_messages(&Bytes::from_static(bad), &mut names).is_none(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn history_entries_are_read_in_both_layouts() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = |fields| Value::Array(vec![bulk("5-1"), fields]);
        let record = entry(Value::Array(vec![
            bulk("m"),
            bulk("scan.progress\n{\"a\":1}"),
        ]));
        let earlier = entry(Value::Map(vec![
            (bulk("e"), bulk("scan.progress")),
            (bulk("d"), bulk("{\"a\":1}")),
        ]));
        for v in [record, earlier] {
            let e = parse_entry(&v).unwrap();
            assert_eq!(e.id, StreamId::new(5, 1));
            assert_eq!(&*e.event, "scan.progress");
            assert_eq!(&e.data[..], b"{\"a\":1}");
        }
        // A record without its separator is refused, not misread.
        let broken = entry(Value::Array(vec![bulk("m"), bulk("scan.progress")]));
        assert!(parse_entry(&broken).is_none());
    }
}
