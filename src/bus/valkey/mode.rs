//! A channel's mode argument to the publish script (`lua/publish.lua`): one
//! character saying what the step does besides appending — `r` refresh the
//! idle expiry, `l` measure the length (and trim to the bound), `b` both,
//! `-` neither — then one per event, `1` when the event has an idempotency
//! key (the script's next key) and `0` when not.

/// What a channel's step is asked to do, and which of its events carry an
/// idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mode<I> {
    pub refresh_expiry: bool,
    pub measure_len: bool,
    /// One per event, in publish order: whether it has a key.
    pub keyed: I,
}

impl<I: Iterator<Item = bool>> Mode<I> {
    /// Writes the argument into `out` (cleared first): a buffer reused for
    /// every channel of a batch.
    pub fn write(self, out: &mut Vec<u8>) {
        out.clear();
        out.push(match (self.refresh_expiry, self.measure_len) {
            (true, true) => b'b',
            (true, false) => b'r',
            (false, true) => b'l',
            (false, false) => b'-',
        });
        out.extend(self.keyed.map(|k| if k { b'1' } else { b'0' }));
    }
}

/// Reads a mode argument as the script does; `None` when malformed.
#[cfg(test)]
pub(super) fn parse(arg: &[u8]) -> Option<Mode<Vec<bool>>> {
    let (&ask, events) = arg.split_first()?;
    let (refresh_expiry, measure_len) = match ask {
        b'b' => (true, true),
        b'r' => (true, false),
        b'l' => (false, true),
        b'-' => (false, false),
        _ => return None,
    };
    let keyed = events
        .iter()
        .map(|b| match b {
            b'1' => Some(true),
            b'0' => Some(false),
            _ => None,
        })
        .collect::<Option<Vec<bool>>>()?;
    Some(Mode {
        refresh_expiry,
        measure_len,
        keyed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip() {
        let mut buf = Vec::new();
        for refresh_expiry in [false, true] {
            for measure_len in [false, true] {
                for keyed in [vec![], vec![true], vec![false, true, false]] {
                    Mode {
                        refresh_expiry,
                        measure_len,
                        keyed: keyed.iter().copied(),
                    }
                    .write(&mut buf);
                    assert_eq!(buf.len(), 1 + keyed.len());
                    let read = parse(&buf).expect("parses");
                    assert_eq!(
                        (read.refresh_expiry, read.measure_len, read.keyed),
                        (refresh_expiry, measure_len, keyed)
                    );
                }
            }
        }
        assert_eq!(parse(b"b10"), parse(b"b10"));
        for bad in [&b""[..], b"x", b"r2", b"-1 0"] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}
