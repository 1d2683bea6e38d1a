//! Stream positions and the SSE cursor.
//!
//! A position is a Valkey stream id `<ms>-<seq>`. The cursor a stream sends
//! in `id:` is that position itself for a one-channel stream, and for several
//! channels a compact URL-safe token holding every channel's position, bound
//! to the set of channels (in any order) so it cannot be replayed against
//! another set.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::channel::{Channel, ChannelSet};

/// A position in a channel's history, ordered like Valkey stream ids.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// The position before any event.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    pub fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }
}

/// Why a cursor or stream id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("stream id must be `<milliseconds>-<sequence>`, e.g. 1732844000000-0")]
    StreamId,
    #[error("cursor is not a cursor issued by this bridge")]
    Malformed,
    #[error("cursor was issued for a different set of channels")]
    Channels,
}

impl StreamId {
    /// Parses `<ms>-<seq>` from bytes (ids in Valkey replies and pushes
    /// are parsed once or twice per event, with no text validation first).
    pub fn parse_bytes(b: &[u8]) -> Result<StreamId, CursorError> {
        let dash = b
            .iter()
            .position(|&c| c == b'-')
            .ok_or(CursorError::StreamId)?;
        let digits = |p: &[u8]| {
            if p.is_empty() || p.len() > 20 {
                return Err(CursorError::StreamId);
            }
            p.iter().try_fold(0u64, |n, &c| {
                let d = c.wrapping_sub(b'0');
                if d > 9 {
                    return Err(CursorError::StreamId);
                }
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d)))
                    .ok_or(CursorError::StreamId)
            })
        };
        Ok(StreamId::new(digits(&b[..dash])?, digits(&b[dash + 1..])?))
    }
}

impl FromStr for StreamId {
    type Err = CursorError;
    fn from_str(s: &str) -> Result<StreamId, CursorError> {
        StreamId::parse_bytes(s.as_bytes())
    }
}

impl StreamId {
    /// Appends `<ms>-<seq>` to `out`. Ids are written once or more per
    /// event (SSE `id:` lines, publish replies), and the `fmt` machinery
    /// cost several times the digits themselves.
    pub fn write_to(self, out: &mut Vec<u8>) {
        let mut digits = itoa::Buffer::new();
        out.extend_from_slice(digits.format(self.ms).as_bytes());
        out.push(b'-');
        out.extend_from_slice(digits.format(self.seq).as_bytes());
    }

    /// `<ms>-<seq>` as a new string, allocated once at its final size (a
    /// publish reply carries one per event; `to_string` grows it twice).
    pub fn to_text(self) -> String {
        let mut out = Vec::with_capacity(41);
        self.write_to(&mut out);
        // Only ASCII digits and `-` were written.
        String::from_utf8(out).unwrap_or_default()
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut digits = itoa::Buffer::new();
        f.write_str(digits.format(self.ms))?;
        f.write_str("-")?;
        f.write_str(digits.format(self.seq))
    }
}

const VERSION: u8 = 1;

/// FNV-1a: a stable, dependency-free fingerprint of the channel set. It only
/// has to catch a cursor used with the wrong channels, not resist forgery
/// (a cursor grants nothing; the token does).
fn fingerprint<'a>(names: impl IntoIterator<Item = &'a str>) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for name in names {
        for b in name.bytes().chain(std::iter::once(0)) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

fn names(channels: &ChannelSet) -> impl Iterator<Item = &str> {
    channels.iter().map(Channel::as_str)
}

/// Encodes a position per channel of `channels`, in its order, as the
/// cursor a stream sends in `id:`.
pub fn encode(channels: &ChannelSet, positions: &[StreamId]) -> String {
    if let ([_], [only]) = (&channels[..], positions) {
        return only.to_string();
    }
    let mut bytes = Vec::with_capacity(5 + positions.len() * 10);
    bytes.push(VERSION);
    bytes.extend_from_slice(&fingerprint(names(channels)).to_be_bytes());
    for p in positions {
        prost::encoding::encode_varint(p.ms, &mut bytes);
        prost::encoding::encode_varint(p.seq, &mut bytes);
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A decoded cursor: one position per channel of the set it was decoded
/// for, in the set's order. Only [`decode`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positions(Vec<StreamId>);

impl Positions {
    pub fn into_vec(self) -> Vec<StreamId> {
        self.0
    }
}

/// Decodes a cursor for `channels`: one position per channel, in its order.
pub fn decode(cursor: &str, channels: &ChannelSet) -> Result<Positions, CursorError> {
    decode_all(cursor, channels).map(Positions)
}

fn decode_all(cursor: &str, channels: &ChannelSet) -> Result<Vec<StreamId>, CursorError> {
    if channels.len() == 1 {
        return Ok(vec![cursor.parse()?]);
    }
    if cursor.len() > 4096 {
        return Err(CursorError::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| CursorError::Malformed)?;
    let mut input = bytes.as_slice();
    let (&version, rest) = input.split_first().ok_or(CursorError::Malformed)?;
    if version != VERSION || rest.len() < 4 {
        return Err(CursorError::Malformed);
    }
    let (fp, rest) = rest.split_at(4);
    input = rest;
    if fp != fingerprint(names(channels)).to_be_bytes() {
        return Err(CursorError::Channels);
    }
    let mut positions = Vec::with_capacity(channels.len());
    let mut varint =
        || prost::encoding::decode_varint(&mut input).map_err(|_| CursorError::Malformed);
    for _ in channels.iter() {
        let ms = varint()?;
        let seq = varint()?;
        positions.push(StreamId::new(ms, seq));
    }
    if !input.is_empty() {
        return Err(CursorError::Malformed);
    }
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stream_ids_parse_and_order() {
        let a: StreamId = "1732844000000-0".parse().unwrap();
        let b: StreamId = "1732844000000-12".parse().unwrap();
        assert!(a < b);
        assert_eq!(b.to_string(), "1732844000000-12");
        let max: StreamId = "18446744073709551615-18446744073709551615".parse().unwrap();
        assert_eq!(max, StreamId::new(u64::MAX, u64::MAX));
        // Every way of printing an id agrees, up to the longest.
        for id in [StreamId::ZERO, b, max] {
            let mut bytes = Vec::new();
            id.write_to(&mut bytes);
            assert_eq!(bytes, id.to_string().into_bytes());
            assert_eq!(id.to_text(), id.to_string());
        }
        assert_eq!(max.to_text().len(), 41);
        for bad in [
            "",
            "1",
            "-1",
            "1-",
            "a-1",
            "1-1-1",
            "+1-1",
            "99999999999999999999999-0",
            "18446744073709551616-0",
        ] {
            assert_eq!(bad.parse::<StreamId>(), Err(CursorError::StreamId), "{bad}");
        }
    }

    fn set(resources: &[&str]) -> ChannelSet {
        ChannelSet::new(
            resources
                .iter()
                .map(|r| {
                    Channel::parse(&format!("p:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:{r}")).unwrap()
                })
                .collect(),
        )
    }

    #[test]
    fn single_channel_cursor_is_the_stream_id() {
        let id = StreamId::new(5, 7);
        assert_eq!(encode(&set(&["a"]), &[id]), "5-7");
        assert_eq!(decode_all("5-7", &set(&["a"])), Ok(vec![id]));
    }

    #[test]
    fn cursor_is_bound_to_its_channels() {
        let ab = set(&["a", "b"]);
        let c = encode(&ab, &[StreamId::new(1, 0), StreamId::new(2, 3)]);
        assert!(
            c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        // The set's order, not the request's: the same channels listed
        // the other way round (and twice) are the same set.
        assert_eq!(set(&["b", "a", "b"]), ab);
        assert_eq!(
            decode_all(&c, &set(&["b", "a"])),
            Ok(vec![StreamId::new(1, 0), StreamId::new(2, 3)])
        );
        assert_eq!(
            decode_all(&c, &set(&["a", "c"])),
            Err(CursorError::Channels)
        );
        assert_eq!(
            decode_all(&c, &set(&["a", "b", "c"])),
            Err(CursorError::Channels)
        );
        assert_eq!(decode_all("!!", &ab), Err(CursorError::Malformed));
        assert_eq!(decode_all("5-7", &ab), Err(CursorError::Malformed));
    }

    #[test]
    fn cursors_from_before_prost_varints_still_decode_all() {
        // Issued by the hand-written varint coder this replaced.
        let ab = set(&["a", "b"]);
        let c = "ASMODRKa0qanojQA____________AawC";
        let positions = [
            StreamId::new(1_795_915_622_682, 0),
            StreamId::new(u64::MAX, 300),
        ];
        assert_eq!(encode(&ab, &positions), c);
        assert_eq!(
            decode_all(c, &ab),
            Ok(vec![
                StreamId::new(1_795_915_622_682, 0),
                StreamId::new(u64::MAX, 300)
            ])
        );
    }

    proptest! {
        #[test]
        fn round_trips(ids in proptest::collection::vec((any::<u64>(), any::<u64>()), 2..12)) {
            let names: Vec<String> = (0..ids.len()).map(|i| format!("r{i}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let channels = set(&names);
            let positions: Vec<StreamId> = ids.iter().map(|&(m, s)| StreamId::new(m, s)).collect();
            let c = encode(&channels, &positions);
            prop_assert_eq!(decode_all(&c, &channels), Ok(positions));
        }

        #[test]
        fn arbitrary_input_never_panics(s in ".{0,200}") {
            let _ = decode_all(&s, &set(&["a", "b"]));
            let _ = decode_all(&s, &set(&["a"]));
        }
    }
}
