//! The publish script's reply (`lua/publish.lua`): one string, a line per
//! channel of the batch, in the batch's order. A line is the channel's
//! oldest-entry bound (with `/<length>` when the step knew the stream's
//! length), then its events' ids, space separated, a duplicate's (the first
//! publish's id) marked `=`; or `!` and the error its step failed with.
//!
//! One string rather than nested arrays: three values per event fewer for
//! Valkey to build and for the client to parse.

use redis::Value;

use super::batch::Group;
use super::call::unavailable;
use crate::bus::{BusError, Published};
use crate::cursor::StreamId;

/// One channel's step, as the publish script reports it.
#[derive(Debug)]
pub(super) struct StepOutcome {
    /// The channel's lower bound of its oldest entry's ms, for [`Hints`].
    pub oldest_ms: u64,
    /// The stream's length after the step, when the step measured it (or
    /// created the stream), for [`Hints`].
    pub len: Option<u64>,
    /// One per event, in the channel's order (inline: a channel has few
    /// events in a batch, mostly one).
    pub published: Group<Published>,
}

/// The publish script's reply: one outcome per group, in group order.
pub(super) fn parse_reply(
    v: &Value,
    groups: &[Group<usize>],
) -> Vec<Result<StepOutcome, BusError>> {
    let every = |e: BusError| groups.iter().map(|_| Err(e.clone())).collect();
    let text = match v {
        Value::BulkString(b) => b.as_slice(),
        Value::SimpleString(s) => s.as_bytes(),
        Value::ServerError(e) => return every(unavailable(format_args!("publish: {e:?}"))),
        other => {
            return every(unavailable(format_args!(
                "unexpected publish reply {other:?}"
            )));
        }
    };
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    if lines.len() != groups.len() {
        return every(unavailable(format_args!(
            "the publish script replied {} lines for {} channels",
            lines.len(),
            groups.len()
        )));
    }
    groups
        .iter()
        .zip(lines)
        .map(|(group, line)| parse_line(line, group.len()))
        .collect()
}

/// One channel's line of the reply: its oldest-entry bound (with
/// `/<length>` when the step knew the length), then its events' ids, space
/// separated, a duplicate's marked `=`; or `!` and the error its step
/// failed with.
fn parse_line(line: &[u8], events: usize) -> Result<StepOutcome, BusError> {
    let bad = || {
        unavailable(format_args!(
            "unexpected publish reply {:?} for {events} events",
            String::from_utf8_lossy(line)
        ))
    };
    if let Some(error) = line.strip_prefix(b"!") {
        return Err(unavailable(format_args!(
            "publish: {}",
            String::from_utf8_lossy(error)
        )));
    }
    // Parsed as bytes: ids and the bound are ASCII digits, checked digit by
    // digit, so the line needs no UTF-8 validation first.
    let mut tokens = line.split(|b| *b == b' ');
    let number = |t: &[u8]| std::str::from_utf8(t).ok()?.parse::<u64>().ok();
    let (oldest_ms, len) = tokens
        .next()
        .and_then(|t| match t.iter().position(|b| *b == b'/') {
            Some(slash) => Some((number(&t[..slash])?, Some(number(&t[slash + 1..])?))),
            None => Some((number(t)?, None)),
        })
        .ok_or_else(bad)?;
    let published = tokens
        .map(|t| {
            let (duplicate, id) = match t.strip_prefix(b"=") {
                Some(id) => (true, id),
                None => (false, t),
            };
            Some(Published {
                id: StreamId::parse_bytes(id).ok()?,
                duplicate,
            })
        })
        .collect::<Option<Group<_>>>()
        .ok_or_else(bad)?;
    if published.len() != events {
        return Err(bad());
    }
    Ok(StepOutcome {
        oldest_ms,
        len,
        published,
    })
}

pub(super) fn is_noscript(v: &Value) -> bool {
    matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

/// A line as the script writes it (its `line` function), for tests.
#[cfg(test)]
fn line(outcome: &StepOutcome) -> String {
    let mut line = outcome.oldest_ms.to_string();
    if let Some(len) = outcome.len {
        line += &format!("/{len}");
    }
    for p in &outcome.published {
        line.push(' ');
        if p.duplicate {
            line.push('=');
        }
        line += &p.id.to_string();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let outcomes = [
            StepOutcome {
                oldest_ms: 0,
                len: None,
                published: smallvec::smallvec![Published {
                    id: StreamId::new(5, 0),
                    duplicate: false
                }],
            },
            StepOutcome {
                oldest_ms: 1_795_915_622_682,
                len: Some(1000),
                published: smallvec::smallvec![
                    Published {
                        id: StreamId::new(7, 1),
                        duplicate: true
                    },
                    Published {
                        id: StreamId::new(u64::MAX, u64::MAX),
                        duplicate: false
                    },
                ],
            },
        ];
        let text = outcomes.iter().map(line).collect::<Vec<_>>().join("\n");
        let groups: Vec<Group<usize>> = vec![smallvec::smallvec![0], smallvec::smallvec![1, 2]];
        let read = parse_reply(&Value::BulkString(text.into_bytes()), &groups);
        for (want, got) in outcomes.iter().zip(read) {
            let got = got.expect("parses");
            assert_eq!((got.oldest_ms, got.len), (want.oldest_ms, want.len));
            assert_eq!(got.published, want.published);
        }
    }

    #[test]
    fn publish_reply_has_a_line_per_channel() {
        let groups: Vec<Group<usize>> = vec![
            smallvec::smallvec![0, 2],
            smallvec::smallvec![1],
            smallvec::smallvec![3],
        ];
        let reply =
            Value::BulkString(b"17 5-0 =4-1\n0/3 5-1\n!WRONGTYPE Operation against a key".to_vec());
        let out = parse_reply(&reply, &groups);
        let first = out[0].as_ref().unwrap();
        assert_eq!(first.oldest_ms, 17);
        assert_eq!(first.len, None, "not measured");
        assert_eq!(out[1].as_ref().unwrap().len, Some(3));
        let first = &first.published;
        assert_eq!(first[0].id, StreamId::new(5, 0));
        assert!(!first[0].duplicate);
        assert_eq!(first[1].id, StreamId::new(4, 1));
        assert!(first[1].duplicate);
        assert_eq!(
            out[1].as_ref().unwrap().published[0].id,
            StreamId::new(5, 1)
        );
        match &out[2] {
            Err(BusError::Unavailable(m)) => assert!(m.contains("WRONGTYPE"), "{m}"),
            other => panic!("{other:?}"),
        }
        // A reply that does not match the batch fails every channel, never
        // pairs outcomes with the wrong events.
        for bad in [
            &b"1 5-0 5-1\n1 5-2"[..],
            b"1 5-0 5-1\n1 5-2\n1 5-3\n1 5-4",
            b"1 5-0\n1 5-1\n1 5-2",
            b"1 5-0 x\n1 5-1\n1 5-2",
            b"1 5-0 5-1 5-2\n1 5-3\n1 5-4",
            // No bound.
            b"5-0 5-1\n5-2\n5-3",
            // A length that is not a number, or an empty one.
            b"1/x 5-0 5-1\n1 5-2\n1 5-3",
            b"1/ 5-0 5-1\n1 5-2\n1 5-3",
            b"/4 5-0 5-1\n1 5-2\n1 5-3",
        ] {
            let out = parse_reply(&Value::BulkString(bad.to_vec()), &groups);
            assert!(out.iter().any(|o| o.is_err()), "{bad:?}");
        }
        assert!(
            parse_reply(&Value::Int(1), &groups)
                .iter()
                .all(|o| o.is_err())
        );
    }
}
