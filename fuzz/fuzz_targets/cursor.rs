//! Cursors (`Last-Event-ID`) from the network: decoding never panics, and
//! a decoded cursor encodes back to one that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_bridge::cursor;

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

fuzz_target!(|input: (u8, &str)| {
    let (count, text) = input;
    let names = &NAMES[..1 + usize::from(count) % NAMES.len()];
    let Ok(positions) = cursor::decode(text, names) else {
        return;
    };
    assert_eq!(positions.len(), names.len());
    let again = cursor::encode(names, &positions);
    assert_eq!(cursor::decode(&again, names), Ok(positions));
    assert!(
        again
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
});
