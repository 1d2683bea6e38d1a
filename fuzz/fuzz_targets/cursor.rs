//! Cursors (`Last-Event-ID`) from the network: decoding never panics, and
//! a decoded cursor encodes back to one that decodes the same.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sse_bridge::channel::{Channel, ChannelSet};
use sse_bridge::fuzzing::cursor;

const NAMES: [&str; 10] = [
    "a:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:0",
    "a:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:1",
    "a:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:2",
    "a:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:3",
    "a:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:4",
    "a:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:5",
    "a:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:6",
    "a:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:7",
    "a:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:8",
    "a:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:9",
];

/// The sets of the first 1..=10 names.
fn sets() -> &'static [ChannelSet] {
    static SETS: OnceLock<Vec<ChannelSet>> = OnceLock::new();
    SETS.get_or_init(|| {
        (1..=NAMES.len())
            .map(|n| {
                ChannelSet::new(
                    NAMES[..n]
                        .iter()
                        .map(|c| Channel::parse(c).expect("channel"))
                        .collect(),
                )
            })
            .collect()
    })
}

fuzz_target!(|input: (u8, &str)| {
    let (count, text) = input;
    let channels = &sets()[usize::from(count) % NAMES.len()];
    let Ok(positions) = cursor::decode(text, channels) else {
        return;
    };
    let positions = positions.into_vec();
    assert_eq!(positions.len(), channels.len());
    let again = cursor::encode(channels, &positions);
    assert_eq!(
        cursor::decode(&again, channels).map(|p| p.into_vec()),
        Ok(positions)
    );
    assert!(
        again
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
});
