//! An event encoded once per node as SSE bytes, shared by every listener.

use crate::bus::Entry;
use crate::cursor::StreamId;
use crate::latency::Latency;
use crate::wire;

/// An event encoded once as an SSE frame.
#[derive(Debug)]
pub struct Frame {
    pub id: StreamId,
    /// `id: <id>\nevent: <name>\ndata: <json>\n\n`
    bytes: bytes::Bytes,
    /// Where `event:` starts in `bytes`.
    body_at: usize,
    /// Its event name's publish → write latency.
    latency: std::sync::Arc<Latency>,
}

impl Frame {
    /// Bytes the frame holds: what caches count.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn encode(entry: &Entry) -> Frame {
        // 41 bytes: the longest `<ms>-<seq>`, two u64s and a hyphen.
        let mut buf = Vec::with_capacity(41 + entry.event.len() + entry.data.len() + 24);
        wire::put_stream_id(&mut buf, entry.id);
        let body_at = buf.len();
        wire::put_event(&mut buf, &entry.event);
        wire::put_data_and_end(&mut buf, &entry.data);
        Frame {
            id: entry.id,
            bytes: buf.into(),
            body_at,
            latency: crate::latency::of(&entry.event),
        }
    }

    /// Counts the frame as written to a live stream now.
    pub fn written_live(&self) {
        self.latency.record(self.id);
    }

    /// The whole frame with the channel's own id (one-channel streams).
    pub fn with_own_id(&self) -> bytes::Bytes {
        self.bytes.clone()
    }

    /// The frame without its `id:` line, for streams that send their own
    /// cursor.
    pub fn body(&self) -> bytes::Bytes {
        self.bytes.slice(self.body_at..)
    }
}

#[cfg(test)]
impl Frame {
    /// A `a.b` frame with id `<ms>-0` and an empty object, for the hub's tests.
    pub(super) fn test(ms: u64) -> Frame {
        Frame::encode(&Entry {
            id: StreamId::new(ms, 0),
            event: crate::schema::EventName::published("a.b").expect("a name"),
            data: "{}".into(),
        })
    }
}
