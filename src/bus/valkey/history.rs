//! Reading a channel's history: its newest position, and a page of what
//! follows a position (`lua/read_after.lua`, `lua/head.lua`), with the gap
//! when the stream cannot cover it. Reads that arrive together go out
//! together, one script run for many channels ([`super::gather`]).

use std::sync::Arc;
use std::time::Duration;

use redis::{Script, Value};

use super::call::{bounded, unavailable};
use super::commands::Commands;
use super::gather::{Gather, Run, Shape};
use super::keys::history_key;
use super::record::{parse_entry, parse_id};
use crate::bus::{BusError, Gap, GapReason, Replay};
use crate::channel::Channel;
use crate::cursor::StreamId;

/// The history reads of a node, on its command connection.
#[derive(Clone)]
pub(super) struct History {
    heads: Arc<Gather<(), StreamId>>,
    pages: Arc<Gather<(StreamId, usize), Replay>>,
}

impl History {
    pub fn new(conn: Commands, max_len: usize, timeout: Duration) -> History {
        let sharded = matches!(conn, Commands::Cluster(_));
        // Run by digest (`EVALSHA`), loaded on first use.
        let head = Arc::new(Script::new(include_str!("lua/head.lua")));
        let read_after = Arc::new(Script::new(include_str!("lua/read_after.lua")));
        let heads_run: Run<(), StreamId> = {
            let conn = conn.clone();
            Arc::new(move |asks: Vec<(Channel, ())>| {
                let (conn, head) = (conn.clone(), head.clone());
                Box::pin(async move {
                    let Some((first, _)) = asks.first() else {
                        return Ok(Vec::new());
                    };
                    let mut conn = conn.for_channel(first);
                    let mut call = head.prepare_invoke();
                    for (channel, ()) in &asks {
                        call.key(history_key(channel));
                    }
                    let ids: Vec<String> =
                        bounded(timeout, "head", call.invoke_async(&mut conn)).await?;
                    ids.iter()
                        .map(|id| {
                            id.parse().map_err(|_| {
                                unavailable(format_args!("head returned a bad id `{id}`"))
                            })
                        })
                        .collect()
                })
            })
        };
        let pages_run: Run<(StreamId, usize), Replay> = Arc::new(move |asks| {
            let (conn, read_after) = (conn.clone(), read_after.clone());
            Box::pin(async move {
                let Some((first, _)) = asks.first() else {
                    return Ok(Vec::new());
                };
                let mut conn = conn.for_channel(first);
                let mut call = read_after.prepare_invoke();
                call.arg(max_len.max(1));
                for (channel, (after, page_bytes)) in &asks {
                    call.key(history_key(channel))
                        .arg(after.to_string())
                        .arg(*page_bytes);
                }
                let replies: Vec<Value> =
                    bounded(timeout, "history", call.invoke_async(&mut conn)).await?;
                replies
                    .into_iter()
                    .map(|v| parse_replay(v).ok_or_else(|| unavailable("unexpected history reply")))
                    .collect()
            })
        });
        let heads = Shape {
            sharded,
            // An id each.
            weigh: |_| 0,
        };
        let pages = Shape {
            sharded,
            weigh: |(_, page_bytes): &(StreamId, usize)| *page_bytes,
        };
        History {
            heads: Arc::new(Gather::new(heads_run, heads)),
            pages: Arc::new(Gather::new(pages_run, pages)),
        }
    }

    /// The newest position of the channel ([`StreamId::ZERO`] when empty).
    pub async fn head(&self, channel: &Channel) -> Result<StreamId, BusError> {
        self.heads.read(channel, ()).await
    }

    /// One page of history after `after`: at most `page_bytes` of entries
    /// (at least one), and the gap when the stream cannot cover `after`.
    pub async fn read_after(
        &self,
        channel: &Channel,
        after: StreamId,
        page_bytes: usize,
    ) -> Result<Replay, BusError> {
        self.pages.read(channel, (after, page_bytes)).await
    }
}

fn parse_replay(v: Value) -> Option<Replay> {
    let Value::Array(parts) = v else { return None };
    let status = match parts.first()? {
        Value::Int(n) => *n,
        _ => return None,
    };
    let from = parse_id(parts.get(1)?)?;
    let entries = match parts.get(2)? {
        Value::Array(items) => items.iter().map(parse_entry).collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    let more = matches!(parts.get(3)?, Value::Int(1));
    let reason = match status {
        0 => None,
        1 => Some(GapReason::Trimmed),
        2 => Some(GapReason::Unknown),
        _ => Some(GapReason::Lost),
    };
    Some(Replay {
        gap: reason.map(|reason| Gap {
            reason,
            resume_from: from,
        }),
        entries,
        more,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_give_the_gap_and_whether_more_follows() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = |id: &str| {
            Value::Array(vec![
                bulk(id),
                Value::Array(vec![bulk("m"), bulk("a.b\n{}")]),
            ])
        };
        let reply = |status: i64, from: &str, entries: Vec<Value>, more: i64| {
            Value::Array(vec![
                Value::Int(status),
                bulk(from),
                Value::Array(entries),
                Value::Int(more),
            ])
        };
        let covered = parse_replay(reply(0, "3-0", vec![entry("4-0"), entry("5-0")], 1)).unwrap();
        assert_eq!(covered.gap, None);
        assert!(covered.more);
        assert_eq!(
            covered.entries.iter().map(|e| e.id.ms).collect::<Vec<_>>(),
            [4, 5]
        );
        for (status, reason) in [
            (1, GapReason::Trimmed),
            (2, GapReason::Unknown),
            (3, GapReason::Lost),
        ] {
            let r = parse_replay(reply(status, "9-1", vec![], 0)).unwrap();
            assert_eq!(
                r.gap,
                Some(Gap {
                    reason,
                    resume_from: StreamId::new(9, 1)
                })
            );
            assert!(!r.more);
        }
        assert!(parse_replay(Value::Int(0)).is_none());
        assert!(parse_replay(reply(0, "x", vec![], 0)).is_none());
    }
}
