//! RESP3, as much as the subscription connection reads: frames parsed from
//! a read buffer into positions, so a pushed message's channel and payload
//! become slices of the bytes read rather than copies.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// Nesting deeper than this is refused (replies this connection gets nest
/// two levels; the bound keeps a broken stream from exhausting the stack).
const MAX_DEPTH: usize = 16;

/// One frame; strings are positions in [`Parsed::bytes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `>`: out-of-band data (messages, subscription confirmations).
    Push(Vec<Frame>),
    /// `*`, `~`, and `%` (a map's keys and values alternate).
    Array(Vec<Frame>),
    /// `$`, `+`, `=` (verbatim: its `xxx:` format prefix kept).
    Text(Range<usize>),
    /// `-` and `!`.
    Error(Range<usize>),
    Int(i64),
    /// `_`, and RESP2's null bulk string and null array.
    Null,
    /// `#`, `,` and `(`: read past, never needed here.
    Other,
}

/// A complete frame and the bytes it was read from.
#[derive(Debug)]
pub struct Parsed {
    pub bytes: Bytes,
    pub frame: Frame,
}

impl Parsed {
    pub fn slice(&self, r: &Range<usize>) -> Bytes {
        self.bytes.slice(r.clone())
    }
}

/// The stream is not RESP (or not RESP this reader takes).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed RESP from Valkey: {0}")]
pub struct RespError(&'static str);

/// Takes the first complete frame off `buf`, or `None` until more arrives.
pub fn parse(buf: &mut BytesMut) -> Result<Option<Parsed>, RespError> {
    let Some((frame, end)) = frame_at(buf, 0, 0)? else {
        return Ok(None);
    };
    let bytes = buf.split_to(end).freeze();
    Ok(Some(Parsed { bytes, frame }))
}

/// The line starting at `pos` (without its CRLF) and where the next starts.
fn line(b: &[u8], pos: usize) -> Option<(Range<usize>, usize)> {
    let at = memchr::memchr(b'\n', b.get(pos..)?)? + pos;
    if at == pos || b[at - 1] != b'\r' {
        return None;
    }
    Some((pos..at - 1, at + 1))
}

fn number(b: &[u8], r: Range<usize>) -> Result<i64, RespError> {
    std::str::from_utf8(&b[r])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RespError("a length or integer is not a number"))
}

fn frame_at(b: &[u8], pos: usize, depth: usize) -> Result<Option<(Frame, usize)>, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError("nested too deep"));
    }
    let Some(&kind) = b.get(pos) else {
        return Ok(None);
    };
    let Some((head, next)) = line(b, pos + 1) else {
        // A line that has begun but not ended: wait, unless it is already
        // longer than any header line could be.
        return if b.len() - pos > 64 * 1024 {
            Err(RespError("a header line does not end"))
        } else {
            Ok(None)
        };
    };
    let frame = match kind {
        b'+' => Frame::Text(head),
        b'-' => Frame::Error(head),
        b':' => Frame::Int(number(b, head)?),
        b'_' => Frame::Null,
        b'#' | b',' | b'(' => Frame::Other,
        b'$' | b'=' | b'!' => {
            let len = number(b, head)?;
            if len < 0 {
                return Ok(Some((Frame::Null, next)));
            }
            let len = usize::try_from(len).map_err(|_| RespError("bad length"))?;
            let end = next.checked_add(len).ok_or(RespError("bad length"))?;
            if b.len() < end + 2 {
                return Ok(None);
            }
            if &b[end..end + 2] != b"\r\n" {
                return Err(RespError("a string does not end with CRLF"));
            }
            let body = next..end;
            let frame = if kind == b'!' {
                Frame::Error(body)
            } else {
                Frame::Text(body)
            };
            return Ok(Some((frame, end + 2)));
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count = number(b, head)?;
            if count < 0 {
                return Ok(Some((Frame::Null, next)));
            }
            let count = if matches!(kind, b'%' | b'|') {
                count.checked_mul(2).ok_or(RespError("bad length"))?
            } else {
                count
            };
            // Sized up front (within reason: the count is the peer's word),
            // so a pushed message's three parts take one allocation.
            let mut items = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(16));
            let mut at = next;
            for _ in 0..count {
                let Some((item, end)) = frame_at(b, at, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                at = end;
            }
            match kind {
                // An attribute describes the frame that follows it, which
                // is the one returned.
                b'|' => return frame_at(b, at, depth + 1),
                b'>' => return Ok(Some((Frame::Push(items), at))),
                _ => return Ok(Some((Frame::Array(items), at))),
            }
        }
        _ => return Err(RespError("unknown frame type")),
    };
    Ok(Some((frame, next)))
}

/// Appends a command as RESP: an array of bulk strings.
pub fn command(out: &mut BytesMut, args: &[&[u8]]) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b"*");
    out.extend_from_slice(digits.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.extend_from_slice(b"$");
        out.extend_from_slice(digits.format(arg.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Vec<Parsed> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(p) = parse(&mut buf).unwrap() {
            out.push(p);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    #[test]
    fn a_pushed_message_is_sliced_out() {
        let input = b">3\r\n$8\r\nsmessage\r\n$6\r\nsseb:x\r\n$10\r\n1-0\na.b\n{}\r\n";
        let parsed = all(input);
        let Frame::Push(items) = &parsed[0].frame else {
            panic!("{parsed:?}")
        };
        let texts: Vec<Bytes> = items
            .iter()
            .map(|f| match f {
                Frame::Text(r) => parsed[0].slice(r),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, [&b"smessage"[..], b"sseb:x", b"1-0\na.b\n{}"]);
    }

    #[test]
    fn every_type_is_read_and_frames_follow_each_other() {
        let input: &[u8] = b"+OK\r\n-ERR no\r\n:-42\r\n_\r\n#t\r\n,1.5\r\n(123\r\n\
            $-1\r\n*-1\r\n!3\r\nbad\r\n=7\r\ntxt:abc\r\n\
            %1\r\n+server\r\n$6\r\nvalkey\r\n~1\r\n:1\r\n|1\r\n+k\r\n+v\r\n:7\r\n\
            >3\r\n$10\r\nssubscribe\r\n$1\r\nc\r\n:1\r\n";
        let parsed = all(input);
        let frames: Vec<&Frame> = parsed.iter().map(|p| &p.frame).collect();
        assert!(matches!(frames[0], Frame::Text(_)));
        assert_eq!(
            parsed[1].slice(match frames[1] {
                Frame::Error(r) => r,
                _ => panic!(),
            }),
            &b"ERR no"[..]
        );
        assert_eq!(frames[2], &Frame::Int(-42));
        assert_eq!(
            frames[3..7],
            [&Frame::Null, &Frame::Other, &Frame::Other, &Frame::Other]
        );
        assert_eq!(frames[7..9], [&Frame::Null, &Frame::Null]);
        assert!(matches!(frames[9], Frame::Error(_)));
        assert!(matches!(frames[10], Frame::Text(_)));
        assert!(matches!(frames[11], Frame::Array(items) if items.len() == 2));
        assert!(matches!(frames[12], Frame::Array(items) if items.len() == 1));
        // The attribute is read past; the frame it describes is returned.
        assert_eq!(frames[13], &Frame::Int(7));
        assert!(matches!(frames[14], Frame::Push(items) if items.len() == 3));
        assert_eq!(parsed.len(), 15);
    }

    #[test]
    fn partial_input_waits_for_the_rest() {
        let input = b">3\r\n$8\r\nsmessage\r\n$6\r\nsseb:x\r\n$10\r\n1-0\na.b\n{}\r\n";
        for cut in 0..input.len() {
            let mut buf = BytesMut::from(&input[..cut]);
            assert_eq!(parse(&mut buf).unwrap().map(|p| p.frame), None, "{cut}");
            assert_eq!(buf.len(), cut, "nothing is taken from a partial frame");
            buf.extend_from_slice(&input[cut..]);
            assert!(matches!(
                parse(&mut buf).unwrap().unwrap().frame,
                Frame::Push(_)
            ));
        }
    }

    #[test]
    fn broken_input_is_refused() {
        for bad in [
            &b"?1\r\n"[..],
            b":x\r\n",
            b"$3\r\nabcd\r\n",
            b"*1\r\n?\r\n",
            b"$99999999999999999999\r\n",
        ] {
            assert!(parse(&mut BytesMut::from(bad)).is_err(), "{bad:?}");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2);
        assert!(parse(&mut BytesMut::from(deep.as_bytes())).is_err());
        let endless = vec![b'+'; 70 * 1024];
        assert!(parse(&mut BytesMut::from(&endless[..])).is_err());
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = BytesMut::new();
        command(&mut out, &[b"SSUBSCRIBE", b"sseb:{a}"]);
        assert_eq!(&out[..], b"*2\r\n$10\r\nSSUBSCRIBE\r\n$8\r\nsseb:{a}\r\n");
    }
}
