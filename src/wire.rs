//! The `text/event-stream` wire format: one place that writes SSE fields,
//! so no value can break out of its line.
//!
//! A CR, LF or NUL inside `id:` or `event:` would end the field early and
//! let the rest forge fields or whole events (or, for NUL in `id:`, make
//! browsers drop the cursor). Those values come from checked types (stream
//! ids, cursors, catalogue names), so such bytes are removed rather than
//! reported. `data` may hold line breaks: each line becomes its own
//! `data:` line, which the client joins back with `\n`.

/// The bridge's own events on a stream. Their names start with `bridge.`,
/// which the catalogue may not use (`schema::name::RESERVED_PREFIX`),
/// so they can never be mistaken for a published event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlEvent {
    /// History cannot cover a gap: `{"channels":[…],"reason":"…"}`.
    Reset,
    /// The token expired; the stream ends.
    Expired,
    /// A `Disconnect` order closed the stream.
    Revoked,
}

impl ControlEvent {
    pub const fn name(self) -> &'static str {
        match self {
            ControlEvent::Reset => "bridge.reset",
            ControlEvent::Expired => "bridge.expired",
            ControlEvent::Revoked => "bridge.revoked",
        }
    }
}

/// Appends an `id:` line.
pub fn put_id(buf: &mut Vec<u8>, id: &str) {
    put_field(buf, b"id", id.as_bytes());
}

/// Appends the `id:` line of a stream id, written in place (its digits
/// and hyphen need no cleaning).
pub fn put_stream_id(buf: &mut Vec<u8>, id: crate::cursor::StreamId) {
    buf.extend_from_slice(b"id: ");
    id.write_to(buf);
    buf.push(b'\n');
}

/// Appends an `event:` line.
pub fn put_event(buf: &mut Vec<u8>, event: &str) {
    put_field(buf, b"event", event.as_bytes());
}

/// Appends the `data:` lines of `data` and the blank line that ends the
/// frame.
pub fn put_data_and_end(buf: &mut Vec<u8>, data: &[u8]) {
    let mut rest = data;
    loop {
        let end = memchr::memchr2(b'\n', b'\r', rest).unwrap_or(rest.len());
        buf.extend_from_slice(b"data: ");
        buf.extend_from_slice(&rest[..end]);
        buf.push(b'\n');
        if end == rest.len() {
            break;
        }
        // CRLF is one line break.
        let skip = if rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    buf.push(b'\n');
}

/// A whole frame.
pub fn frame(id: Option<&str>, event: &str, data: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(32 + event.len() + data.len());
    if let Some(id) = id {
        put_id(&mut buf, id);
    }
    put_event(&mut buf, event);
    put_data_and_end(&mut buf, data);
    buf
}

fn put_field(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    buf.extend_from_slice(name);
    buf.extend_from_slice(b": ");
    if value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        buf.extend(value.iter().filter(|&&b| !matches!(b, b'\r' | b'\n' | 0)));
    } else {
        buf.extend_from_slice(value);
    }
    buf.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_events_use_the_reserved_prefix() {
        for e in [
            ControlEvent::Reset,
            ControlEvent::Expired,
            ControlEvent::Revoked,
        ] {
            assert!(
                e.name().starts_with(crate::schema::name::RESERVED_PREFIX),
                "{e:?}"
            );
        }
    }

    #[test]
    fn stream_ids_are_written_as_their_id_line() {
        let mut buf = Vec::new();
        put_stream_id(&mut buf, crate::cursor::StreamId::new(u64::MAX, 3));
        assert_eq!(buf, b"id: 18446744073709551615-3\n");
    }

    #[test]
    fn fields_cannot_break_their_line_and_data_lines_are_split() {
        let f = frame(Some("1-0\n\nevent: x"), "a.b\r\ndata: evil\0", b"{\"k\":1}");
        assert_eq!(
            String::from_utf8(f).unwrap(),
            "id: 1-0event: x\nevent: a.bdata: evil\ndata: {\"k\":1}\n\n"
        );
        let f = frame(None, "a.b", b"one\r\ntwo\rthree\nfour");
        assert_eq!(
            String::from_utf8(f).unwrap(),
            "event: a.b\ndata: one\ndata: two\ndata: three\ndata: four\n\n"
        );
        assert_eq!(frame(None, "a.b", b""), b"event: a.b\ndata: \n\n");
    }
}
