//! The `Event` envelope read straight from its wire format.
//!
//! Every field of the envelope is a member of its `payload` oneof (the
//! catalogue enforces it), so all a publish needs from the envelope is which
//! member is set and that member's bytes. Decoding the envelope itself as a
//! `DynamicMessage` also cleared every other member of the oneof, a cost per
//! publish that grew with the catalogue.

use prost::bytes::Buf;
use prost::encoding::{WireType, decode_key, decode_varint};

/// The set payload: its envelope field number and its encoded parts, in
/// wire order. Protobuf merges a message field that appears more than once,
/// and a later member of a oneof replaces an earlier one; the parts are what
/// remains after both rules.
#[derive(Debug, PartialEq, Eq)]
pub struct Payload<'a> {
    pub field: u32,
    /// Inline: an event is one part unless a sender split it.
    pub parts: smallvec::SmallVec<[&'a [u8]; 1]>,
}

/// Why the envelope's bytes are not an envelope.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("{0}")]
    Wire(String),
    #[error("field {0} of the envelope must be length-delimited (a message)")]
    WireType(u32),
    /// No member of this catalogue is set, but a field it does not know is:
    /// an event type newer than this bridge.
    #[error("unknown event type (field {0} of Event.payload)")]
    Unknown(u32),
}

/// Finds the payload in an encoded envelope; `is_member` says which field
/// numbers are payload members (others are unknown fields and skipped, as a
/// generated decoder skips them). `None` when no member is set, and
/// [`EnvelopeError::Unknown`] when only an unknown message field is.
pub fn payload(
    mut bytes: &[u8],
    is_member: impl Fn(u32) -> bool,
) -> Result<Option<Payload<'_>>, EnvelopeError> {
    let wire = |e: prost::DecodeError| EnvelopeError::Wire(e.to_string());
    let mut found: Option<Payload> = None;
    let mut unknown: Option<u32> = None;
    while bytes.has_remaining() {
        let (field, wire_type) = decode_key(&mut bytes).map_err(wire)?;
        match wire_type {
            WireType::LengthDelimited => {
                let len = decode_varint(&mut bytes).map_err(wire)?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= bytes.len())
                    .ok_or_else(|| EnvelopeError::Wire("buffer underflow".into()))?;
                let (part, rest) = bytes.split_at(len);
                bytes = rest;
                if !is_member(field) {
                    unknown.get_or_insert(field);
                    continue;
                }
                match &mut found {
                    Some(p) if p.field == field => p.parts.push(part),
                    _ => {
                        found = Some(Payload {
                            field,
                            parts: smallvec::smallvec![part],
                        })
                    }
                }
            }
            _ if is_member(field) => return Err(EnvelopeError::WireType(field)),
            WireType::Varint => {
                decode_varint(&mut bytes).map_err(wire)?;
            }
            WireType::SixtyFourBit => skip(&mut bytes, 8)?,
            WireType::ThirtyTwoBit => skip(&mut bytes, 4)?,
            WireType::StartGroup | WireType::EndGroup => {
                return Err(EnvelopeError::Wire(format!(
                    "field {field} uses groups, which proto3 does not have"
                )));
            }
        }
    }
    match (found, unknown) {
        (None, Some(field)) => Err(EnvelopeError::Unknown(field)),
        (found, _) => Ok(found),
    }
}

fn skip(bytes: &mut &[u8], n: usize) -> Result<(), EnvelopeError> {
    if bytes.len() < n {
        return Err(EnvelopeError::Wire("buffer underflow".into()));
    }
    bytes.advance(n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost::encoding::{encode_key, encode_varint};

    use super::*;
    use crate::proto::events::v1::{Event, ScanProgress, event::Payload as Which};

    fn progress(checked: u32) -> ScanProgress {
        ScanProgress {
            checked,
            total: 10,
            ..Default::default()
        }
    }

    fn field(out: &mut Vec<u8>, number: u32, body: &[u8]) {
        encode_key(number, WireType::LengthDelimited, out);
        encode_varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }

    #[test]
    fn finds_the_member_a_generated_encoder_wrote() {
        let event = Event {
            payload: Some(Which::ScanProgress(progress(3))),
        };
        let bytes = event.encode_to_vec();
        let found = payload(&bytes, |_| true).unwrap().unwrap();
        assert_eq!(found.parts[..], [&progress(3).encode_to_vec()[..]]);
        assert_eq!(payload(&[], |_| true), Ok(None));
    }

    #[test]
    fn only_an_unknown_member_is_a_newer_event_type() {
        let body = progress(1).encode_to_vec();
        let mut newer = Vec::new();
        field(&mut newer, 99, &body);
        assert_eq!(payload(&newer, |n| n < 50), Err(EnvelopeError::Unknown(99)));
        // Beside a known member, an unknown field is skipped, as a
        // generated decoder skips it.
        field(&mut newer, 1, &body);
        let found = payload(&newer, |n| n < 50).unwrap().unwrap();
        assert_eq!(found.field, 1);
    }

    #[test]
    fn repeats_merge_and_a_later_member_replaces() {
        let (a, b) = (progress(1).encode_to_vec(), progress(2).encode_to_vec());
        let mut bytes = Vec::new();
        field(&mut bytes, 1, &a);
        field(&mut bytes, 2, &b);
        field(&mut bytes, 3, &a);
        field(&mut bytes, 3, &b);
        let found = payload(&bytes, |_| true).unwrap().unwrap();
        assert_eq!(found.field, 3);
        assert_eq!(found.parts[..], [&a[..], &b[..]]);
    }

    #[test]
    fn unknown_fields_are_skipped_and_broken_input_refused() {
        let a = progress(1).encode_to_vec();
        let mut bytes = Vec::new();
        encode_key(9, WireType::Varint, &mut bytes);
        encode_varint(300, &mut bytes);
        encode_key(10, WireType::ThirtyTwoBit, &mut bytes);
        bytes.extend_from_slice(&[0; 4]);
        field(&mut bytes, 11, b"ignored");
        field(&mut bytes, 1, &a);
        let found = payload(&bytes, |n| n == 1).unwrap().unwrap();
        assert_eq!((found.field, &found.parts[..]), (1, &[&a[..]][..]));

        // A member that is not a message, a length past the end, a cut key.
        let mut varint_member = Vec::new();
        encode_key(1, WireType::Varint, &mut varint_member);
        encode_varint(1, &mut varint_member);
        assert_eq!(
            payload(&varint_member, |_| true),
            Err(EnvelopeError::WireType(1))
        );
        let mut long = Vec::new();
        encode_key(1, WireType::LengthDelimited, &mut long);
        encode_varint(5, &mut long);
        long.push(0);
        assert!(payload(&long, |_| true).is_err());
        assert!(payload(&[0x80], |_| true).is_err());
        assert!(payload(&[0x0b], |_| true).is_err());
    }
}
