//! Which of Valkey Cluster's 16,384 hash slots a key belongs to: CRC16
//! (XMODEM) of the key, or of its hash tag (the part between the first `{`
//! and the next `}`, when that is not empty), modulo 16,384. Every name of
//! a channel carries the channel as its hash tag ([`super::super::keys`]),
//! so a channel's history, idempotency keys and shard channel share a slot.

/// The number of hash slots of a Valkey Cluster.
pub(in crate::bus::valkey) const SLOTS: u16 = 16_384;

/// The slot of `key`, as Valkey computes it (`CLUSTER KEYSLOT`).
pub(in crate::bus::valkey) fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS
}

/// The part of `key` that is hashed.
fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(len) if len > 0 => &key[open + 1..open + 1 + len],
        _ => key,
    }
}

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_valkey() {
        // The check value of CRC16/XMODEM, and slots Valkey's own
        // `CLUSTER KEYSLOT` gives (the e2e cluster tests compare more).
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_eq!(
            hash_tag(b"foo{}{bar}"),
            b"foo{}{bar}",
            "an empty tag hashes the key"
        );
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"{unclosed"), b"{unclosed");
        assert!(slot(b"") < SLOTS);
    }
}
